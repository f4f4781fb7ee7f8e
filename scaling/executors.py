"""Where a study's jobs run, behind one protocol: the launcher speaks only of jobs, ids and states.

* ``Executor``: what the launcher needs from a scheduler (describe, preflight, submit, states, cancel);
* ``DebugExecutor``: runs each job body in this process at submission, so a breakpoint works;
* ``make_executor(kind, profile)``: ``auto`` | ``slurm`` | ``local`` | ``debug`` -> an Executor
  (Slurm and submitit's local executor are ``slurm.SubmititExecutor``, imported only when chosen);
* ``executor_for(manifest)``: the executor a launched study was launched with, or None when it is
  not available here;
* ``gpus_here()``, ``refuse_gpu_jobs_without_gpus(plan)``: the GPUs this machine can give local
  jobs, and the refusal of a GPU plan it cannot run;
* ``local_parallel(plan)``, ``parallel_for(profile, jobs)``: how many local runs execute at once.

What runs inside a job (``JobBody``) is ``supervise.py``'s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import traceback
from pathlib import Path
from typing import Any, Protocol

from . import durable
from .errors import LaunchError
from .records import ClusterProfile, JobSpec, Plan
from .supervise import JobBody


class Executor(Protocol):
    """What the launcher needs from a scheduler. ``states`` values are dicts with ``state`` in
    pending | running | succeeded | failed | cancelled | timeout | ended | unknown."""

    name: str
    handles_dependencies: bool

    def describe(self, job: JobSpec, *, items: list[str], after: list[str], folder: Path) -> dict[str, Any]: ...

    def preflight(self, jobs: list[JobSpec]) -> list[str]: ...

    def submit(self, job: JobSpec, bodies: list[JobBody], *, folder: Path, after: list[str]) -> list[str]: ...

    def states(self, job_ids: list[str], folders: dict[str, Path]) -> dict[str, dict[str, Any]]: ...

    def cancel(self, job_ids: list[str]) -> None: ...


class DebugExecutor:
    """Runs each job body in this process at submission (dependency order is the launcher's).

    Exceptions are recorded as a failed job (with the traceback in ``logs/``), not raised, so
    a study behaves as on a cluster; set a breakpoint in the entry to debug it. (submitit's own
    ``cluster="debug"`` executor is not the same: it runs a job only when its result is asked
    for, and opens pdb on an exception.)
    """

    name = "debug"
    handles_dependencies = False

    def __init__(self) -> None:
        self._states: dict[str, str] = {}
        self._n = 0

    def describe(self, job: JobSpec, *, items: list[str], after: list[str], folder: Path) -> dict[str, Any]:
        return {"executor": "debug", "items": list(items)}

    def preflight(self, jobs: list[JobSpec]) -> list[str]:
        return []

    def submit(self, job: JobSpec, bodies: list[JobBody], *, folder: Path, after: list[str]) -> list[str]:
        ids = []
        for body in bodies:
            self._n += 1
            jid = f"debug-{os.getpid()}-{self._n}"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                body()
                durable.atomic_write_text(folder / f"{jid}_0_log.out", f"{job.run_id}: job completed\n")
                self._states[jid] = "succeeded"
            except Exception:  # recorded like a cluster job failure; the log keeps the traceback
                durable.atomic_write_text(folder / f"{jid}_0_log.err", traceback.format_exc())
                self._states[jid] = "failed"
            ids.append(jid)
        return ids

    def states(self, job_ids: list[str], folders: dict[str, Path]) -> dict[str, dict[str, Any]]:
        return {j: {"state": self._states.get(j, "ended")} for j in job_ids}

    def cancel(self, job_ids: list[str]) -> None:
        return None


def make_executor(kind: str, profile: ClusterProfile) -> Executor:
    """``auto`` -> the cluster scheduler when one is configured here (``slurm.cluster_available``),
    else local (with a one-line note)."""
    if kind == "auto":
        from .slurm import cluster_available

        kind = "slurm" if cluster_available() else "local"
        if kind == "local" and shutil.which("sbatch"):
            print("note: scheduler commands are installed but no cluster is configured here; running locally "
                  "(--executor slurm to insist)")
    if kind == "debug":
        return DebugExecutor()
    if kind in ("slurm", "local"):
        from .slurm import SubmititExecutor

        return SubmititExecutor(kind, profile)
    raise LaunchError(f"--executor {kind!r} is unknown; use auto, slurm, local or debug")


def executor_for(manifest: dict[str, Any], requested: str = "auto") -> Executor | None:
    """The executor to follow a launched study with: ``requested``, or with ``auto`` the one the
    manifest names. None when it cannot be made here (e.g. Slurm off the cluster)."""
    kind = manifest.get("executor", "local") if requested == "auto" else requested
    if kind == "debug":
        return DebugExecutor()
    try:
        return make_executor(kind, ClusterProfile())
    except LaunchError:
        return None


# ------------------------------------------------------------------------ this machine
def gpus_here() -> int:
    """GPUs this machine can give local jobs, without importing torch: ``nvidia-smi -L`` (or the
    driver's ``/proc`` entries), limited by ``CUDA_VISIBLE_DEVICES`` when it is set."""
    n = 0
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
            n = sum(1 for ln in out.stdout.splitlines() if ln.startswith("GPU ")) if out.returncode == 0 else 0
        except (OSError, subprocess.SubprocessError):
            n = 0
    if n == 0 and Path("/proc/driver/nvidia/gpus").is_dir():
        n = sum(1 for _ in Path("/proc/driver/nvidia/gpus").iterdir())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        n = min(n, len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"]))
    return n


def refuse_gpu_jobs_without_gpus(plan: Plan) -> None:
    """A GPU plan run on this machine (local or debug executor) needs the GPUs its jobs ask for:
    refuse before anything is written or started, naming what is missing and what to do instead."""
    need = max((j.resources.gpus_per_node * max(1, j.resources.nodes) for j in plan.jobs), default=0)
    if need <= 0:
        return
    have = gpus_here()
    if have >= need:
        return
    widest = max(plan.jobs, key=lambda j: j.resources.gpus_per_node * max(1, j.resources.nodes))
    what = "no GPU" if have == 0 else f"{have} GPU(s)"
    raise LaunchError(
        f"profile {plan.profile.name} plans GPU jobs ({widest.run_id} asks {need} GPU(s)) but this machine has {what} "
        "and no Slurm cluster is configured: nothing was started; submit from a cluster's login node "
        "(--executor slurm), look at the jobs with --dry-run, or run the CPU ladder "
        "(scaling launch recipes/tiny-ladder.yaml --wait); --force runs them here anyway")


def local_parallel(plan: Plan) -> int:
    """How many local runs execute at once. GPU machines: one (a workstation has one set of GPUs;
    labelled default). CPU profiles: as many as the cores allow at the planned
    ``resources.cpus_per_task`` each (rule:cpu_jobs in capacity.job_resources)."""
    return parallel_for(getattr(plan, "profile", None), plan.jobs)


def parallel_for(profile: ClusterProfile | None, jobs: list[JobSpec]) -> int:
    """``local_parallel`` for a profile and its jobs (no profile: one at a time)."""
    if profile is None or profile.gpus_per_node > 0 or not jobs:
        return 1
    widest = max(max(1, j.resources.cpus_per_task) for j in jobs)
    return max(1, profile.cpus_per_node // widest)
