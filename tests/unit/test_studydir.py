"""Study directory: safe names, DONE markers, the lock, the manifest, run files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from scaling import durable
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
    assert not durable.is_done(tmp_path)
    durable.mark_done(tmp_path, {"problems": 3})
    done = durable.read_done(tmp_path)
    assert durable.is_done(tmp_path)
    assert done["rows"] == {"records.parquet": 3}
    assert done["problems"] == 3 and done["files"] == 1
    assert len(done["content_hash"]) == 64 and "time" in done


def test_content_hash_ignores_logs_but_follows_outputs(tmp_path):
    (tmp_path / "out.txt").write_text("a")
    h1 = durable.content_hash(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.out").write_text("log")
    assert durable.content_hash(tmp_path) == h1
    (tmp_path / "out.txt").write_text("b")
    assert durable.content_hash(tmp_path) != h1


def test_torn_or_foreign_done_does_not_count(tmp_path):
    (tmp_path / "DONE").write_text("{not json")
    assert not durable.is_done(tmp_path)
    (tmp_path / "DONE").write_text("[]")
    assert not durable.is_done(tmp_path)


def test_mark_done_refuses_missing_directory(tmp_path):
    with pytest.raises(LaunchError, match="does not exist"):
        durable.mark_done(tmp_path / "nope", {})


def test_array_run_is_done_only_when_every_item_is(tmp_path):
    rd = sd.run_dir(tmp_path, "a/eval-base")
    for item in ("x", "y"):
        (rd / item).mkdir(parents=True)
    durable.mark_done(rd / "x", {})
    assert not sd.run_is_done(tmp_path, "a/eval-base", ["x", "y"])
    durable.mark_done(rd / "y", {})
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


# ------------------------------------------------------------------ issue 14: reliability
import errno  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from scaling.errors import ScalingError, StorageError  # noqa: E402


def _fail_with(monkeypatch, func: str, code: int):
    """Make ``os.<func>`` raise ``code`` (ENOSPC/EROFS) inside this process: a full or read-only
    disk without root (a tmpfs mount or a read-only bind mount needs CAP_SYS_ADMIN, and chmod
    does not stop root), at the system call atomic_path really uses."""
    real = getattr(os, func)

    def boom(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(args[0]) if args else None)

    monkeypatch.setattr(os, func, boom)
    return real


@pytest.mark.parametrize("func, code", [("fsync", errno.ENOSPC), ("replace", errno.ENOSPC), ("replace", errno.EROFS)])
def test_a_full_or_read_only_disk_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, func, code):
    target = tmp_path / "plan.json"
    target.write_text("old\n")
    _fail_with(monkeypatch, func, code)
    with pytest.raises(StorageError) as info:
        durable.atomic_write_text(target, "new\n")
    monkeypatch.undo()
    msg = str(info.value)
    assert "\n" not in msg and str(target) in msg and errno.errorcode[code] in msg
    assert isinstance(info.value, OSError)  # callers that handle OSError keep working
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_mkdir_errors_name_the_path_and_the_fix(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError, match=r"afile/study: cannot create the directory: .*ENOTDIR.*a file stands"):
        durable.ensure_dir(tmp_path / "afile" / "study")
    with pytest.raises(StorageError, match="is a directory; give a file name"):
        durable.atomic_write_text(tmp_path, "x")
    with pytest.raises(StorageError, match="ENAMETOOLONG"):
        durable.atomic_write_text(tmp_path / ("n" * 300), "x")


def test_a_300_character_study_name_is_refused_in_one_line():
    with pytest.raises(LaunchError, match=r"at most 64 characters") as info:
        sd.safe_name("a" * 300)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("text, why", [
    ("[1, 2]", "a JSON list"), ('{"version": 1}', "no 'runs' mapping"), ('"x"', "a JSON str"),
    ('{"version": 1, "study": "s", "runs": {"a/b": []}}', "runs.a/b is a list"),
    ('{"version": 1, "study": "s", "runs": {"a/b": {"paths": {}}}}', "paths lacks dir/logs"),
    ('{"version": 1, "study": "s", "runs": {"../x": {"paths": {"dir": "a", "logs": "b"}}}}', "<size>/<stage>"),
])
def test_a_manifest_of_the_wrong_shape_is_one_line(tmp_path, text, why):
    (tmp_path / sd.MANIFEST).write_text(text)
    with pytest.raises(LaunchError) as info:
        sd.read_manifest(tmp_path)
    assert why in str(info.value) and "\n" not in str(info.value)


def test_pid_liveness_uses_the_start_time(tmp_path):
    me = os.getpid()
    start = sd.pid_start_time(me)
    assert start is not None and start == sd.pid_start_time(me)
    assert sd.pid_alive(me, start) and not sd.pid_alive(me, start + 1)  # a recycled pid is another process
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not sd.pid_alive(proc.pid, None) or sd.pid_start_time(proc.pid) != start


def test_a_lock_whose_pid_was_recycled_is_stale(tmp_path):
    rec = {"pid": os.getpid(), "pid_start": sd.pid_start_time(os.getpid()) - 1, "host": socket.gethostname(),
           "command": "launch", "since": time.time()}
    assert sd.lock_is_stale(rec)
    rec["pid_start"] += 1
    assert not sd.lock_is_stale(rec)


def test_stale_temporary_files_are_cleaned_and_fresh_ones_kept(tmp_path):
    old = tmp_path / "8b" / "train" / ".records.parquet.abc123.tmp"
    old.parent.mkdir(parents=True)
    old.write_text("torn")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".manifest.json.def456.tmp"
    fresh.write_text("being written")
    keep = tmp_path / "8b" / "train" / "records.parquet"
    keep.write_text("data")
    os.utime(keep, (time.time() - 7200, time.time() - 7200))
    assert durable.clean_stale_tmp(tmp_path, recursive=True) == 1
    assert not old.exists() and fresh.exists() and keep.exists()


def test_a_run_refuses_a_second_live_writer(tmp_path):
    inside = threading.Event()
    release = threading.Event()

    def first():
        with sd.writer_lock(tmp_path / "8b" / "sft"):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    try:
        with pytest.raises(LaunchError, match="another live job is writing this run"):
            with sd.writer_lock(tmp_path / "8b" / "sft"):
                pass
        with sd.writer_lock(tmp_path / "8b" / "sft", "math500"):  # another item is another writer
            pass
    finally:
        release.set()
        t.join()
    with sd.writer_lock(tmp_path / "8b" / "sft"):  # released when the holder ends
        pass


def test_storage_errors_are_scaling_errors():
    err = OSError(errno.ENOSPC, "No space left on device", "/x")
    from scaling.errors import storage_error

    out = storage_error(err, "/x/plan.json")
    assert isinstance(out, ScalingError) and out.exit_code == 2 and "free space" in str(out)
