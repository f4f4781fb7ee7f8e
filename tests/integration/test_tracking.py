"""Tracking read back: tiny SFT and GRPO jobs (each in its own process, as on a node) report to
trackio and TensorBoard inside their job directory; the logged loss / reward are read back from
trackio's SQLite and from the event files and compared with what the trainer logged; a GRPO job
stopped by SIGTERM and started again appends to the same trackio run and TensorBoard directory."""

from __future__ import annotations

import ast
import math
import signal
import subprocess
import sys

import pytest
import yaml

from scaling import tracking_read as tr
from scaling.records import DatasetSpec, SftSettings, Stage
from scaling.task import task_uri
from tests.integration.test_train import REPO, _finish, _run_until, signals, write_run
from tests.integration.test_train_stages import _run

pytestmark = pytest.mark.integration
REPORT = ["trackio", "tensorboard"]
# TensorBoard stores float32 scalars: 1e-6 relative is ~8 float32 ulps; trackio keeps the float64
F32 = 1e-6


def _report_to(run_yaml, stage: str) -> None:
    d = yaml.safe_load(run_yaml.read_text())
    d[stage]["report_to"] = REPORT
    run_yaml.write_text(yaml.safe_dump(d))


def _close(a: list[tuple[int, float]], b: list[tuple[int, float]], rel: float) -> bool:
    return [s for s, _ in a] == [s for s, _ in b] and all(
        math.isclose(x, y, rel_tol=rel, abs_tol=1e-12) for (_, x), (_, y) in zip(a, b))


def test_sft_loss_is_read_back_from_trackio_and_tensorboard(tmp_path, tiny_qwen3_dir):
    settings = SftSettings(enabled=True, dataset=DatasetSpec(source=task_uri("train", 16)), text_column="completion",
                           batch_size=4, max_steps=20, max_length=256, learning_rate=1e-3, report_to=REPORT)
    run_yaml = _run(tmp_path, tiny_qwen3_dir, Stage.sft, sft=settings)
    job = run_yaml.parent
    res = subprocess.run([sys.executable, "-m", "scaling.jobs.sft", str(run_yaml)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    # what the trainer logged: its printed log dicts (4 significant digits), every logging_steps=10
    printed = [ast.literal_eval(ln) for ln in res.stdout.splitlines() if ln.startswith("{'loss'")]
    logged = [(10 * (i + 1), float(d["loss"])) for i, d in enumerate(printed)]
    assert len(logged) == 2, res.stdout[-2000:]

    rid = tr.stored_run_id(job)
    dirs = tr.tracking_dirs(job)
    assert rid and set(dirs) == {"trackio", "tensorboard"}
    (db,) = tr.trackio_databases(dirs["trackio"])
    assert db.name == "t.db"  # project = the study name
    assert [r["run_name"] for r in tr.trackio_runs(db)] == [f"0_1m-sft-{rid}"]
    from_trackio = tr.trackio_metric(db, "train/loss")
    from_tb = tr.tensorboard_metric(dirs["tensorboard"], "train/loss")
    assert _close(from_trackio, logged, 1e-3) and all(v > 0 for _, v in from_trackio), (from_trackio, logged)
    assert _close(from_tb, from_trackio, F32), (from_tb, from_trackio)


def test_grpo_reward_is_read_back_and_a_requeued_job_appends_to_the_same_run(tmp_path, tiny_qwen3_dir):
    run_yaml = write_run(tmp_path, tiny_qwen3_dir, shaping="kimi", steps=6, save_steps=100)
    _report_to(run_yaml, "train")
    job = run_yaml.parent
    jsonl = job / "signals.jsonl"

    def logged_two() -> bool:
        return jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 2

    rc, out = _run_until(run_yaml, predicate=logged_two, sig=signal.SIGTERM)  # a requeue's first attempt
    assert rc == 0, out[-3000:]
    rid = tr.stored_run_id(job)
    dirs = tr.tracking_dirs(job)
    (db,) = tr.trackio_databases(dirs["trackio"])
    name = f"0_1m-train-{rid}"
    first = tr.trackio_metric(db, "train/reward", run_name=name)
    stopped = int(sorted((job / "checkpoints").glob("checkpoint-*"))[-1].name.rsplit("-", 1)[1])
    assert [s for s, _ in first] == list(range(1, stopped + 1)) and stopped < 6, (first, stopped)
    events_first = tr.tensorboard_event_files(dirs["tensorboard"])
    own_first = tr.trackio_steps(db, name)

    log = _finish(run_yaml)  # the second attempt resumes from the checkpoint
    assert "resuming from" in log
    assert tr.stored_run_id(job) == rid  # the same tracker run id
    assert [r["run_name"] for r in tr.trackio_runs(db)] == [name]  # no second trackio run
    # trackio's own step column (several rows per step: TRL's profiling timings) goes on from the
    # checkpoint's step in the second attempt, it does not restart at 0
    own = tr.trackio_steps(db, name)
    assert own[:len(own_first)] == own_first and len(own) > len(own_first)
    assert min(own[len(own_first):]) >= stopped, (own, stopped)
    # TensorBoard: the same directory, one event file per attempt
    events = tr.tensorboard_event_files(dirs["tensorboard"])
    assert len(events) == len(events_first) + 1 and set(events_first) <= set(events)

    # the curves equal what the trainer logged (signals.parquet: one row per step, 1..6)
    rows = signals(job)
    assert [r["step"] for r in rows] == list(range(1, 7))
    for metric, column in (("train/reward", "reward_mean"), ("train/entropy", "entropy")):
        want = [(r["step"], float(r[column])) for r in rows]
        got = tr.trackio_metric(db, metric, run_name=name)
        assert _close(got, want, 1e-12), (metric, got, want)
        assert _close(tr.tensorboard_metric(dirs["tensorboard"], metric), want, F32), metric
    assert tr.where_curves_are(job) == [
        f"trackio: `TRACKIO_DIR={dirs['trackio']} trackio show --project t`",
        f"TensorBoard: `tensorboard --logdir {dirs['tensorboard']}`",
    ]
    assert tr.study_curves(job.parents[1])[0].startswith("0_1m/train: trackio: ")
