"""The launcher on the real single-node Slurm cluster (slurm/ci/start_cluster.sh), through the
public ``launch``/``status``/``resume``/``cancel`` entry points users call.

    bash slurm/ci/start_cluster.sh && python -m pytest tests/slurm --slurm -q
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scaling import launch as L  # noqa: E402
from scaling import executors as E  # noqa: E402
from scaling import status as ST  # noqa: E402
from scaling import durable  # noqa: E402
from scaling import studydir as sd  # noqa: E402
from scaling.errors import LaunchError  # noqa: E402
from scaling.records import ClusterProfile  # noqa: E402
from tests.slurm import bodies as B  # noqa: E402

pytestmark = pytest.mark.slurm

CI = ClusterProfile(name="ci_single_node", gpu_name="fake-gpu", gpu_mem_gb=80, gpu_tflops=989, gpus_per_node=8,
                    cpus_per_node=2, mem_per_node_gb=20, max_nodes=1, max_time_min=60, partition="ci",
                    array_parallelism=2, requeue=True)
POLL_S = 0.5


def _wait_until(pred, timeout_s: float = 120.0, what: str = "condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        value = pred()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _states(sdir: Path) -> dict[str, str]:
    ex = E.make_executor("slurm", CI)
    return {r: s["state"] for r, s in ST.refresh_states(sdir, sd.read_manifest(sdir), ex).items()}


def _squeue_names() -> list[str]:
    res = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True)
    return res.stdout.split()


def test_small_study_runs_every_job_and_status_shows_it(slurm_env, capsys):
    specs = [B.job("a/curate", "ok", study="small"),
             B.job("a/train", "ok", after=["a/curate"], study="small", gpus=2),
             B.job("a/eval-trained", "item", after=["a/train"], array=["x", "y", "z"], study="small", gpus=1),
             B.job("a/eval-base", "item", array=["x", "y", "z"], study="small", gpus=1)]
    plan = B.plan("small", specs, CI)
    rc = L.launch(B.FakeStudy("small"), plan, executor="slurm", runs_dir=slurm_env, wait=True, poll_s=POLL_S)
    assert rc == 0
    sdir = slurm_env / "small"
    assert set(_states(sdir).values()) == {"done"}
    m = sd.read_manifest(sdir)
    # afterok chain: each body saw its predecessors DONE when it ran
    train_out = json.loads((sdir / "a" / "train" / "out.json").read_text())
    assert "a/curate" in train_out["deps_done"]
    train_sh = next((sdir / "a" / "train" / "logs").glob("*_submission.sh")).read_text()
    assert f"--dependency=afterok:{m['runs']['a/curate']['job_id']}" in train_sh
    # the evaluation sweep is ONE array job with a concurrency cap
    ev = m["runs"]["a/eval-trained"]
    master = ev["job_id"]
    assert sorted(ev["item_ids"].values()) == [f"{master}_{i}" for i in range(3)]
    ev_sh = next((sdir / "a" / "eval-trained" / "logs").glob("*_submission.sh")).read_text()
    assert "--array=0-2%2" in ev_sh and f"--dependency=afterok:{m['runs']['a/train']['job_id']}" in ev_sh
    tasks = sorted(json.loads((sdir / "a" / "eval-trained" / i / "out.json").read_text())["task"] for i in "xyz")
    assert tasks == ["0", "1", "2"]
    # status through the CLI a user types
    res = subprocess.run([sys.executable, "-m", "scaling", "status", "small", "--runs-dir", str(slurm_env)],
                         capture_output=True, text=True, env={**__import__("os").environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    for run_id in ("a/curate", "a/train", "a/eval-trained", "a/eval-base"):
        line = next(ln for ln in res.stdout.splitlines() if run_id in ln)
        assert "done" in line and m["runs"][run_id]["job_id"] in line
    assert "warning" not in (res.stdout + res.stderr).lower() and "sacct" not in res.stderr


def test_killed_job_then_resume_completes_without_rerunning_finished_jobs(slurm_env, monkeypatch):
    monkeypatch.setenv("SCALING_TEST_SLEEP_S", "120")
    specs = [B.job("a/train", "slow", study="kill"),
             B.job("a/eval-trained", "ok", after=["a/train"], study="kill"),
             B.job("b/train", "ok", study="kill")]
    plan = B.plan("kill", specs, CI)
    assert L.launch(B.FakeStudy("kill"), plan, executor="slurm", runs_dir=slurm_env, wait=False) == 0
    sdir = slurm_env / "kill"
    _wait_until(lambda: (sdir / "a" / "train" / "starts").exists(), what="a/train to start")
    job_id = sd.read_manifest(sdir)["runs"]["a/train"]["job_id"]
    subprocess.run(["scancel", job_id], check=True)  # killed mid-run
    _wait_until(lambda: not [n for n in _squeue_names() if n.startswith("kill.")], what="the queue to drain")
    b_done = (sdir / "b" / "train" / "DONE").stat().st_mtime
    st = _states(sdir)
    assert st["b/train"] == "done"
    assert st["a/train"] in ("failed", "cancelled")
    assert st["a/eval-trained"] == "blocked"  # its afterok dependency can never be satisfied

    monkeypatch.setenv("SCALING_TEST_SLEEP_S", "0")
    assert L.resume("kill", runs_dir=slurm_env, wait=True, poll_s=POLL_S) == 0
    assert set(_states(sdir).values()) == {"done"}
    m = sd.read_manifest(sdir)
    assert (sdir / "b" / "train" / "DONE").stat().st_mtime == b_done
    assert m["runs"]["b/train"]["attempts"] == 1
    assert m["runs"]["a/train"]["attempts"] == 2 and m["runs"]["a/train"]["job_id"] != job_id
    assert (sdir / "a" / "train" / "starts").read_text() == "2"


def test_preflight_that_must_fail_lists_every_problem_and_submits_nothing(slurm_env):
    specs = [B.job("a/train", "ok", study="pf", gpus=9),
             B.job("b/train", "ok", study="pf", cpus=64, mem_gb=4000),
             B.job("c/train", "ok", study="pf", timeout_min=5)]
    plan = B.plan("pf", specs, CI)
    with pytest.raises(LaunchError) as err:
        L.launch(B.FakeStudy("pf"), plan, executor="slurm", runs_dir=slurm_env)
    msg = str(err.value)
    assert "a/train" in msg and "9 GPUs per node" in msg and "nodes have 8" in msg
    assert "b/train" in msg and "64 CPUs" in msg and "4000 GB" in msg
    assert "c/train" not in msg and "nothing was submitted" in msg
    assert "sbatch --test-only refused" in msg
    assert not [n for n in _squeue_names() if n.startswith("pf.")] and not (slurm_env / "pf").exists()


def test_dry_run_prints_sbatch_parameters_and_submits_nothing(slurm_env, capsys):
    plan = B.plan("dry", [B.job("a/train", "ok", study="dry", gpus=8),
                          B.job("a/eval", "item", after=["a/train"], array=["x", "y"], study="dry")], CI)
    assert L.launch(B.FakeStudy("dry"), plan, executor="slurm", runs_dir=slurm_env, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --gpus-per-node=8" in out and "#SBATCH --partition=ci" in out
    assert "#SBATCH --array=0-1%2" in out and "#SBATCH --dependency='afterok:<a/train>'" in out
    assert "dry/a/eval/logs/%A_%a_0_log.out" in out
    assert not [n for n in _squeue_names() if n.startswith("dry.")] and not (slurm_env / "dry").exists()


def test_second_launch_is_refused_while_live_and_cancel_stops_it(slurm_env, monkeypatch):
    monkeypatch.setenv("SCALING_TEST_SLEEP_S", "120")
    plan = B.plan("twice", [B.job("a/train", "slow", study="twice")], CI)
    L.launch(B.FakeStudy("twice"), plan, executor="slurm", runs_dir=slurm_env)
    with pytest.raises(LaunchError, match="already launched"):
        L.launch(B.FakeStudy("twice"), plan, executor="slurm", runs_dir=slurm_env)
    assert _squeue_names().count("twice.a.train") == 1
    assert L.cancel("twice", runs_dir=slurm_env) == 0
    _wait_until(lambda: "twice.a.train" not in _squeue_names(), what="the cancelled job to leave the queue")
    assert _states(slurm_env / "twice")["a/train"] in ("failed", "cancelled")


def test_secrets_reach_the_job_but_are_written_nowhere(slurm_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_TOPSECRET_slurm_123")
    monkeypatch.setenv("WANDB_API_KEY", "wandb_TOPSECRET_slurm_456")
    plan = B.plan("sec", [B.job("a/train", "ok", study="sec")], CI)
    assert L.launch(B.FakeStudy("sec"), plan, executor="slurm", runs_dir=slurm_env, wait=True, poll_s=POLL_S) == 0
    sdir = slurm_env / "sec"
    assert json.loads((sdir / "a" / "train" / "out.json").read_text())["secret_seen"] is True
    files = [p for p in sdir.rglob("*") if p.is_file()]
    assert any(p.name.endswith("_submission.sh") for p in files)
    for p in files:
        assert b"TOPSECRET" not in p.read_bytes(), p


def test_checkpointable_job_saves_requeues_and_resumes(slurm_env):
    plan = B.plan("ckpt", [B.job("a/train", "checkpointing", study="ckpt", checkpointable=True)], CI)
    assert L.launch(B.FakeStudy("ckpt"), plan, executor="slurm", runs_dir=slurm_env) == 0
    sdir = slurm_env / "ckpt"
    _wait_until(lambda: (sdir / "a" / "train" / "running").exists(), what="the training body to start")
    job_id = sd.read_manifest(sdir)["runs"]["a/train"]["job_id"]
    # what Slurm does near the time limit / on preemption: the warning signal to the job
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    _wait_until(lambda: durable.is_done(sdir / "a" / "train"), timeout_s=240, what="the requeued job to finish")
    out = json.loads((sdir / "a" / "train" / "out.json").read_text())
    assert out["resumed_from"] == ["checkpoint-1"]
    assert (sdir / "a" / "train" / "starts").read_text() == "2"
    assert sd.read_manifest(sdir)["runs"]["a/train"]["job_id"] == job_id  # same job, requeued by Slurm


@pytest.mark.slurm
def test_pure_nodelist_parser_agrees_with_scontrol(slurm_cluster):
    """The multi-node job body expands SLURM_JOB_NODELIST without scontrol; it must agree with it."""
    from scaling.jobs import multinode as MN

    # (a suffix after a bracket, "a[1-2]-ib", is refused by Debian's Slurm 22.05: "Invalid hostlist")
    for nodelist in ("gpu-[01-02,05],x", "r[1-2]n[1-2]", "node1"):
        res = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == MN.expand_nodelist(nodelist), nodelist
