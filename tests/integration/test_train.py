"""GRPO on tiny Qwen3 / Qwen3-MoE models on CPU: every shaping and masking variant trains a few
steps with signals logged; LoRA and full; a killed run resumes and ends with the same steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scaling.records import (
    DatasetSpec,
    Finetune,
    MaskRule,
    RewardSpec,
    RunSpec,
    Shaping,
    Stage,
    TrainSettings,
    to_dict,
)
from scaling.task import task_uri

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def write_run(
    root: Path,
    model_dir: str,
    *,
    size: str = "0_1m",
    shaping: str = "truncation",
    finetune: str = "full",
    steps: int = 2,
    mask: tuple[str, ...] = (),
    save_steps: int = 50,
    rollout_limit: int = 24,
    target_length: int = 16,
) -> Path:
    """A study dir with one train run.yaml for a tiny model (the layout launch writes)."""
    from scaling.jobs.tiny import tiny_facts

    train = TrainSettings(
        rollout_limit=rollout_limit,
        num_generations=4,
        prompts_per_step=2,
        learning_rate=1e-3,
        max_steps=steps,
        finetune=Finetune(finetune),
        save_steps=save_steps,
        logging_steps=1,
        lora_rank=4,
        lora_alpha=8,
        dataset=DatasetSpec(source=task_uri("train", 16), prompt_suffix="Answer in \\boxed{}."),
        reward=RewardSpec(
            shaping=Shaping(shaping),
            target_length=target_length,
            mask=[MaskRule(m) for m in mask],
            overlong_cache=8,
        ),
    )
    run = RunSpec(
        study="t",
        run_id=f"{size}/train",
        size=size,
        stage=Stage.train,
        model=tiny_facts(size),
        model_source=model_dir,
        train=train,
        seed=0,
    )
    job = root / "study" / size / "train"
    job.mkdir(parents=True)
    (job / "run.yaml").write_text(yaml.safe_dump(to_dict(run)))
    return job / "run.yaml"


def signals(job: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(job / "signals.parquet").to_pylist()


@pytest.mark.parametrize(
    "shaping, mask",
    [
        ("vanilla", ()),
        ("truncation", ()),
        ("kimi", ()),
        ("laser", ()),
        ("laser_d", ()),
        ("l1_exact", ()),
        ("l1_max", ()),
        ("dapo_overlong", ()),
        ("tldr", ()),
        ("truncation", ("incorrect",)),
        ("truncation", ("long_correct",)),
        ("truncation", ("long_correct", "short_incorrect")),
        ("truncation", ("long_correct", "long_incorrect")),
    ],
)
def test_each_shaping_trains_two_steps_and_logs_signals(tmp_path, tiny_qwen3_dir, shaping, mask):
    from scaling.jobs import train
    from scaling.durable import read_done

    run_yaml = write_run(tmp_path, tiny_qwen3_dir, shaping=shaping, mask=mask)
    train.main(str(run_yaml))
    job = run_yaml.parent
    done = read_done(job)
    assert done is not None and done["steps"] == 2
    rows = signals(job)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0 < r["tokens_mean"] <= 24 and 0 <= r["truncated_frac"] <= 1 for r in rows)
    assert all(r["accuracy"] == r["accuracy"] for r in rows)  # not NaN: the reward logged its counts
    assert (job / "model" / "config.json").is_file()


def test_lora_on_dense_model_saves_a_merged_model(tmp_path, tiny_qwen3_dir):
    from transformers import AutoModelForCausalLM

    from scaling.jobs import train

    run_yaml = write_run(tmp_path, tiny_qwen3_dir, shaping="dapo_overlong", finetune="lora")
    train.main(str(run_yaml))
    model_dir = run_yaml.parent / "model"
    assert not (model_dir / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert not any("lora" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_moe_model_trains_with_full_and_lora(tmp_path, tiny_moe_dir, finetune):
    from scaling.jobs import train

    run_yaml = write_run(tmp_path, tiny_moe_dir, size="1_3m_a0_4m", shaping="kimi", finetune=finetune)
    train.main(str(run_yaml))
    rows = signals(run_yaml.parent)
    assert len(rows) == 2 and all(r["entropy"] > 0 for r in rows)


def _run_until(run_yaml: Path, *, predicate, sig: int) -> subprocess.CompletedProcess | int:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaling.jobs.train", str(run_yaml)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted; raise max_steps"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, out.decode(errors="replace")


def _finish(run_yaml: Path) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "scaling.jobs.train", str(run_yaml)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def test_sigterm_saves_a_checkpoint_and_rerun_resumes_to_the_same_total_steps(tmp_path, tiny_qwen3_dir):
    from scaling.durable import read_done

    run_yaml = write_run(tmp_path, tiny_qwen3_dir, shaping="dapo_overlong", steps=8, save_steps=100)
    job = run_yaml.parent
    jsonl = job / "signals.jsonl"

    def logged_two() -> bool:
        return jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 2

    rc, out = _run_until(run_yaml, predicate=logged_two, sig=signal.SIGTERM)
    assert rc == 0, out[-3000:]  # saved, then exit 0 (issue 22: a non-zero worker makes torchrun kill the rest)
    ckpts = sorted(p.name for p in (job / "checkpoints").glob("checkpoint-*"))
    assert ckpts, out[-3000:]  # save_steps=100: only the signal can have saved it
    saved_step = int(ckpts[-1].rsplit("-", 1)[1])
    assert 2 <= saved_step < 8 and not (job / "DONE").exists()

    log = _finish(run_yaml)
    assert f"resuming from {job / 'checkpoints' / ckpts[-1]}" in log
    assert read_done(job)["steps"] == 8
    steps = [r["step"] for r in signals(job)]
    assert steps == list(range(1, 9))


def test_hard_kill_resumes_from_the_last_scheduled_checkpoint(tmp_path, tiny_qwen3_dir):
    from scaling.durable import read_done

    run_yaml = write_run(tmp_path, tiny_qwen3_dir, shaping="truncation", steps=6, save_steps=2)
    job = run_yaml.parent

    def has_checkpoint() -> bool:
        return any((p / "trainer_state.json").is_file() for p in (job / "checkpoints").glob("checkpoint-*"))

    rc, _ = _run_until(run_yaml, predicate=has_checkpoint, sig=signal.SIGKILL)
    assert rc == -signal.SIGKILL and not (job / "DONE").exists()
    log = _finish(run_yaml)
    assert "resuming from" in log
    assert read_done(job)["steps"] == 6
    state = json.loads((job / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
