"""Runs failed in five ways on submitit's real local executor (subprocesses, the training
supervisor, submitit's own timeout): `scaling status` names each cause -- the job's own exception
line, not the supervisor's ``RuntimeError: ... exited with status 1`` -- and the log file and line it
was read from; `scaling logs` prints that log (issue 26, item 1).

Before issue 26 status showed the last line of the newest log: the wrapper's RuntimeError for the
four supervised runs, and no path at all; ``test_status_names_the_cause_and_the_log_line`` fails on
that code (checked against the HEAD version of scaling/status.py)."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scaling import launch as L  # noqa: E402
from scaling import executors as E  # noqa: E402
from scaling import status as ST  # noqa: E402
from scaling import studydir as sd  # noqa: E402
from scaling.cli import main  # noqa: E402
from scaling.records import ClusterProfile  # noqa: E402
from tests.slurm import bodies as B  # noqa: E402

pytestmark = pytest.mark.integration

M = "tests.integration.failing_jobs"
# run id -> (job entry, through the training supervisor?, what the cause must say)
CASES = {
    "ds/sft": ("missing_dataset", True, "JobError: dataset.source: "),
    "oom/train": ("cuda_oom", True, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"),
    "ckpt/train": ("bad_checkpoint", True, "JSONDecodeError: Expecting ',' delimiter"),
    "kill/train": ("killed", True, "killed by SIGKILL"),
    "kill/eval": ("killed", False, "killed: the job ended without a result"),
    "slow/eval": ("hang", False, "timed out: "),
}


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    """One study whose six runs fail at once (~35 s: the timeout is submitit's, 30 s after the start
    of a 1-minute limit, when it sends the warning signal a job that cannot checkpoint dies of)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", str(B.REPO_ROOT))
    mp.setenv("SCALING_TEST_SLEEP_S", "300")
    mp.chdir(B.REPO_ROOT)
    runs = tmp_path_factory.mktemp("failed") / "runs"
    specs = []
    for run_id, (entry, supervised, _) in CASES.items():
        run, job = B.job(run_id, "ok", study="bad", checkpointable=supervised, timeout_min=1)
        specs.append((run, dataclasses.replace(job, entry=f"{M}:{entry}")))
    plan = B.plan("bad", specs, ClusterProfile(name="test", cpus_per_node=len(specs)))
    assert L.launch(B.FakeStudy("bad"), plan, executor="local", runs_dir=runs, poll_s=0.5) == 1
    yield runs / "bad"
    mp.undo()


def test_status_names_the_cause_and_the_log_line(failed):
    m = sd.read_manifest(failed)
    states = ST.refresh_states(failed, m, E.make_executor("local", ClusterProfile()))
    rows = {r["run"]: r for r in ST._status_rows(failed, m, states)}
    for run_id, (_, supervised, expect) in CASES.items():
        r = rows[run_id]
        assert r["state"] in ("failed", "timeout"), (run_id, r["state"])
        assert expect in r["cause"], (run_id, r["cause"])
        assert "exited with status" not in r["cause"], f"{run_id}: the supervisor's wrapper is not the cause"
        path, line_no = re.fullmatch(r"(.*?)(?::(\d+))?", r["cause_at"]).groups()
        assert Path(path).is_file() and Path(path).parent == failed / run_id / "logs", r["cause_at"]
        if line_no and run_id != "kill/eval":  # a line of the log says it (the killed job without a supervisor wrote none)
            line = Path(path).read_text().splitlines()[int(line_no) - 1]
            # the killed worker's status is the supervisor's line; every other cause is the line itself
            says = "exited with status -9" if run_id == "kill/train" else r["cause"].split(": ", 1)[-1][:40]
            assert says in line, (run_id, line)
    # the missing dataset: the real error is in the middle of a longer log, as in the issue
    ds = Path(rows["ds/sft"]["cause_at"].rpartition(":")[0])
    lines = ds.read_text().splitlines()
    assert 5 < int(rows["ds/sft"]["cause_at"].rpartition(":")[2]) < len(lines) - 5
    assert lines[-1].startswith("RuntimeError:") and "exited with status 1" in lines[-1]


def test_status_command_shows_the_causes_and_paths_in_80_columns(failed, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert main(["status", str(failed)]) == 0
    out = capsys.readouterr().out
    assert max(len(ln) for ln in out.splitlines()) <= 80, out
    flat = " ".join(out.split())
    for run_id, (_, _, expect) in CASES.items():
        assert f"{run_id}: " in flat and " ".join(expect.split()) in flat, (run_id, out)
        assert f"{failed / run_id / 'logs'}/" in out.replace("\n", ""), (run_id, out)  # the path, folded at 80
    assert "exited with status 1" not in out
    assert flat.count(f"(scaling logs bad --runs-dir {failed.parent} ") == len(CASES), out


def test_logs_prints_the_runs_log_and_its_tail(failed, capsys):
    capsys.readouterr()
    assert main(["logs", str(failed), "ds/sft"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"==> .*ds/sft/logs/\d+_0_log\.out <==", out) and re.search(r"==> .*_0_log\.err <==", out)
    assert "[sft] start-up line 0" in out and "JobError: dataset.source" in out
    assert main(["logs", str(failed), "ds/sft", "--tail", "2"]) == 0
    out = capsys.readouterr().out
    assert "(last 2 of" in out and "[sft] start-up line 0" not in out and "exited with status 1" in out
    assert main(["logs", str(failed), "ds/sf"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean ds/sft?" in err and "Traceback" not in err
