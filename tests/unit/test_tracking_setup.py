"""jobs/tracking.py: the run-id store, what setup points into the job directory, its refusals;
tracking_read.py on a trackio-schema database; the recipe checks of train/sft.report_to."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import threading

import pytest

from scaling.errors import JobError
from scaling.jobs import tracking
from scaling.records import RunSpec, Stage
from scaling import tracking_read


def _run(stage: Stage = Stage.train) -> RunSpec:
    from scaling.jobs.tiny import tiny_facts

    return RunSpec(study="st", run_id=f"0_1m/{stage.value}", size="0_1m", stage=stage, model=tiny_facts("0_1m"),
                   model_source="x", seed=0)


def test_the_run_id_is_created_once_and_reused(tmp_path):
    rid = tracking.run_id(tmp_path)
    assert (tmp_path / "tracking" / "run_id").read_text().strip() == rid and len(rid) == 12
    assert tracking.run_id(tmp_path) == rid  # a requeue / `scaling resume` reads it back
    assert tracking_read.stored_run_id(tmp_path) == rid
    assert [p.name for p in (tmp_path / "tracking").iterdir()] == ["run_id"]  # no temp file left


def test_ranks_starting_at_once_agree_on_one_run_id(tmp_path):
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(tracking.run_id(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1


def test_a_damaged_run_id_file_is_refused_with_the_fix(tmp_path):
    (tmp_path / "tracking").mkdir()
    (tmp_path / "tracking" / "run_id").write_text("../../x\n")
    with pytest.raises(JobError, match="delete the file"):
        tracking.run_id(tmp_path)


def test_no_logger_writes_nothing_and_reports_none(tmp_path):
    t = tracking.setup(_run(), tmp_path, ["none"])
    assert t.config_kwargs()["report_to"] == "none" and t.env == {}
    assert not (tmp_path / "tracking").exists()


def test_trackio_and_tensorboard_point_into_the_job_dir(tmp_path):
    job = tmp_path / "study" / "0_1m" / "train"
    t = tracking.setup(_run(), job, ["trackio", "tensorboard", "trackio"])
    rid = (job / "tracking" / "run_id").read_text().strip()
    assert t.config_kwargs() == {"report_to": ["trackio", "tensorboard"], "run_name": f"0_1m-train-{rid}",
                                 "project": "st"}
    assert t.env == {"TRACKIO_DIR": str((job / "tracking" / "trackio").resolve()),
                     "TENSORBOARD_LOGGING_DIR": str((job / "tracking" / "tensorboard").resolve())}
    again = tracking.setup(_run(), job, ["trackio", "tensorboard"])
    assert again.run_name == t.run_name  # the second attempt: the same trackio run (resume="allow")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_not_installed_names_the_install_command(tmp_path):
    with pytest.raises(JobError, match=r"report_to names wandb but it is not installed; run `pip install wandb`"):
        tracking.setup(_run(Stage.sft), tmp_path, ["wandb"])


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed here")
def test_wandb_is_offline_with_the_stored_run_id(tmp_path):
    t = tracking.setup(_run(), tmp_path, ["wandb"])
    assert t.env["WANDB_MODE"] == "offline" and t.env["WANDB_RUN_ID"] == t.run_id
    assert t.env["WANDB_RESUME"] == "allow" and t.env["WANDB_DIR"].startswith(str(tmp_path.resolve()))


def test_a_logger_the_jobs_do_not_set_up_is_refused(tmp_path):
    with pytest.raises(JobError, match="'mlflow' is not set up by the jobs"):
        tracking.setup(_run(), tmp_path, ["mlflow"])


def test_trackio_imported_for_another_dir_is_refused(tmp_path, monkeypatch):
    import types
    import sys

    fake_utils = types.ModuleType("trackio.utils")  # what a first import for another directory left
    fake_utils.TRACKIO_DIR = tmp_path / "elsewhere"
    monkeypatch.setitem(sys.modules, "trackio.utils", fake_utils)
    with pytest.raises(JobError, match="run the job in its own process"):
        tracking.setup(_run(), tmp_path / "job", ["trackio"])


def test_the_trackio_reader_follows_trackios_schema(tmp_path):
    """The table as trackio 0.45 creates it (sqlite_storage.py), rows as TrackioCallback logs them."""
    db = tmp_path / "st.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
                "timestamp TEXT NOT NULL, run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL, "
                "log_id TEXT, space_id TEXT)")
    rows = [("r1", "a", 0, {"profiling/x": 0.1}), ("r1", "a", 1, {"train/loss": 2.5, "train/global_step": 1}),
            ("r1", "a", 2, {"train/loss": 2.0, "train/global_step": 3}), ("r2", "b", 0, {"train/loss": 9.0})]
    for rid, name, step, m in rows:
        con.execute("INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES (?, 't', ?, ?, ?)",
                    (rid, name, step, json.dumps(m).encode()))
    con.commit()
    con.close()
    assert tracking_read.trackio_metric(db, "train/loss", run_name="a") == [(1, 2.5), (3, 2.0)]
    assert tracking_read.trackio_metric(db, "train/loss", run_name="b") == [(0, 9.0)]  # no global step: trackio's
    assert [r["run_name"] for r in tracking_read.trackio_runs(db)] == ["a", "b"]
    assert tracking_read.trackio_steps(db, "a") == [0, 1, 2]


@pytest.mark.parametrize("key, value, expect", [
    ("sft.report_to", "[tensorbord]", "sft.report_to: unknown logger 'tensorbord'"),
    ("train.report_to", "[mlflow]", "train.report_to: logger 'mlflow' is not set up by the jobs"),
])
def test_report_to_is_checked_for_train_and_sft(key, value, expect):
    from pathlib import Path

    from scaling.errors import RecipeError
    from scaling.recipe import load_study

    recipe = Path(__file__).resolve().parents[1] / "data" / "bad_recipes" / "report_to_unknown.yaml"
    with pytest.raises(RecipeError, match=expect):
        load_study(recipe, overrides=[f"{key}={value}"])
    load_study(recipe, overrides=[f"{key}=[trackio,tensorboard]"])  # the supported ones pass


def test_the_report_says_where_each_runs_curves_are(tmp_path):
    from types import SimpleNamespace

    from scaling.document import _tracker_blocks

    study = tmp_path / "st"
    (study / "0_1m" / "train" / "tracking" / "tensorboard").mkdir(parents=True)
    (study / "0_1m" / "sft" / "tracking" / "trackio").mkdir(parents=True)
    (study / "0_1m" / "sft" / "tracking" / "trackio" / "st.db").write_bytes(b"")
    (study / "0_1m" / "eval_base").mkdir()
    (block,) = _tracker_blocks([SimpleNamespace(name="st", path=study)])
    tb, tio = study / "0_1m" / "train" / "tracking" / "tensorboard", study / "0_1m" / "sft" / "tracking" / "trackio"
    assert block.children[0].items == [f"0_1m/sft: trackio: `TRACKIO_DIR={tio} trackio show --project st`",
                                       f"0_1m/train: TensorBoard: `tensorboard --logdir {tb}`"]
    assert _tracker_blocks([SimpleNamespace(name="e", path=tmp_path / "empty")]) == []  # no tracker: no line


def test_the_trainer_configs_carry_the_tracking(tmp_path):
    from scaling.jobs.sft import make_sft_config
    from scaling.records import DatasetSpec, SftSettings

    run = _run(Stage.sft)
    run.sft = SftSettings(enabled=True, dataset=DatasetSpec(source="task://arith?split=train&n=4"), batch_size=4,
                          report_to=["tensorboard"])
    t = tracking.setup(run, tmp_path, run.sft.report_to)
    cfg = make_sft_config(run, tmp_path, "cpu", track=t)
    assert (cfg.report_to, cfg.run_name, cfg.project) == (["tensorboard"], f"0_1m-sft-{t.run_id}", "st")
    assert make_sft_config(run, tmp_path, "cpu").report_to == []  # no tracking given: none ([] in transformers 5)
