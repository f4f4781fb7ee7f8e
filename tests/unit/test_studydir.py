"""Study directory: safe names, DONE markers, the lock, the manifest, run files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from scaling import studydir as sd
from scaling.errors import LaunchError
from scaling.records import ModelFacts, Resources, RunSpec, Stage, from_dict


@pytest.mark.parametrize("name", ["qwen3-ladder", "tiny_ladder", "a", "x1-2_3"])
def test_safe_name_accepts_lowercase_digits_dash_underscore(name):
    assert sd.safe_name(name) == name


@pytest.fixture(params=["../evil", "a/b", "Qwen3", "has space", "quote'd", "new\nline", "", "--", ".", "/abs"])
def weird_name(request):
    return request.param


def test_safe_name_refuses_path_escape_and_odd_characters(weird_name):
    with pytest.raises(LaunchError, match="lowercase letters"):
        sd.safe_name(weird_name)


def test_run_dir_refuses_run_ids_that_escape_the_study(tmp_path):
    assert sd.run_dir(tmp_path, "8b/train") == tmp_path / "8b" / "train"
    for bad in ("../x", "8b/../../x", "8b", "a/b/c", "8b/.."):
        with pytest.raises(LaunchError):
            sd.run_dir(tmp_path, bad)


def test_job_name_is_study_size_stage():
    assert sd.job_name("tiny", "0_6b/eval-base") == "tiny.0_6b.eval-base"


def test_mark_done_writes_counts_and_hash_last(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "records.parquet")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "1_0_log.out").write_text("noise")
    assert not sd.is_done(tmp_path)
    sd.mark_done(tmp_path, {"problems": 3})
    done = sd.read_done(tmp_path)
    assert sd.is_done(tmp_path)
    assert done["rows"] == {"records.parquet": 3}
    assert done["problems"] == 3 and done["files"] == 1
    assert len(done["content_hash"]) == 64 and "time" in done


def test_content_hash_ignores_logs_but_follows_outputs(tmp_path):
    (tmp_path / "out.txt").write_text("a")
    h1 = sd.content_hash(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.out").write_text("log")
    assert sd.content_hash(tmp_path) == h1
    (tmp_path / "out.txt").write_text("b")
    assert sd.content_hash(tmp_path) != h1


def test_torn_or_foreign_done_does_not_count(tmp_path):
    (tmp_path / "DONE").write_text("{not json")
    assert not sd.is_done(tmp_path)
    (tmp_path / "DONE").write_text("[]")
    assert not sd.is_done(tmp_path)


def test_mark_done_refuses_missing_directory(tmp_path):
    with pytest.raises(LaunchError, match="does not exist"):
        sd.mark_done(tmp_path / "nope", {})


def test_array_run_is_done_only_when_every_item_is(tmp_path):
    rd = sd.run_dir(tmp_path, "a/eval-base")
    for item in ("x", "y"):
        (rd / item).mkdir(parents=True)
    sd.mark_done(rd / "x", {})
    assert not sd.run_is_done(tmp_path, "a/eval-base", ["x", "y"])
    sd.mark_done(rd / "y", {})
    assert sd.run_is_done(tmp_path, "a/eval-base", ["x", "y"])


def test_lock_refuses_a_second_live_holder(tmp_path):
    with sd.study_lock(tmp_path, "launch"):
        lock = json.loads((tmp_path / ".lock").read_text())
        assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
        with pytest.raises(LaunchError, match="locked by `scaling launch`"):
            with sd.study_lock(tmp_path, "resume"):
                pass
    assert not (tmp_path / ".lock").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": 0}))
    with sd.study_lock(tmp_path, "launch"):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_lock_of_another_host_is_stale_only_when_old():
    assert not sd.lock_is_stale({"host": "elsewhere", "pid": 1, "since": 1000.0}, now=1000.0 + 60)
    assert sd.lock_is_stale({"host": "elsewhere", "pid": 1, "since": 1000.0}, now=1000.0 + 7200)


def test_manifest_updates_are_atomic_read_modify_write(tmp_path):
    with pytest.raises(LaunchError, match="never launched"):
        sd.update_manifest(tmp_path, lambda m: None)
    sd.update_manifest(tmp_path, lambda m: m["runs"].update({"a/train": sd.run_entry(tmp_path, "a/train")}),
                       create=sd.new_manifest("s", "local"))
    sd.update_manifest(tmp_path, lambda m: m["runs"]["a/train"].update({"job_id": "7"}))
    m = sd.read_manifest(tmp_path)
    assert m["runs"]["a/train"]["job_id"] == "7"
    assert m["runs"]["a/train"]["paths"]["run_yaml"] == "a/train/run.yaml"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unknown_manifest_version_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 99, "runs": {}}))
    with pytest.raises(LaunchError, match="version 99"):
        sd.read_manifest(tmp_path)


def test_run_yaml_round_trips_through_records(tmp_path):
    run = RunSpec(study="s", run_id="a/train", size="a", stage=Stage.train, model=ModelFacts(size="a"),
                  model_source="tiny://a", resources=Resources(gpus_per_node=2))
    path = sd.write_run_yaml(tmp_path, run)
    assert path == tmp_path / "a" / "train" / "run.yaml"
    back = from_dict(RunSpec, yaml.safe_load(path.read_text()))
    assert back.resources.gpus_per_node == 2 and back.stage is Stage.train


def test_study_dir_resolves_names_and_paths(tmp_path):
    assert sd.study_dir("tiny", tmp_path) == tmp_path / "tiny"
    with pytest.raises(LaunchError):
        sd.study_dir("Bad Name", tmp_path)
    (tmp_path / "x").mkdir()
    assert sd.study_dir(str(tmp_path / "x"), "runs") == tmp_path / "x"
