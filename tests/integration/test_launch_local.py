"""A small study end to end through submitit's local executor (real subprocesses, no Slurm):
launch, status, then resume after a failure without rerunning finished jobs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scaling import launch as L  # noqa: E402
from scaling import executors as E  # noqa: E402
from scaling import status as ST  # noqa: E402
from scaling import durable  # noqa: E402
from scaling import studydir as sd  # noqa: E402
from tests.slurm import bodies as B  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))  # the job subprocesses import tests.slurm.bodies
    monkeypatch.chdir(B.REPO_ROOT)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the status table to the terminal width
    return tmp_path / "runs"


def _mtimes(sdir: Path) -> dict[str, float]:
    return {str(p.relative_to(sdir)): p.stat().st_mtime for p in sdir.rglob("DONE")}


def test_local_study_runs_reports_and_resumes_without_rerunning(runs, capsys):
    plan = B.plan("loc", [B.job("a/train", "fail_first", study="loc"),
                          B.job("a/eval-trained", "item", after=["a/train"], array=["x", "y"], study="loc"),
                          B.job("b/train", "ok", study="loc"),
                          B.job("b/eval-trained", "item", after=["b/train"], array=["x", "y"], study="loc")])
    rc = L.launch(B.FakeStudy("loc"), plan, executor="local", runs_dir=runs, poll_s=0.2)
    assert rc == 1  # a/train failed on purpose
    sdir = runs / "loc"
    m = sd.read_manifest(sdir)
    assert m["executor"] == "local"
    states = ST.refresh_states(sdir, m, E.make_executor("local", plan.profile))
    assert states["b/train"]["state"] == "done" and states["b/eval-trained"]["state"] == "done"
    assert states["a/train"]["state"] == "failed" and states["a/eval-trained"]["state"] == "blocked"
    # b/eval-trained started only after b/train was DONE (dependency order kept by the launcher)
    item = json.loads((sdir / "b" / "eval-trained" / "x" / "out.json").read_text())
    assert item["item"] == "x"
    assert (sdir / "b" / "train" / "DONE").stat().st_mtime <= (sdir / "b" / "eval-trained" / "x" / "DONE").stat().st_mtime

    capsys.readouterr()
    assert ST.status("loc", runs_dir=runs) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "blocked" in out and "done" in out
    assert "planned failure" in out  # the last log line of the failed job

    before = _mtimes(sdir)
    assert L.resume("loc", runs_dir=runs, poll_s=0.2) == 0
    after = _mtimes(sdir)
    for done_before, t in before.items():
        assert after[done_before] == t, f"{done_before} was rerun"
    m = sd.read_manifest(sdir)
    assert m["runs"]["b/train"]["attempts"] == 1 and m["runs"]["a/train"]["attempts"] == 2
    assert all(e["state"] == "done" for e in m["runs"].values())
    assert durable.is_done(sdir / "a" / "eval-trained" / "y")
