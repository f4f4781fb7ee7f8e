"""The stop's lead time (issue 22, finding 6): Slurm's warning comes early enough for the longest step
plus the checkpoint's write (``capacity.stop_lead_s``), per job, instead of a fixed 300 s; and the
names the supervisor and the trainer callback share."""

from __future__ import annotations

import pickle

import pytest

from scaling import capacity as C
from scaling.records import Finetune, ModelFacts


@pytest.fixture(scope="module")
def ladder():
    from scaling.plan import make_plan
    from scaling.recipe import load_study

    study = load_study("recipes/qwen3-ladder.yaml")
    return study, make_plan(study)


def _facts(study, size: str) -> ModelFacts:
    return study.settings[size].model


def test_a_14b_zero2_checkpoint_is_about_207_gb(ladder):
    study, _ = ladder
    gb, write_s = C.checkpoint_write_s(_facts(study, "14b"), finetune=Finetune.full, zero_stage=2, nodes=1)
    assert gb == pytest.approx(207, rel=0.02)
    assert write_s == pytest.approx(gb / C.CHECKPOINT_WRITE_GBPS, rel=1e-6)  # one node writes it all
    # three nodes write the sharded optimizer states in parallel; rank 0 also writes the bf16 weights
    _, three = C.checkpoint_write_s(_facts(study, "14b"), finetune=Finetune.full, zero_stage=2, nodes=3)
    n = gb * 1e9 / C.CKPT_BYTES_FULL_ZERO
    assert three == pytest.approx((2 * n + 12 * n / 3) / (C.CHECKPOINT_WRITE_GBPS * 1e9), rel=1e-6)
    # DDP: rank 0 writes fp32 weights + AdamW; LoRA: only the adapter and its optimizer state
    ddp_gb, _ = C.checkpoint_write_s(_facts(study, "0_6b"), finetune=Finetune.full, zero_stage=0, nodes=1)
    lora_gb, _ = C.checkpoint_write_s(_facts(study, "14b"), finetune=Finetune.lora, zero_stage=2, nodes=1,
                                      lora_rank=16, lora_targets=["q_proj", "v_proj"])
    assert ddp_gb == pytest.approx(0.6e9 * 12 / 1e9, rel=0.35) and lora_gb < 1


def test_lead_is_longest_step_plus_checkpoint_write_plus_margin_rounded_to_a_minute(ladder):
    study, _ = ladder
    f = _facts(study, "14b")
    _, write_s = C.checkpoint_write_s(f, finetune=Finetune.full, zero_stage=2, nodes=1)
    kw = dict(finetune=Finetune.full, zero_stage=2, nodes=1, max_steps=1000, timeout_min=2880)
    # 10 h over 1000 steps, staleness 2: the generating step takes 72 s
    lead, reason = C.stop_lead_s(f, hours=10.0, staleness=2, **kw)
    want = 72 + write_s + C.STOP_MARGIN_S
    assert lead % 60 == 0 and want <= lead < want + 60 and lead > C.STOP_LEAD_MIN_S
    assert "207 GB" in reason and f"-> {lead} s" in reason
    # a slower step asks for more; a tiny job keeps the floor; a short time limit caps it at half
    assert C.stop_lead_s(f, hours=40.0, staleness=2, **kw)[0] > lead
    small = C.stop_lead_s(_facts(study, "0_6b"), finetune=Finetune.full, zero_stage=0, nodes=1, hours=0.1,
                          max_steps=1000, staleness=1, timeout_min=600)[0]
    assert small == C.STOP_LEAD_MIN_S
    capped = C.stop_lead_s(f, hours=400.0, staleness=4, **{**kw, "timeout_min": 60})[0]
    assert capped == max(C.STOP_LEAD_MIN_S, 60 * 60 // 2)


def test_the_plan_gives_each_training_job_its_lead_in_sbatch_and_on_the_node(ladder):
    """Before the fix every checkpointable job got --signal=USR2@300, whatever its size."""
    from scaling import slurm as S
    from scaling.slurmformat import executor_params
    from scaling.supervise import JobBody

    study, plan = ladder
    trains = {j.run_id: j for j in plan.jobs if j.run_id.endswith("/train")}
    for run_id, job in trains.items():
        size = run_id.split("/")[0]
        run = plan.run(run_id)
        t, r = run.train, run.resources
        want, _ = C.stop_lead_s(run.model, finetune=t.finetune, zero_stage=t.zero_stage, nodes=r.nodes,
                                hours=job.hours, max_steps=t.max_steps, staleness=t.off_policy_staleness,
                                timeout_min=r.timeout_min, lora_rank=t.lora_rank, lora_targets=list(t.lora_targets))
        assert job.signal_delay_s == want, run_id
        assert executor_params(job, plan.profile)["slurm_signal_delay_s"] == want, run_id
        assert f"-> {want} s" in plan.notes[f"{size}:stop_lead"]
        body = pickle.loads(pickle.dumps(S.wrap_body(job, JobBody(job.entry, f"/r/{run_id}/run.yaml"))))
        assert body.grace_s == want - 30  # rank 0 waits for the save as long as the lead allows
        assert body.checkpoint().function.stop_lead_s == want  # and so does the requeued attempt
    # the 30B-A3B checkpoint (~427 GB) needs more than the old fixed 300 s
    assert trains["30b_a3b/train"].signal_delay_s > 300


def test_supervisor_and_trainer_callback_agree_on_the_stop_names():
    from scaling import supervise as SV
    from scaling.jobs import trainer_hooks as TH

    assert SV.STOP_FILE_ENV == TH.STOP_FILE_ENV and SV.STOPS_FILE == TH.STOPS_JSONL
    assert "SIGTERM" not in SV.LAUNCHER_SIGNALS.split(",")  # torchrun must not act on SIGTERM (finding 7)


def test_the_graders_child_outlives_the_stop_signals():
    """Finding 7 on the real Slurm: SIGTERM reaches every process of the job (and the supervisor's
    SIGUSR1 every descendant of the launcher), so it killed the math-verify child of a training
    worker; a grader killed during its start failed the step ("the math-verify worker did not
    start") before the stop could save. The child now ignores both; its owner ends it."""
    import os
    import signal
    import time

    from scaling import grade

    with grade._LOCK:
        worker = grade._worker()
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        os.kill(worker.proc.pid, sig)
    time.sleep(0.5)
    assert worker.proc.poll() is None, f"the grader died of a stop signal (status {worker.proc.returncode})"
    with grade._LOCK:
        assert grade._worker() is worker  # the same child grades on


def test_a_stop_signal_during_the_graders_start_up_does_not_kill_it():
    """The window before the child's first line (the interpreter's start-up): seen in CI as "the
    math-verify worker did not start" when the supervisor's forward landed there. The parent
    blocks the stop signals around the spawn, so the child is born with them blocked."""
    import os
    import signal

    from scaling import grade

    for _ in range(3):
        worker = grade._Worker(wait=False)  # spawned, not yet ready: its interpreter is starting
        try:
            for sig in (signal.SIGTERM, signal.SIGUSR1):
                os.kill(worker.proc.pid, sig)
            worker.wait_ready()  # raises "did not start" if a signal killed it
            assert worker.proc.poll() is None
        finally:
            worker.close()
    # the parent's own mask is as it was: the stop signals still reach this process
    assert not ({signal.SIGTERM, signal.SIGUSR1} & signal.pthread_sigmask(signal.SIG_BLOCK, set()))
