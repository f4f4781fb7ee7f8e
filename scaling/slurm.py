"""Slurm (and submitit's local executor) behind the launcher's ``Executor`` protocol.

This is THE ONLY module that imports submitit, and the one that runs Slurm's commands; the pure
half (``executor_params``: JobSpec -> submitit parameters, ``afterok`` strings, parsers of
Slurm's answers) is ``slurmformat.py``'s. It holds:

* ``sbatch_script(params, ...)``: the exact sbatch text submitit will write (dry-run, preflight);
* ``CheckpointableBody``: the training body (``supervise.SupervisedBody``, which supervises the
  workers on the node) made a ``submitit.helpers.Checkpointable``: on timeout/preemption the
  workers save a checkpoint and exit, then submitit requeues the job, which resumes from it;
* ``preflight``: every distinct resource shape against the live cluster (``sinfo``,
  ``sbatch --test-only``); every problem is collected and reported at once;
  ``cluster_available()``: whether a Slurm cluster is configured here (``auto`` picks it);
* job states without accounting: ``squeue`` for live jobs, then ``sacct`` if it works (quietly),
  then submitit's result files. Users never see sacct's "accounting disabled" noise.
  ``jobs_named``: the ids of jobs of one name, to settle a submission left in doubt;
* ``SubmititExecutor(kind, profile)``: ``SlurmSubmitit`` (``AutoExecutor(cluster="slurm")``,
  ``afterok`` dependencies, job arrays with a concurrency cap) or ``LocalSubmitit`` (submitit's
  ``LocalExecutor``; the launcher then runs jobs in dependency order itself).

Secrets (HF_TOKEN, WANDB_API_KEY, ...) reach jobs through the submission environment
(sbatch exports the caller's environment); they are never written into scripts or pickles.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import submitit
import submitit.helpers
from submitit.core.utils import JobPaths, pickle_load
from submitit.slurm import slurm as _submitit_slurm

from .errors import LaunchError
from .records import ClusterProfile, JobSpec
from .slurmformat import (SACCT_STATES, SQUEUE_PENDING, SQUEUE_RUNNING, dependency_string, executor_params,
                          parse_elapsed_s, parse_gres_gpus, parse_time_min, sbatch_lines, secrets_in)
from .studydir import pid_alive
from .supervise import JobBody, SupervisedBody


def _quiet_submitit() -> None:
    """On the launching side only: submitit's warnings (e.g. sacct without accounting) are noise
    for our users because we never ask submitit for states. Job logs keep submitit's INFO lines."""
    logging.getLogger("submitit").setLevel(logging.ERROR)


# ------------------------------------------------------------------------- sbatch text
# submitit has no public way to render the sbatch file it will write (it writes it only when it
# submits), so the dry run and preflight call the two module-level helpers of submitit.slurm.slurm
# its SlurmExecutor uses itself: ``_convert_mem`` (mem_gb -> --mem) and ``_make_sbatch_string``.
# Using them, not a copy, keeps what --dry-run shows and preflight tests identical to what a
# submission writes; tests/unit/test_slurm.py fails if a submitit upgrade renames them.
def _slurm_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """AutoExecutor parameters -> submitit SlurmExecutor (``_make_sbatch_string``) arguments."""
    out: dict[str, Any] = {}
    generic = {"name": "job_name", "nodes": "nodes", "tasks_per_node": "ntasks_per_node",
               "cpus_per_task": "cpus_per_task", "gpus_per_node": "gpus_per_node", "timeout_min": "time"}
    for key, value in params.items():
        if key in generic:
            out[generic[key]] = value
        elif key == "mem_gb":
            out["mem"] = _submitit_slurm._convert_mem(value)
        elif key.startswith("slurm_"):
            out[key[len("slurm_"):]] = value
        else:
            raise ValueError(f"executor parameter {key!r} has no Slurm equivalent")
    return out


def sbatch_script(params: dict[str, Any], *, folder: str | Path = "<study>/<size>/<stage>/logs",
                  command: str = "python -u -m submitit.core._submit <logs>", map_count: int | None = None,
                  dependency: str | None = None) -> str:
    """The sbatch file submitit writes for these parameters (shown by --dry-run, tested by preflight)."""
    kwargs = _slurm_kwargs(params)
    if dependency:
        kwargs["dependency"] = dependency
    if map_count:
        kwargs["map_count"] = map_count
    return _submitit_slurm._make_sbatch_string(command=command, folder=folder, **kwargs)


def sbatch_command(folder: str | Path) -> str:
    """The command line submitit runs for one submission (``SlurmExecutor._make_submission_command``,
    which uses no executor state: called unbound, so no Slurm client is needed). submitit names the
    file ``.submission_file_<uuid>.sh`` in the job's log folder; the uuid is drawn at submission."""
    path = Path(folder).expanduser().absolute() / ".submission_file_<uuid>.sh"  # as submitit's executor folder
    return " ".join(_submitit_slurm.SlurmExecutor._make_submission_command(None, path))  # type: ignore[arg-type]


SLURM_CLIENT = ("sbatch", "squeue", "srun")


def require_client() -> None:
    """Refuse (one line) to run a Slurm command where the client is not installed."""
    missing = [c for c in SLURM_CLIENT if shutil.which(c) is None]
    if missing:
        raise LaunchError(f"--executor slurm: {', '.join(missing)} not found on PATH; run on a Slurm login "
                          "node, look at the jobs with --dry-run (needs no Slurm), or use --executor local")


# --------------------------------------------------------------------- job wrappers
class CheckpointableBody(SupervisedBody, submitit.helpers.Checkpointable):
    """Training job body (``JobSpec.checkpointable``): ``supervise.SupervisedBody`` (the workers,
    the forwarded stop signal) made requeueable by submitit. When Slurm's warning signal arrives,
    submitit calls ``checkpoint`` on rank 0, which waits for the workers to save and exit
    (``stop_workers``) and requeues this same callable; it resumes from
    ``job_dir/checkpoints/checkpoint-*``.
    """

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Wait (bounded) for the workers to save and exit, then requeue a fresh copy."""
        self.stop_workers()
        fresh = CheckpointableBody(self.entry, self.run_yaml, self.item)
        fresh.stop_lead_s = self.stop_lead_s
        return submitit.helpers.DelayedSubmission(fresh, *args, **kwargs)


def wrap_body(job: JobSpec, body: JobBody) -> JobBody:
    if not job.checkpointable or body.item:
        return body
    wrapped = CheckpointableBody(body.entry, body.run_yaml, body.item)
    wrapped.stop_lead_s = int(job.signal_delay_s or 0)  # what --signal gives it (slurmformat.executor_params)
    return wrapped


# -------------------------------------------------------------------------- commands
def _run(cmd: list[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command, never raising: failures come back as returncode != 0."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return subprocess.CompletedProcess(cmd, 127, "", str(err))


def partitions() -> dict[str, dict[str, Any]]:
    """Partitions seen by ``sinfo``: name -> {gpus, cpus, mem_gb, nodes, time_min, default}."""
    res = _run(["sinfo", "-h", "-o", "%P|%G|%c|%m|%D|%l"])
    if res.returncode != 0:
        raise LaunchError(f"sinfo failed ({' '.join(res.stderr.split()) or res.returncode}): no Slurm cluster answers "
                          "from here; run on the cluster's login node (or export SLURM_CONF), or use --executor local")
    out: dict[str, dict[str, Any]] = {}
    for line in res.stdout.splitlines():
        bits = line.strip().split("|")
        if len(bits) != 6:
            continue
        name, gres, cpus, mem, nodes, limit = bits
        default = name.endswith("*")
        name = name.rstrip("*")
        cur = out.setdefault(name, {"gpus": 0, "cpus": 0, "mem_gb": 0.0, "nodes": 0, "time_min": None,
                                    "default": default})
        cur["gpus"] = max(cur["gpus"], parse_gres_gpus(gres))
        cur["cpus"] = max(cur["cpus"], int(re.sub(r"\D", "", cpus) or 0))
        cur["mem_gb"] = max(cur["mem_gb"], int(re.sub(r"\D", "", mem) or 0) / 1024)
        cur["nodes"] += int(re.sub(r"\D", "", nodes) or 0)
        cur["time_min"] = parse_time_min(limit)
    return out


def _shape(params: dict[str, Any]) -> tuple:
    keep = {k: v for k, v in params.items() if k not in ("name", "slurm_array_parallelism")}
    return tuple(sorted((k, repr(v)) for k, v in keep.items()))


def preflight(jobs: list[JobSpec], profile: ClusterProfile) -> list[str]:
    """Check every distinct resource shape of the plan against the live cluster.

    Returns the problems (empty when all is well): missing partition, GPUs/CPUs/memory per node
    or node count beyond what the partition has, time limit beyond the partition's, and whatever
    ``sbatch --test-only`` refuses. Nothing is submitted.
    """
    problems: list[str] = []
    try:
        parts = partitions()
    except LaunchError as err:
        return [str(err)]
    if not parts:
        return ["sinfo lists no partitions; is the cluster up?"]
    wanted = profile.partition
    if wanted and wanted not in parts:
        problems.append(f"partition {wanted!r} (profile {profile.name}) does not exist; sinfo lists "
                        f"{', '.join(sorted(parts))}; set partition in the profile")
        return problems
    pname = wanted or next((n for n, p in parts.items() if p["default"]), next(iter(parts)))
    part = parts[pname]
    shapes: dict[tuple, tuple[JobSpec, dict[str, Any]]] = {}
    for job in jobs:
        params = executor_params(job, profile)
        shapes.setdefault(_shape(params), (job, params))
    for job, params in shapes.values():
        r = job.resources
        cpus = r.cpus_per_task * r.tasks_per_node
        issues: list[str] = []
        if r.gpus_per_node > part["gpus"]:
            issues.append(f"{r.gpus_per_node} GPUs per node but partition {pname} nodes have {part['gpus']} "
                          "(lower gpus_per_node or use more nodes)")
        if cpus > part["cpus"]:
            issues.append(f"{cpus} CPUs per node but partition {pname} nodes have {part['cpus']} (lower cpus_per_task)")
        if part["mem_gb"] and r.mem_gb > part["mem_gb"]:
            issues.append(f"{r.mem_gb} GB per node but partition {pname} nodes have {part['mem_gb']:.0f} GB "
                          "(lower mem_gb)")
        if r.nodes > part["nodes"]:
            issues.append(f"{r.nodes} nodes but partition {pname} has {part['nodes']}")
        if part["time_min"] is not None and r.timeout_min > part["time_min"]:
            issues.append(f"{r.timeout_min} min but partition {pname} allows {part['time_min']} min "
                          "(lower timeout_min; training requeues itself from its checkpoint)")
        with tempfile.TemporaryDirectory(prefix="scaling-preflight-") as tmp:
            script = Path(tmp) / "test.sh"
            script.write_text(sbatch_script(params, folder=tmp, command="true"))
            res = _run(["sbatch", "--test-only", str(script)], timeout_s=60)
        if res.returncode != 0:
            msg = " ".join((res.stderr or res.stdout).split()) or f"exit status {res.returncode}"
            issues.append("sbatch --test-only refused: " + msg.replace("sbatch: error: ", ""))
        if issues:
            same = [j.run_id for j in jobs if _shape(executor_params(j, profile)) == _shape(params)]
            who = same[0] + (f" (and {len(same) - 1} more of the same shape)" if len(same) > 1 else "")
            problems.append(f"{who} asks {r.nodes} node(s) x {r.gpus_per_node} GPU, {cpus} CPU, {r.mem_gb} GB, "
                            f"{r.timeout_min} min: " + ", ".join(issues))
    return problems


# The places a Slurm client finds its configuration (Debian, upstream, configless caches).
_SLURM_CONF_PATHS = ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf", "/usr/local/etc/slurm.conf",
                     "/var/spool/slurmd/conf-cache/slurm.conf", "/run/slurm/conf/slurm.conf")


def cluster_available() -> bool:
    """True when ``sbatch`` is on PATH and a cluster is configured: ``SLURM_CONF`` set, a
    slurm.conf in a standard place, or (configless sites) ``sinfo`` answering within 10 s.
    A machine with the client packages but no cluster (a laptop, this CI VM before
    slurm/ci/start_cluster.sh) is not a cluster: ``auto`` then runs locally."""
    if shutil.which("sbatch") is None:
        return False
    if os.environ.get("SLURM_CONF") or any(Path(p).exists() for p in _SLURM_CONF_PATHS):
        return True
    return _run(["sinfo", "-h", "-o", "%P"], timeout_s=10).returncode == 0


def jobs_named(name: str, since_ts: float) -> list[str] | None:
    """Slurm job ids (array tasks expanded) named ``name``: squeue (live jobs), then sacct from
    ``since_ts`` when accounting works. None when squeue does not answer."""
    user = os.environ.get("USER") or ""
    q = _run(["squeue", "-h", "-r", "-n", name, "-o", "%i", *(["-u", user] if user else [])])
    if q.returncode != 0:
        return None
    ids = {line.strip() for line in q.stdout.splitlines() if line.strip()}
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(0.0, since_ts - 60)))
    a = _run(["sacct", "-n", "-P", "-X", "--name", name, "-S", start, "-o", "JobID"])
    if a.returncode == 0:
        ids.update(line.strip() for line in a.stdout.splitlines() if line.strip() and "[" not in line)
    return sorted(ids)


# --------------------------------------------------------------------------- states
def _result_state(folder: Path, job_id: str) -> str | None:
    """Outcome from submitit's result pickle of task 0: succeeded | failed | None (none yet).

    Read directly: submitit's public ``Job(folder, job_id).result()`` asks sacct first (noise where
    accounting is off) and waits for the file. The pickle holds ``(outcome, value)`` with outcome
    ``"success"`` or ``"error"``, as ``submitit.core.core.Job`` reads it."""
    path = JobPaths(folder, job_id, 0).result_pickle
    if not path.exists():
        return None
    try:
        outcome = pickle_load(path)[0]
    except Exception:  # a torn or foreign pickle only means: outcome unknown
        return "ended"
    return "succeeded" if outcome == "success" else "failed"


def slurm_states(job_ids: list[str], folders: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """State of Slurm jobs: squeue for live ones, then sacct when accounting works, then the
    result files submitit writes. Never warns; a failing sacct is the normal case here."""
    out: dict[str, dict[str, Any]] = {}
    if not job_ids:
        return out
    masters = sorted({j.split("_")[0] for j in job_ids})
    res = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%M|%r", "-j", ",".join(masters)])
    seen: dict[str, tuple[str, float | None]] = {}
    reasons: dict[str, str] = {}
    if res.returncode == 0:
        for line in res.stdout.splitlines():
            bits = line.strip().split("|")
            if len(bits) >= 3:
                seen[bits[0]] = (bits[1].split()[0], parse_elapsed_s(bits[2]))
                reasons[bits[0]] = bits[3].strip() if len(bits) > 3 and bits[3].strip() not in ("None", "") else ""
    # squeue exits 1 with "Invalid job id" when every id has left slurmctld's memory: not an error
    squeue_ok = res.returncode == 0 or "Invalid job id" in (res.stderr or "")
    ended = [j for j in job_ids if j not in seen or seen[j][0] not in SQUEUE_PENDING | SQUEUE_RUNNING]
    acct: dict[str, str] = {}
    gone = [j for j in ended if j not in seen]
    if gone and squeue_ok:  # accounting, when the cluster has it; silently nothing otherwise
        res2 = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(sorted({g.split("_")[0] for g in gone}))])
        if res2.returncode == 0:
            for line in res2.stdout.splitlines():
                bits = line.strip().split("|")
                if len(bits) == 2 and bits[1]:
                    acct[bits[0]] = bits[1].split()[0]
    for j in job_ids:
        if j in seen and j not in ended:
            st, el = seen[j]
            pending = st in SQUEUE_PENDING
            out[j] = {"state": "pending" if pending else "running", "elapsed_s": el,
                      "detail": (reasons.get(j) or st.lower()) if pending else ""}
            continue
        if not squeue_ok:
            out[j] = {"state": "unknown", "detail": "squeue failed"}
            continue
        terminal = seen[j][0] if j in seen else acct.get(j, "")
        folder = folders.get(j)
        from_result = _result_state(folder, j) if folder else None
        if from_result and not (from_result == "failed" and terminal in ("TIMEOUT", "CANCELLED")):
            out[j] = {"state": from_result}
        elif terminal in SACCT_STATES:
            out[j] = {"state": SACCT_STATES[terminal], "detail": terminal.lower()}
        else:
            out[j] = {"state": "ended", "detail": "left the queue without a result (killed or cancelled)"}
    return out


# ------------------------------------------------------------------------ executors
class SubmititExecutor:
    """The launcher's Executor over submitit. ``SubmititExecutor(kind, profile)`` makes the class of
    ``kind``: ``slurm`` -> ``SlurmSubmitit``, ``local`` -> ``LocalSubmitit``."""

    name = ""
    handles_dependencies = False

    def __new__(cls, kind: str, profile: ClusterProfile) -> SubmititExecutor:
        if cls is SubmititExecutor:
            if kind not in _KINDS:
                raise LaunchError(f"unknown executor {kind!r}; use slurm, local or debug")
            cls = _KINDS[kind]
        return super().__new__(cls)

    def __init__(self, kind: str, profile: ClusterProfile):
        _quiet_submitit()
        self.profile = profile

    def preflight(self, jobs: list[JobSpec]) -> list[str]:
        return []

    def _executor(self, job: JobSpec, folder: Path, after: list[str]) -> Any:
        raise NotImplementedError

    def _submitted(self, ids: list[str], jobs: list[Any]) -> None:
        """What a kind keeps of the jobs it just submitted (nothing by default)."""

    def submit(self, job: JobSpec, bodies: list[JobBody], *, folder: Path, after: list[str]) -> list[str]:
        """Submit one job (one body) or one array (several bodies); returns their ids in order."""
        folder.mkdir(parents=True, exist_ok=True)
        ex = self._executor(job, folder, after)
        calls = [wrap_body(job, b) for b in bodies]
        try:
            if len(calls) == 1:
                jobs = [ex.submit(calls[0])]
            else:
                with ex.batch():
                    jobs = [ex.submit(c) for c in calls]
        except Exception as err:  # submitit raises FailedJobError/RuntimeError with sbatch's message
            msg = " ".join(str(err).split())
            raise LaunchError(f"{job.run_id}: submission failed: {msg}") from None
        ids = [str(j.job_id) for j in jobs]
        self._submitted(ids, jobs)
        return ids


class SlurmSubmitit(SubmititExecutor):
    """``AutoExecutor(cluster="slurm")``: the scheduler holds dependents (``afterok``) until their
    dependencies succeed; arrays are one submission."""

    name = "slurm"
    handles_dependencies = True

    # Building one needs no Slurm client: ``describe`` (the dry run) renders with submitit's own
    # module-level helpers, which run nothing. Every method that runs a Slurm command (preflight,
    # submit, states, cancel) checks the client first (``require_client``).
    def describe(self, job: JobSpec, *, items: list[str], after: list[str], folder: Path) -> dict[str, Any]:
        params = executor_params(job, self.profile)
        script = sbatch_script(params, folder=folder, map_count=len(items) if items else None,
                               dependency=dependency_string(after) if after else None)
        return {"executor": "slurm", "params": params, "sbatch": sbatch_lines(script),
                "command": sbatch_command(folder)}

    def preflight(self, jobs: list[JobSpec]) -> list[str]:
        require_client()
        return preflight(jobs, self.profile)

    def _executor(self, job: JobSpec, folder: Path, after: list[str]) -> Any:
        require_client()
        params = executor_params(job, self.profile)
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        dep = dependency_string(after)
        if dep:
            params["slurm_dependency"] = dep
        ex.update_parameters(**params)
        return ex

    def states(self, job_ids: list[str], folders: dict[str, Path]) -> dict[str, dict[str, Any]]:
        require_client()
        return slurm_states(job_ids, folders)

    def cancel(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        require_client()
        res = _run(["scancel", *sorted(set(job_ids))])
        if res.returncode != 0:
            raise LaunchError(f"scancel failed: {' '.join(res.stderr.split())}")


class LocalSubmitit(SubmititExecutor):
    """submitit's ``LocalExecutor``: each job a subprocess of this machine (its id is the pid); no
    dependencies, so the launcher orders and drives the jobs."""

    name = "local"
    handles_dependencies = False

    def __init__(self, kind: str, profile: ClusterProfile):
        super().__init__(kind, profile)
        self._jobs: dict[str, Any] = {}  # job id -> submitit LocalJob (owns the Popen)

    def describe(self, job: JobSpec, *, items: list[str], after: list[str], folder: Path) -> dict[str, Any]:
        params = executor_params(job, self.profile)
        return {"executor": "local", "timeout_min": params["timeout_min"],
                "gpus_per_node": params.get("gpus_per_node", 0), "items": list(items)}

    def _executor(self, job: JobSpec, folder: Path, after: list[str]) -> Any:
        params = executor_params(job, self.profile)
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        local = {"name": params["name"], "timeout_min": params["timeout_min"],
                 "gpus_per_node": params.get("gpus_per_node", 0)}
        ex.update_parameters(**local, tasks_per_node=1)
        return ex

    def _submitted(self, ids: list[str], jobs: list[Any]) -> None:
        for i, j in zip(ids, jobs):
            self._jobs[i] = j

    def states(self, job_ids: list[str], folders: dict[str, Path]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for j in job_ids:
            held = self._jobs.get(j)
            if held is not None:  # LocalJob.done() polls the Popen submitit started (no watcher, no sacct)
                alive = not held.done()
            else:  # submitted by another process: the id is the pid
                alive = j.isdigit() and pid_alive(int(j))
            if alive:
                out[j] = {"state": "running"}
                continue
            result = _result_state(folders[j], j) if j in folders else None
            out[j] = {"state": result or "ended", **({} if result else {"detail": "ended without a result"})}
        return out

    def cancel(self, job_ids: list[str]) -> None:
        for j in job_ids:
            if j.isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(j), signal.SIGTERM)


_KINDS: dict[str, type[SubmititExecutor]] = {"slurm": SlurmSubmitit, "local": LocalSubmitit}


def script_secret_problems(jobs: list[JobSpec], profile: ClusterProfile) -> list[str]:
    """Refuse profiles whose setup lines or extra options would write a token into a script."""
    problems = []
    for job in jobs[:1] or []:
        text = sbatch_script(executor_params(job, profile))
        for name in secrets_in(text):
            problems.append(f"profile {profile.name}: setup/extra would write {name} into the sbatch script; "
                            f"remove it and export {name} in your shell (jobs inherit the environment)")
    return problems

