"""A launcher killed inside the submit window on the real Slurm cluster (issue 14 item 2).

`scaling launch` is SIGKILLed right after sbatch accepted a job and before its id reached
manifest.json (the fault point ``SCALING_FAULT_INJECT=after_submit:<run_id>`` in launch.py,
inert when unset). `scaling resume` must then find the queued job by name and adopt it, not
submit a twin: every run is submitted exactly once, counted with squeue/sacct by job name.

    bash slurm/ci/start_cluster.sh && python -m pytest tests/slurm/test_submit_window.py --slurm -q
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scaling import launch as L  # noqa: E402
from scaling import durable  # noqa: E402
from scaling import studydir as sd  # noqa: E402
from tests.slurm import bodies as B  # noqa: E402
from tests.slurm.test_cluster import CI, POLL_S  # noqa: E402

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]

LAUNCHER = """
import sys
sys.path.insert(0, {repo!r})
from scaling import launch as L
from tests.slurm import bodies as B
from tests.slurm.test_cluster import CI
specs = [B.job("a/train", "slow", study={study!r}),
         B.job("a/eval-trained", "ok", after=["a/train"], study={study!r}),
         B.job("b/eval-base", "item", array=["x", "y"], study={study!r})]
L.launch(B.FakeStudy({study!r}), B.plan({study!r}, specs, CI), executor="slurm", runs_dir={runs!r}, wait=False)
print("launch returned: the fault point did not fire")
"""


class _QueueWatch:
    """Every job id Slurm showed under each name while the test ran: squeue polled every 0.2 s
    (this cluster keeps no accounting, and finished jobs leave squeue quickly), plus sacct when
    accounting exists. Array tasks count once, by their master id."""

    def __init__(self, prefix: str):
        import threading

        self.prefix, self.seen, self._stop = prefix, {}, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _poll(self) -> None:
        q = subprocess.run(["squeue", "-h", "-o", "%F|%j"], capture_output=True, text=True, timeout=30)
        for line in q.stdout.splitlines():
            jid, _, name = line.strip().partition("|")
            if name.startswith(self.prefix):
                self.seen.setdefault(name, set()).add(jid)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(0.2)

    def ids(self, name: str) -> set[str]:
        self._poll()
        out = set(self.seen.get(name, set()))
        a = subprocess.run(["sacct", "-n", "-P", "-X", "--name", name, "-S", "now-1hour", "-o", "JobID"],
                           capture_output=True, text=True, timeout=30)
        if a.returncode == 0:
            out.update(x.strip().split("_")[0] for x in a.stdout.split() if x.strip())
        return out

    def stop(self) -> None:
        self._stop.set()
        self._t.join(10)


def _submissions(sdir: Path, run_id: str) -> set[str]:
    """Job ids submitit wrote a submission script for (one ``<id>_submission.sh`` per sbatch)."""
    logs = sd.run_dir(sdir, run_id) / durable.LOGS
    return {p.name.split("_")[0] for p in logs.glob("*_submission.sh")}


@pytest.mark.parametrize("victim", ["a/train", "b/eval-base"])
def test_resume_after_a_kill_inside_the_submit_window_submits_nothing_twice(slurm_env, victim):
    study = "win" + ("a" if victim == "a/train" else "b") + str(os.getpid() % 10000)
    runs = str(slurm_env)
    env = {**os.environ, "PYTHONPATH": str(REPO), L.FAULT_ENV: f"after_submit:{victim}", "SCALING_TEST_SLEEP_S": "8"}
    watch = _QueueWatch(study + ".")
    try:
        proc = subprocess.run([sys.executable, "-c", LAUNCHER.format(repo=str(REPO), study=study, runs=runs)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-2000:])
        sdir = slurm_env / study
        entry = sd.read_manifest(sdir)["runs"][victim]
        assert entry["job_id"] is None and entry.get("submitting"), entry  # inside the window: no id recorded
        victim_name = sd.job_name(study, victim)
        assert len(watch.ids(victim_name) | _submissions(sdir, victim)) == 1  # ... but Slurm has the job

        os.environ.pop(L.FAULT_ENV, None)
        os.environ["SCALING_TEST_SLEEP_S"] = "8"
        assert L.resume(study, runs_dir=runs, executor="slurm", wait=True, poll_s=POLL_S) == 0
        m = sd.read_manifest(sdir)
        assert all(sd.run_is_done(sdir, r, e.get("items")) for r, e in m["runs"].items())
        assert "submitting" not in m["runs"][victim]
        assert m["runs"][victim]["history"][-1].get("how") == "adopted"
        assert (sdir / "a" / "train" / "starts").read_text() == "1"  # the slow job ran once, never twice
        time.sleep(1)
        assert L.resume(study, runs_dir=runs, executor="slurm", poll_s=POLL_S) == 0  # nothing left: nothing sent
        for run_id in m["runs"]:
            ids = watch.ids(sd.job_name(study, run_id)) | _submissions(sdir, run_id)
            assert len(ids) == 1, f"{run_id}: submitted as {sorted(ids)}"
    finally:
        watch.stop()


def test_a_named_export_list_keeps_other_variables_out_of_the_job(slurm_env, monkeypatch):
    """Profile ``export: [...]`` -> sbatch --export=NAMES: the job sees the listed variables
    and not a token that was only in the submitting shell (Slurm then never stores it)."""
    import dataclasses
    import json

    monkeypatch.setenv("HF_TOKEN", "hf_canary_export_4c1d")
    prof = dataclasses.replace(CI, export=["PATH", "HOME", "PYTHONPATH", "SCALING_TEST_SLEEP_S"])
    study = f"exp{os.getpid() % 10000}"
    plan = B.plan(study, [B.job("a/train", "ok", study=study)], prof)
    rc = L.launch(B.FakeStudy(study), plan, executor="slurm", runs_dir=slurm_env, wait=True, poll_s=POLL_S)
    logs = slurm_env / study / "a" / "train" / "logs"
    assert rc == 0, [p.read_text()[-1500:] for p in logs.glob("*_log.*")]
    out = json.loads((slurm_env / study / "a" / "train" / "out.json").read_text())
    assert out["secret_seen"] is False
    script = next((slurm_env / study / "a" / "train" / "logs").glob("*_submission.sh")).read_text()
    assert "#SBATCH --export=PATH,HOME,PYTHONPATH,SCALING_TEST_SLEEP_S,SUBMITIT_EXECUTOR" in script
    for p in (slurm_env / study).rglob("*"):
        if p.is_file():
            assert b"hf_canary_export_4c1d" not in p.read_bytes(), p
