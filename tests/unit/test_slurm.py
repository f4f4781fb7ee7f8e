"""slurm.py and slurmformat.py without a cluster: golden executor parameters, sbatch text,
preflight and job states against a fake ``_run`` (sinfo/sbatch/squeue/sacct answers), the
checkpointable wrapper."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import warnings
from pathlib import Path

import pytest

from scaling import slurm as S
from scaling import slurmformat as SF
from scaling import supervise as SV
from scaling.records import ClusterProfile, JobSpec, Resources

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "slurm"

H100 = ClusterProfile(name="h100_test", gpu_name="H100", gpu_mem_gb=80, gpu_tflops=989, gpus_per_node=8,
                      cpus_per_node=96, mem_per_node_gb=1000, max_nodes=4, max_time_min=2880, partition="gpu",
                      account="proj-42", qos="normal", setup=["module load cuda/12.4", "source ~/venv/bin/activate"],
                      array_parallelism=8, requeue=True)
CPU = ClusterProfile(name="cpu_test", partition="cpu", extra={"exclusive": True, "mail-type": "FAIL"})

CASES = {
    "8b_train": (JobSpec(name="ladder.8b.train", run_id="8b/train", entry="scaling.jobs.train:main",
                         after=["8b/curate"], checkpointable=True,
                         resources=Resources(gpus_per_node=8, cpus_per_task=64, mem_gb=800, timeout_min=2880)), H100),
    "8b_eval_array": (JobSpec(name="ladder.8b.eval-trained", run_id="8b/eval-trained", entry="scaling.jobs.evaluate:main",
                              after=["8b/train"], array=["math500", "aime24", "aime25", "amc23", "gpqa_diamond",
                                                         "gsm8k", "olympiadbench", "minerva", "x", "y"],
                              resources=Resources(gpus_per_node=4, cpus_per_task=32, mem_gb=400, timeout_min=480)), H100),
    "32b_train_2node": (JobSpec(name="ladder.32b.train", run_id="32b/train", entry="scaling.jobs.train:main",
                                checkpointable=True, resources=Resources(nodes=2, gpus_per_node=8, tasks_per_node=1,
                                                                         cpus_per_task=96, mem_gb=1000,
                                                                         timeout_min=2880)), H100),
    "cpu_curate": (JobSpec(name="tiny.t1.curate", run_id="t1/curate", entry="scaling.jobs.curate:main",
                           resources=Resources(cpus_per_task=2, mem_gb=8, timeout_min=30)), CPU),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_params_match_golden(case):
    job, profile = CASES[case]
    got = S.executor_params(job, profile)
    path = GOLDEN / f"{case}.json"
    if os.environ.get("SCALING_UPDATE_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    want = json.loads(path.read_text())
    assert got == want, (
        f"executor_params({case}) changed. If this change is intended, refresh the golden file: "
        f"SCALING_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_slurm.py (or delete {path}) and review the diff"
    )


def test_executor_params_are_valid_submitit_parameters(tmp_path):
    for job, profile in CASES.values():
        script = S.sbatch_script(S.executor_params(job, profile), folder=tmp_path,
                                 map_count=len(job.array) or None, dependency="afterok:12")
        lines = S.sbatch_lines(script)
        assert f"#SBATCH --job-name={job.name}" in lines
        assert "#SBATCH --kill-on-invalid-dep=yes" in lines
        assert "#SBATCH --dependency=afterok:12" in lines
        if job.checkpointable:
            assert "#SBATCH --requeue" in lines and "#SBATCH --signal=USR2@300" in lines
        if job.array:
            assert f"#SBATCH --array=0-{len(job.array) - 1}%8" in lines
        if job.resources.gpus_per_node:
            assert f"#SBATCH --gpus-per-node={job.resources.gpus_per_node}" in lines
        else:
            assert not any("gpus-per-node" in x for x in lines)


def test_two_node_job_is_one_submission_with_one_task_per_node(tmp_path):
    job, profile = CASES["32b_train_2node"]
    lines = S.sbatch_lines(S.sbatch_script(S.executor_params(job, profile), folder=tmp_path))
    assert "#SBATCH --nodes=2" in lines and "#SBATCH --ntasks-per-node=1" in lines
    assert "#SBATCH --gpus-per-node=8" in lines and "#SBATCH --partition=gpu" in lines
    assert "#SBATCH --account=proj-42" in lines and "#SBATCH --qos=normal" in lines


def test_dependency_string_waits_for_whole_arrays():
    assert S.dependency_string(["12_0", "12_1", "7"]) == "afterok:12:7"
    assert S.dependency_string([]) is None
    assert S.dependency_string(["<0_6b/train>"]) == "afterok:<0_6b/train>"  # dry-run placeholders stay whole


@pytest.mark.parametrize("gres,n", [("gpu:8", 8), ("gpu:h100:8(S:0-1)", 8), ("gpu:a100:4,shard:8", 4), ("(null)", 0)])
def test_gres_parsing(gres, n):
    assert SF.parse_gres_gpus(gres) == n


@pytest.mark.parametrize("text,minutes", [("infinite", None), ("1-00:00:00", 1440), ("2:00:00", 120), ("30:00", 30)])
def test_time_limit_parsing(text, minutes):
    assert SF.parse_time_min(text) == minutes


class FakeSlurm:
    """Answers sinfo/sbatch/squeue/sacct like a one-partition cluster without accounting."""

    def __init__(self, gpus=8, squeue="", squeue_rc=0):
        self.gpus, self.squeue, self.squeue_rc = gpus, squeue, squeue_rc
        self.calls: list[list[str]] = []

    def __call__(self, cmd, timeout_s=30.0):
        self.calls.append(cmd)
        name = cmd[0]
        if name == "sinfo":
            return subprocess.CompletedProcess(cmd, 0, f"ci*|gpu:{self.gpus}|2|21000|1|1:00:00\n", "")
        if name == "sbatch":
            text = Path(cmd[-1]).read_text()
            if "--gpus-per-node=9" in text:
                return subprocess.CompletedProcess(cmd, 1, "", "sbatch: error: Batch job submission failed: "
                                                   "Requested node configuration is not available\n")
            return subprocess.CompletedProcess(cmd, 0, "", "sbatch: Job 3 to start at now\n")
        if name == "squeue":
            return subprocess.CompletedProcess(cmd, self.squeue_rc, self.squeue,
                                               "" if self.squeue_rc == 0 else "slurm_load_jobs error: Invalid job id specified")
        if name == "sacct":
            return subprocess.CompletedProcess(cmd, 1, "", "Slurm accounting storage is disabled")
        raise AssertionError(f"unexpected command {cmd}")


def test_preflight_collects_every_problem(monkeypatch):
    fake = FakeSlurm()
    monkeypatch.setattr(S, "_run", fake)
    prof = ClusterProfile(name="ci", partition="ci")
    jobs = [JobSpec(name="s.a.train", run_id="a/train", entry="m:f",
                    resources=Resources(gpus_per_node=9, cpus_per_task=1, mem_gb=1, timeout_min=5)),
            JobSpec(name="s.b.train", run_id="b/train", entry="m:f",
                    resources=Resources(gpus_per_node=1, cpus_per_task=4, mem_gb=64, timeout_min=120)),
            JobSpec(name="s.c.train", run_id="c/train", entry="m:f",
                    resources=Resources(gpus_per_node=1, cpus_per_task=1, mem_gb=1, timeout_min=5))]
    problems = S.preflight(jobs, prof)
    text = " | ".join(problems)
    assert "a/train" in text and "9 GPUs per node" in text and "Requested node configuration" in text
    assert "b/train" in text and "4 CPUs" in text and "64 GB" in text and "120 min" in text
    assert "c/train" not in text
    assert sum(1 for c in fake.calls if c[0] == "sbatch") == 3  # one per distinct shape


def test_preflight_reports_a_missing_partition(monkeypatch):
    monkeypatch.setattr(S, "_run", FakeSlurm())
    problems = S.preflight([CASES["cpu_curate"][0]], ClusterProfile(name="x", partition="gpu"))
    assert len(problems) == 1 and "partition 'gpu' (profile x) does not exist" in problems[0] and "ci" in problems[0]


def test_states_without_accounting_are_quiet_and_use_result_files(monkeypatch, tmp_path, recwarn, capsys):
    from submitit.core import utils

    utils.cloudpickle_dump(("success", None), tmp_path / "5_0_result.pkl")
    utils.cloudpickle_dump(("error", "Traceback"), tmp_path / "6_1_0_result.pkl")
    fake = FakeSlurm(squeue="7|RUNNING|1:02|None\n8_0|PENDING|0:00|Dependency\n9|TIMEOUT|5:00|None\n")
    monkeypatch.setattr(S, "_run", fake)
    ids = ["5", "6_1", "7", "8_0", "9", "10"]
    st = S.slurm_states(ids, {i: tmp_path for i in ids})
    assert st["5"]["state"] == "succeeded" and st["6_1"]["state"] == "failed"
    assert st["7"]["state"] == "running" and st["7"]["elapsed_s"] == 62.0
    assert st["8_0"]["state"] == "pending" and st["8_0"]["detail"] == "Dependency" and st["9"]["state"] == "timeout"
    assert st["10"]["state"] == "ended"
    assert any(c[0] == "sacct" for c in fake.calls)
    assert not recwarn.list and capsys.readouterr() == ("", "")


def test_states_when_every_job_left_the_queue(monkeypatch, tmp_path):
    monkeypatch.setattr(S, "_run", FakeSlurm(squeue="", squeue_rc=1))
    assert S.slurm_states(["41"], {"41": tmp_path})["41"]["state"] == "ended"


def test_secret_in_profile_setup_is_refused():
    job, _ = CASES["cpu_curate"]
    prof = ClusterProfile(name="leaky", setup=["export HF_TOKEN=hf_abcdefgh"])
    problems = S.script_secret_problems([job], prof)
    assert problems and "HF_TOKEN" in problems[0] and "export HF_TOKEN in your shell" in problems[0]
    assert S.secrets_in("nothing here", {"HF_TOKEN": "hf_abcdefgh"}) == []
    assert S.secrets_in("x hf_abcdefgh y", {"HF_TOKEN": "hf_abcdefgh"}) == ["HF_TOKEN"]


def test_checkpointable_body_pickles_without_process_state():
    body = S.CheckpointableBody("scaling.jobs.train:main", "/r/8b/train/run.yaml")
    body._child_pid = 1234
    back = pickle.loads(pickle.dumps(body))
    assert (back.entry, back.run_yaml, back.item) == (body.entry, body.run_yaml, None)
    assert not hasattr(back, "_child_pid")
    delayed = back.checkpoint()
    assert isinstance(delayed.function, S.CheckpointableBody)


def test_wrap_body_makes_only_checkpointable_single_jobs_checkpointable():
    from scaling.supervise import JobBody

    train, _ = CASES["8b_train"]
    ev, _ = CASES["8b_eval_array"]
    assert isinstance(S.wrap_body(train, JobBody("m:f", "r.yaml")), S.CheckpointableBody)
    assert type(S.wrap_body(ev, JobBody("m:f", "r.yaml", "math500"))) is JobBody


def test_submitit_is_imported_only_by_slurm_py():
    root = Path(__file__).resolve().parents[2] / "scaling"
    offenders = [p for p in root.rglob("*.py") if p.name != "slurm.py" and "import submitit" in p.read_text()
                 or (p.name != "slurm.py" and "from submitit" in p.read_text())]
    assert offenders == []


def test_no_warning_is_raised_by_importing_and_describing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex = S.SubmititExecutor("local", CPU)
        desc = ex.describe(CASES["cpu_curate"][0], items=[], after=[], folder=Path("/r/s/a/t/logs"))
    assert desc["executor"] == "local"


_LAUNCHER = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], start_new_session=True)
sys.exit(worker.wait())
"""
_WORKER = """
import pathlib, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
pathlib.Path(sys.argv[1] + ".ready").write_text("1")
for _ in range(400):
    if got:
        pathlib.Path(sys.argv[1]).write_text("saved")
        sys.exit(0)
    time.sleep(0.05)
sys.exit(3)
"""


def test_preemption_signal_reaches_workers_in_their_own_session(tmp_path, monkeypatch):
    """The shape of ``accelerate launch``: a launcher without a SIGUSR1 handler whose worker runs in
    a new session (torchrun's start_new_session=True). Slurm's warning signal to the job body must
    reach the worker (which saves and exits 0) and must not kill the launcher (issue 11, finding 4:
    signalling the launcher's process group killed the launcher and missed the worker)."""
    import signal
    import sys
    import threading
    import time

    import yaml

    from scaling.jobs import multinode
    from scaling.records import ModelFacts, RunSpec, Stage, to_dict

    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump(to_dict(RunSpec(study="s", run_id="a/train", size="a", stage=Stage.train,
                                                       model=ModelFacts(size="a"), model_source="x"))))
    out = tmp_path / "saved"
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    monkeypatch.setattr(multinode, "worker_processes", lambda *a, **k: [
        ("worker", [sys.executable, "-c", _LAUNCHER, _WORKER, str(out)], {})])
    body = S.CheckpointableBody("scaling.jobs.train:main", str(run_yaml), None)

    def warn() -> None:  # what Slurm's --signal does to the job's processes (the launcher ignores it)
        deadline = time.monotonic() + 30
        while not Path(str(out) + ".ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.getsignal(signal.SIGUSR2)
    signal.signal(signal.SIGUSR2, lambda s, f: None)  # stands in for submitit's handler
    try:
        threading.Thread(target=warn, daemon=True).start()
        with pytest.raises(RuntimeError, match="stopped after a stop signal"):  # not 'exited with status'
            body()  # the launcher exited 0: its worker saved and exited cleanly; rank 0 reports the stop
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert out.read_text() == "saved"


def test_descendants_walks_the_whole_tree(tmp_path):
    import sys
    import time

    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], " \
           "start_new_session=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while not SV.descendants(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        kids = SV.descendants(proc.pid)
        assert len(kids) == 1 and kids[0] != proc.pid
    finally:
        assert SV.signal_tree(proc.pid, 9) == [proc.pid, *kids]
        proc.wait(timeout=10)
