"""Plan -> submitted jobs, and their lifecycle: launch, status, resume, cancel.

    scaling launch recipes/tiny-ladder.yaml --dry-run      # print what would be submitted
    scaling launch recipes/tiny-ladder.yaml --wait         # submit, then follow progress
    scaling status tiny-ladder --watch
    scaling resume tiny-ladder                             # only what failed or never ran
    scaling cancel tiny-ladder

Executors (``--executor``): ``slurm`` (scheduler holds dependents until their dependencies
succeed), ``local`` (jobs run as subprocesses on this machine, one at a time, in dependency
order, driven by this process; so a local launch always waits), ``debug`` (in this process,
so a breakpoint works). ``auto`` is slurm when a cluster is configured here, else local. The
scheduler-specific code lives in ``slurm.py``; this module only speaks of jobs, ids and states.

A run is *done* only when its directory has a ``DONE`` marker (``studydir.mark_done``), which
the job writes last. ``resume`` resubmits exactly the runs (array items) without one, and never
reruns a done run. Job bodies are ``JobBody`` objects: picklable, they import
``JobSpec.entry`` ("module:function") on the node and call ``main(run_yaml)`` or, for array
items, ``main(run_yaml, item)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from . import studydir as sd
from .studydir import study_ref  # re-exported: hints name the study so they run as printed
from .errors import LaunchError
from .records import ClusterProfile, JobSpec, Plan, Resources

# Tokens pass to jobs through the environment only; launch refuses to write them anywhere.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# Seconds between state polls while waiting (labelled default; tests pass a smaller value).
POLL_S = 10.0
DRIVE_POLL_S = 2.0  # labelled default: how often the local driver looks for a free slot
LIVE = ("pending", "running")
FINAL = ("done", "failed", "cancelled", "timeout", "blocked")


# ----------------------------------------------------------------------------- bodies
def run_entry(entry: str, run_yaml: str, item: str | None = None) -> Any:
    """Import ``entry`` ("package.module:function") and call it with the run.yaml path (and item)."""
    module_name, _, func_name = entry.partition(":")
    if not module_name or not func_name:
        raise LaunchError(f"job entry {entry!r} is not 'module:function'")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    if func is None:
        raise LaunchError(f"job entry {entry!r}: {module_name} has no {func_name}")
    # one live writer per run (item): a twin job stops here. Every job body, including the
    # training workers a CheckpointableBody starts, comes through this function; of a multi-process
    # job only global rank 0 takes the lock (the other ranks are the same writer).
    with sd.writer_lock(Path(run_yaml).parent, item):
        return func(run_yaml) if item is None else func(run_yaml, item)


@dataclass
class JobBody:
    """What runs on the allocation: a picklable call of ``entry`` with the run.yaml path.

    Only strings are pickled (no environment, no tokens); the entry is imported on the node.
    """

    entry: str
    run_yaml: str
    item: str | None = None

    def __call__(self) -> Any:
        return run_entry(self.entry, self.run_yaml, self.item)


# ---------------------------------------------------------------------------- protocol
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
    a study behaves as on a cluster; set a breakpoint in the entry to debug it.
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
        import traceback

        ids = []
        for body in bodies:
            self._n += 1
            jid = f"debug-{os.getpid()}-{self._n}"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                body()
                sd.atomic_write_text(folder / f"{jid}_0_log.out", f"{job.run_id}: job completed\n")
                self._states[jid] = "succeeded"
            except Exception:  # recorded like a cluster job failure; the log keeps the traceback
                sd.atomic_write_text(folder / f"{jid}_0_log.err", traceback.format_exc())
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


# ------------------------------------------------------------------------------ graph
def _job_to_dict(job: JobSpec) -> dict[str, Any]:
    from .records import to_dict

    return to_dict(job)


def _job_from_dict(d: dict[str, Any]) -> JobSpec:
    d = dict(d)
    d["resources"] = Resources(**d.get("resources", {}))
    return JobSpec(**d)


def topo_order(jobs: list[JobSpec]) -> list[JobSpec]:
    """Jobs in dependency order; unknown ``after`` names and cycles are LaunchErrors."""
    by_id = {j.run_id: j for j in jobs}
    if len(by_id) != len(jobs):
        raise LaunchError("the plan has two jobs with the same run_id; fix the plan")
    for j in jobs:
        for a in j.after:
            if a not in by_id:
                raise LaunchError(f"{j.run_id}: depends on {a!r}, which is not in the plan")
    order: list[JobSpec] = []
    mark: dict[str, int] = {}

    def visit(j: JobSpec, path: list[str]) -> None:
        if mark.get(j.run_id) == 2:
            return
        if mark.get(j.run_id) == 1:
            raise LaunchError(f"dependency cycle: {' -> '.join(path + [j.run_id])}")
        mark[j.run_id] = 1
        for a in j.after:
            visit(by_id[a], path + [j.run_id])
        mark[j.run_id] = 2
        order.append(j)

    for j in jobs:
        visit(j, [])
    return order


# ------------------------------------------------------------------------------ states
def _folder(sdir: Path, entry: dict[str, Any]) -> Path:
    return sdir / entry["paths"]["logs"]


def _ids_of(entry: dict[str, Any]) -> list[str]:
    if entry.get("items"):
        return [i for i in entry.get("item_ids", {}).values() if i]
    return [entry["job_id"]] if entry.get("job_id") else []


def refresh_states(sdir: Path, manifest: dict[str, Any], ex: Executor | None) -> dict[str, dict[str, Any]]:
    """Compute each run's state: DONE markers first, then the executor's view of its ids.

    Returns run_id -> {state, detail, elapsed_s, items_done}. Writes the manifest only to settle
    a submission left in doubt (``reconcile``); a run whose submission cannot be settled (the
    scheduler does not answer) is ``unknown`` and is never resubmitted.
    """
    if any(isinstance(e, dict) and e.get("submitting") for e in manifest["runs"].values()):
        manifest = reconcile(sdir, ex)
    runs = manifest["runs"]
    ids: list[str] = []
    folders: dict[str, Path] = {}
    for entry in runs.values():
        for jid in _ids_of(entry):
            ids.append(jid)
            folders[jid] = _folder(sdir, entry)
    sched = ex.states(ids, folders) if (ex is not None and ids) else {}
    for entry in runs.values():  # local ids are pids: a recycled pid is not our job (start time differs)
        for jid, start in (entry.get("pid_starts") or {}).items():
            view = sched.get(jid)
            if view and view.get("state") == "running" and str(jid).isdigit() and not sd.pid_alive(int(jid), start):
                sched[jid] = {"state": "ended", "detail": "process gone (its pid now belongs to another process)"}
    out: dict[str, dict[str, Any]] = {}
    for run_id, entry in runs.items():
        items = entry.get("items") or []
        rd = sd.run_dir(sdir, run_id)
        if items:
            done_items = [it for it in items if sd.is_done(sd.item_dir(rd, it))]
            pending_items = [it for it in items if it not in done_items]
        else:
            done_items, pending_items = ([], []) if not sd.is_done(rd) else (["-"], [])
        info: dict[str, Any] = {"items_done": len(done_items) if items else None, "detail": "", "elapsed_s": None}
        if (items and not pending_items) or (not items and done_items):
            info["state"] = "done"
            out[run_id] = info
            continue
        if items:
            jids = [entry.get("item_ids", {}).get(it) for it in pending_items]
        else:
            jids = [entry.get("job_id")]
        if entry.get("submitting"):  # reconcile could not settle it: never call it unsubmitted
            info["state"] = "unknown"
            info["detail"] = "submission in doubt (the scheduler did not answer); retry when it does"
            out[run_id] = info
            continue
        if not any(jids):
            info["state"] = "not_submitted"
            out[run_id] = info
            continue
        views = [sched.get(j, {"state": "unknown"}) if j else {"state": "ended"} for j in jids]
        states = [v["state"] for v in views]
        els = [v.get("elapsed_s") for v in views if v.get("elapsed_s") is not None]
        info["elapsed_s"] = max(els) if els else None
        if "running" in states:
            info["state"] = "running"
        elif "pending" in states:
            info["state"] = "pending"
            info["detail"] = next((v.get("detail", "") for v in views if v.get("detail")), "")
        elif "unknown" in states:
            info["state"] = "unknown"
            info["detail"] = "scheduler not reachable"
        elif "timeout" in states:
            info["state"] = "timeout"
        elif "cancelled" in states:
            info["state"] = "cancelled"
            info["detail"] = "by scaling cancel" if entry.get("cancelled") else "by the scheduler or a user"
        elif entry.get("cancelled"):
            info["state"] = "cancelled"
            info["detail"] = "by scaling cancel"
        else:
            info["state"] = "failed"
            if "succeeded" in states:
                info["detail"] = "ended without a DONE marker"
            else:
                info["detail"] = next((v.get("detail", "") for v in views if v.get("detail")), "")
        out[run_id] = info
    # a run that ended without DONE while a dependency is not done was never able to run
    for run_id, info in out.items():
        if info["state"] in ("failed", "cancelled", "not_submitted"):
            deps = runs[run_id].get("job", {}).get("after", [])
            bad = [a for a in deps if out.get(a, {}).get("state") not in ("done",)]
            failed = [a for a in bad if out[a]["state"] in ("failed", "cancelled", "timeout", "blocked")]
            if (bad and info["state"] != "not_submitted") or failed:
                info["state"] = "blocked"
                info["detail"] = f"dependency {bad[0]} did not finish"
    return out


def _clean_stale_tmp(sdir: Path, manifest: dict[str, Any], states: dict[str, dict[str, Any]]) -> None:
    """Remove temporary files a SIGKILL left inside ``atomic_path``: in the study directory when
    older than 10 min (its writers finish in milliseconds), and in every run directory whose run
    is not live (no job can be writing there). Run under the study lock."""
    sd.clean_stale_tmp(sdir, older_than_s=600.0)
    for run_id, info in states.items():
        if info.get("state") not in LIVE and info.get("state") != "unknown" and run_id in manifest["runs"]:
            sd.clean_stale_tmp(sd.run_dir(sdir, run_id), older_than_s=60.0, recursive=True)


def reconcile(sdir: Path, ex: Executor | None) -> dict[str, Any]:
    """Settle every submission left in doubt (a ``submitting`` intent without recorded ids: the
    launcher died between the scheduler accepting the job and the manifest write).

    The scheduler is asked for jobs of that name (``find_submitted``); found ids are adopted
    (recorded as if submitted, history ``how: adopted``), none found clears the intent (the
    run is then truly unsubmitted), no answer keeps it (state ``unknown``). Returns the
    updated manifest."""
    manifest = sd.read_manifest(sdir)
    if manifest is None:
        raise LaunchError(f"{sdir}: no manifest.json")
    found: dict[str, list[str] | None] = {}
    for run_id, e in manifest["runs"].items():
        intent = e.get("submitting")
        if intent:
            known = {j for h in e.get("history", []) for j in h.get("ids", [])}
            ids = find_submitted(ex, _folder(sdir, e), str(intent.get("name", "")), float(intent.get("ts", 0)))
            found[run_id] = None if ids is None else [j for j in ids if j not in known]
    if not found:
        return manifest
    for run_id, ids in found.items():
        if not ids:
            continue
        intent = manifest["runs"][run_id]["submitting"]
        items = list(intent.get("items") or [])

        def num(j: str) -> tuple[int, str]:
            head = j.split("_")[0]
            return (int(head) if head.isdigit() else 0, j)

        newest = max(ids, key=num).split("_")[0]  # one submission per intent: the newest master id
        if items:  # an array's tasks are <master>_<index>, in the order of the intent's items
            ids = [f"{newest}_{i}" for i in range(len(items))]
        else:
            ids = [max(ids, key=num)]
        _record_ids(sdir, ex, run_id, bool(items), items, ids, how="adopted")
    cleared = [r for r, ids in found.items() if ids == []]
    if cleared:
        def clear(m: dict[str, Any]) -> None:
            for r in cleared:
                m["runs"][r].pop("submitting", None)

        sd.update_manifest(sdir, clear)
    return sd.read_manifest(sdir)


def find_submitted(ex: Executor | None, folder: Path, name: str, since_ts: float) -> list[str] | None:
    """Ids of jobs that may have been submitted for one run since ``since_ts``: [] when surely
    none, None when it cannot be told. Asks the executor (``find_submitted`` when it has one;
    Slurm: ``squeue``/``sacct`` by job name) and reads submitit's ``<id>_submitted.pkl`` files,
    which submitit writes right after sbatch (or the local Popen) returns."""
    ids: set[str] = set()
    with_pickles = True
    finder = getattr(ex, "find_submitted", None)
    if callable(finder):
        got = finder(name, folder, since_ts)
        if got is None:
            return None
        ids.update(got)
    elif ex is not None and getattr(ex, "name", "") == "slurm":
        got = _slurm_jobs_named(name, since_ts)
        if got is None:
            return None
        ids.update(got)
    elif ex is not None and getattr(ex, "name", "") not in ("local",):
        with_pickles = getattr(ex, "name", "") != "debug"
    if with_pickles:
        try:
            for p in folder.glob("*_submitted.pkl"):
                if p.stat().st_mtime >= since_ts - 2.0:
                    ids.add(p.name[: -len("_submitted.pkl")])
        except OSError:
            pass
    return sorted(ids)


def _slurm_jobs_named(name: str, since_ts: float) -> list[str] | None:
    """Slurm job ids (array tasks expanded) named ``name``: squeue (live jobs), then sacct from
    ``since_ts`` when accounting works. None when squeue does not answer."""
    import subprocess

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None

    user = os.environ.get("USER") or ""
    q = run(["squeue", "-h", "-r", "-n", name, "-o", "%i", *(["-u", user] if user else [])])
    if q is None or q.returncode != 0:
        return None
    ids = {line.strip() for line in q.stdout.splitlines() if line.strip()}
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(0.0, since_ts - 60)))
    a = run(["sacct", "-n", "-P", "-X", "--name", name, "-S", start, "-o", "JobID"])
    if a is not None and a.returncode == 0:
        ids.update(line.strip() for line in a.stdout.splitlines() if line.strip() and "[" not in line)
    return sorted(ids)


def _store_states(sdir: Path, states: dict[str, dict[str, Any]]) -> None:
    def apply(m: dict[str, Any]) -> None:
        for run_id, info in states.items():
            if run_id in m["runs"]:
                m["runs"][run_id]["state"] = info["state"]
                m["runs"][run_id]["detail"] = info.get("detail", "")

    sd.update_manifest(sdir, apply)


# -------------------------------------------------------------------------- submission
def _bodies(sdir: Path, job: JobSpec, items: list[str]) -> list[JobBody]:
    run_yaml = str((sd.run_dir(sdir, job.run_id) / sd.RUN_YAML).resolve())
    if job.array:
        return [JobBody(job.entry, run_yaml, it) for it in items]
    return [JobBody(job.entry, run_yaml, None)]


# Fault injection for tests (tests/slurm/test_submit_window.py): SCALING_FAULT_INJECT=after_submit[:<run_id>]
# makes launch/resume SIGKILL itself right after the scheduler accepted a job and before its id
# reaches manifest.json: the submit window. Inert when the variable is unset (normal use).
FAULT_ENV = "SCALING_FAULT_INJECT"


def _fault_point(point: str, run_id: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    name, _, target = spec.partition(":")
    if name == point and target in ("", run_id):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _submit_one(sdir: Path, ex: Executor, job: JobSpec, items: list[str], after_ids: list[str]) -> None:
    """Submit one run (or the given items of an array run) and record ids in the manifest.

    The intent (job name, items, time) is written to the manifest BEFORE submitting, so a
    launcher killed between the scheduler accepting the job and the id reaching the manifest
    leaves a trace: ``reconcile`` then finds the job by name (or by submitit's pickle) and
    adopts its id instead of declaring the run unsubmitted and submitting it again."""
    entry_folder = sd.run_dir(sdir, job.run_id) / sd.LOGS
    intent = {"name": job.name, "items": list(items), "ts": time.time(), "time": sd._now(), "executor": ex.name}
    sd.update_manifest(sdir, lambda m: m["runs"][job.run_id].__setitem__("submitting", intent))
    ids = ex.submit(job, _bodies(sdir, job, items), folder=entry_folder, after=after_ids)
    _fault_point("after_submit", job.run_id)
    _record_ids(sdir, ex, job.run_id, bool(job.array), items, ids)


def _record_ids(sdir: Path, ex: Executor | None, run_id: str, array: bool, items: list[str], ids: list[str],
                *, how: str = "submitted") -> None:
    """Write submitted (or adopted) ids into the manifest and clear the submission intent."""
    now = sd._now()
    starts = {}
    if ex is not None and getattr(ex, "name", "") == "local":  # local ids are pids: keep their start times
        starts = {j: sd.pid_start_time(int(j)) for j in ids if str(j).isdigit()}

    def apply(m: dict[str, Any]) -> None:
        e = m["runs"][run_id]
        e.pop("submitting", None)
        if starts:
            e.setdefault("pid_starts", {}).update({j: v for j, v in starts.items() if v is not None})
        if array:  # attempts of an array = the most any item was submitted
            e.setdefault("item_ids", {}).update(dict(zip(items, ids)))
            e["job_id"] = ids[0].split("_")[0] if ids else e.get("job_id")
            tries = e.setdefault("item_attempts", {})
            for it in items:
                tries[it] = int(tries.get(it, 0)) + 1
            e["attempts"] = max(tries.values())
        else:
            e["job_id"] = ids[0]
            e["attempts"] = int(e.get("attempts", 0)) + 1
        e["state"] = "pending"
        e.pop("cancelled", None)
        e["submitted_at"] = now
        e["submitted_ts"] = time.time()
        rec = {"time": now, "ids": ids, "items": items if array else []}
        if how != "submitted":
            rec["how"] = how
        e.setdefault("history", []).append(rec)

    sd.update_manifest(sdir, apply)


def _todo(sdir: Path, states: dict[str, dict[str, Any]], job: JobSpec) -> list[str] | None:
    """Items (or ["-"] for a single job) that must be (re)submitted; None when nothing to do."""
    st = states.get(job.run_id, {}).get("state", "not_submitted")
    if st == "done" or st in LIVE or st == "unknown":  # unknown: the scheduler cannot say; never risk a twin
        return None
    rd = sd.run_dir(sdir, job.run_id)
    if job.array:
        return [it for it in job.array if not sd.is_done(sd.item_dir(rd, it))] or None
    return ["-"]


def _pending_ids(sdir: Path, entry: dict[str, Any], run_id: str) -> list[str]:
    """Current ids of a run's parts that are not DONE (an array's finished items are skipped,
    so a dependency never points at an old, partly failed array)."""
    if entry.get("items"):
        rd = sd.run_dir(sdir, run_id)
        return [jid for it, jid in entry.get("item_ids", {}).items() if jid and not sd.is_done(sd.item_dir(rd, it))]
    return [entry["job_id"]] if entry.get("job_id") else []


def _submit_scheduled(sdir: Path, ex: Executor, jobs: list[JobSpec]) -> list[str]:
    """Scheduler with dependencies: submit every not-done, not-live run in dependency order,
    each waiting (afterok) on its not-done dependencies' current ids."""
    submitted = []
    for job in topo_order(jobs):
        manifest = sd.read_manifest(sdir)
        states = refresh_states(sdir, manifest, ex)
        todo = _todo(sdir, states, job)
        if todo is None:
            continue
        after_ids: list[str] = []
        for a in job.after:
            if states.get(a, {}).get("state") == "done":
                continue
            after_ids += _pending_ids(sdir, manifest["runs"][a], a)
        _submit_one(sdir, ex, job, [] if todo == ["-"] else todo, after_ids)
        submitted.append(job.run_id)
    return submitted


def _drive(sdir: Path, ex: Executor, jobs: list[JobSpec], *, poll_s: float, progress: Callable | None = None,
           parallel: int = 1, weights: dict[str, float] | None = None) -> None:
    """No scheduler dependencies (local, debug): this process submits each run (array item)
    once its dependencies are done, at most ``parallel`` at a time, until nothing can run.
    With several slots, the ready run with the longest chain still ahead of it starts first
    (``critical_path_s``: its own estimate plus its longest line of dependants; then heavier
    ``weights``, the model size): an evaluation, which nothing waits for, fills a free slot
    after the SFT of a small size, whose train and evaluations still have to follow.
    Within one drive a unit is submitted once: a failure is left for ``resume``."""
    order = topo_order(jobs)
    if parallel > 1:
        rank = {j.run_id: i for i, j in enumerate(order)}
        path = critical_path_s(jobs)
        w = weights or {}
        order.sort(key=lambda j: (-path[j.run_id], -w.get(j.run_id, 0.0), rank[j.run_id]))
    attempted: set[tuple[str, str]] = set()
    started_ts = time.time()
    while True:
        manifest = sd.read_manifest(sdir)
        if float(manifest.get("cancel_requested_ts", 0)) > started_ts:
            parallel = 0  # `scaling cancel` asked: submit nothing more, let the loop end
        states = refresh_states(sdir, manifest, ex)
        _store_states(sdir, states)
        if progress:
            progress(states)
        live = sum(1 for s in states.values() if s["state"] in LIVE)
        started = False
        for job in order:
            if live >= parallel:
                break
            if any(states[a]["state"] != "done" for a in job.after):
                continue
            todo = _todo(sdir, states, job)
            if todo is None:
                continue
            fresh = [it for it in todo if (job.run_id, it) not in attempted][: parallel - live]
            if not fresh:
                continue
            attempted.update((job.run_id, it) for it in fresh)
            _submit_one(sdir, ex, job, [] if fresh == ["-"] else fresh, [])
            live += 1
            started = True
        if not started and live == 0:
            break
        # a slot freed here stays idle until the next look: look often (a look reads the manifest
        # and the jobs' states, ~10 ms); 10 s between looks cost ~1 min of idle CPU over the tiny ladder
        time.sleep(min(poll_s, DRIVE_POLL_S) if live else 0)
    final = refresh_states(sdir, sd.read_manifest(sdir), ex)
    _store_states(sdir, final)
    if progress:
        progress(final)


# ------------------------------------------------------------------------ public API
def _resolve_runs_dir(study: Any, runs_dir: str | os.PathLike[str] | None) -> Path:
    return Path(runs_dir if runs_dir is not None else getattr(study, "runs_dir", "runs") or "runs")


def _print_dry_run(sdir: Path, plan: Plan, ex: Executor) -> None:
    """Plain lines (no wrapping, greppable): each job, its dependencies and its scheduler lines."""
    print(f"dry run: study {plan.study} -> {sdir} with the {ex.name} executor; nothing is submitted")
    ids = {j.run_id: f"<{j.run_id}>" for j in plan.jobs}
    for job in topo_order(plan.jobs):
        done = sd.run_is_done(sdir, job.run_id, job.array) if sdir.exists() else False
        desc = ex.describe(job, items=list(job.array), after=[ids[a] for a in job.after],
                           folder=sd.run_dir(sdir, job.run_id) / sd.LOGS)
        head = f"{job.run_id}  {job.name}  entry={job.entry}"
        if job.after:
            head += f"  after={','.join(job.after)}"
        if job.array:
            head += f"  array={','.join(job.array)}"
        if job.checkpointable:
            head += "  checkpointable"
        if done:
            head += "  (already DONE: skipped)"
        print(head)
        for line in desc.get("sbatch", []):
            print(f"    {line}")
        if "sbatch" not in desc:
            print("    " + json.dumps({k: v for k, v in desc.items() if k != "executor"}))


def _plan_json(plan: Plan) -> str:
    """plan.json through the planner's own serialiser (``plan.plan_to_json``); where plan.py is
    not importable (a stripped install), the same records serialised by ``records.to_dict``."""
    try:
        from .plan import plan_to_json
    except ImportError:
        from .records import to_dict

        return json.dumps(to_dict(plan), indent=2, sort_keys=True) + "\n"
    return plan_to_json(plan)


def _check_secrets(plan: Plan, ex: Executor) -> list[str]:
    if ex.name != "slurm":
        return []
    from .slurm import script_secret_problems

    return script_secret_problems(plan.jobs, plan.profile)


def gpus_here() -> int:
    """GPUs this machine can give local jobs, without importing torch: ``nvidia-smi -L`` (or the
    driver's ``/proc`` entries), limited by ``CUDA_VISIBLE_DEVICES`` when it is set."""
    import subprocess

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


def _refuse_gpu_jobs_without_gpus(plan: Plan) -> None:
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


def _dry_run_executor(plan: Plan) -> Executor:
    """``--dry-run`` with ``auto``: the executor a launch here would use, except that a GPU profile
    off-cluster shows the Slurm executor's #SBATCH lines (what the cluster would be given)."""
    from .slurm import SubmititExecutor, cluster_available

    if cluster_available():
        return SubmititExecutor("slurm", plan.profile)
    if plan.profile.gpus_per_node > 0:
        print(f"note: no Slurm cluster is configured here; showing the #SBATCH lines a launch with profile "
              f"{plan.profile.name} would submit from a login node (--executor slurm)")
        return SubmititExecutor("slurm", plan.profile)
    return SubmititExecutor("local", plan.profile)


def launch(study: Any, plan: Plan, *, executor: str | Executor = "auto", runs_dir: str | os.PathLike[str] | None = None,
           dry_run: bool = False, wait: bool = False, poll_s: float = POLL_S, force: bool = False) -> int:
    """Submit a planned study. Returns 0 when everything was submitted (and, when waiting or
    running locally, finished with DONE), 1 when some run failed.

    Refuses (LaunchError) a study name that is not ``[a-z0-9_-]+``, a preflight problem (all
    listed at once), a second live launch (lock), and a relaunch while jobs are still live.
    Relaunching a study whose jobs have all ended, with the same plan, acts like ``resume``.
    """
    name = sd.safe_name(plan.study)
    sdir = _resolve_runs_dir(study, runs_dir) / name
    if dry_run and executor == "auto":
        ex = _dry_run_executor(plan)
    else:
        ex = executor if not isinstance(executor, str) else make_executor(executor, plan.profile)
    topo_order(plan.jobs)
    if dry_run:
        _print_dry_run(sdir, plan, ex)
        return 0
    if ex.name in ("local", "debug") and not force:
        _refuse_gpu_jobs_without_gpus(plan)
    problems = ex.preflight(plan.jobs) + _check_secrets(plan, ex)
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise LaunchError(f"preflight refused study {name}: {len(problems)} problem(s): {listed}; nothing was submitted")
    plan_text = _plan_json(plan)
    with sd.study_lock(sdir, "launch"):
        old = sd.read_manifest(sdir)
        if old is not None:
            states = refresh_states(sdir, old, ex)
            live = [r for r, s in states.items() if s["state"] in LIVE]
            if live:
                raise LaunchError(f"{sdir}: study already launched and {len(live)} job(s) are live ({live[0]}, ...); "
                                  f"follow it with `scaling status {study_ref(sdir)}`, or `scaling cancel {study_ref(sdir)}` first")
            stored = (sdir / sd.PLAN_JSON).read_text() if (sdir / sd.PLAN_JSON).exists() else ""
            if stored != plan_text:
                raise LaunchError(f"{sdir}: holds a different plan of study {name}; use another study name "
                                  f"(set name: in the recipe) or delete {sdir} to start over")
            _clean_stale_tmp(sdir, old, states)
        from .versions import StudyWithVersions  # records the torch/trl/vllm/... versions in study.yaml

        sd.write_study_files(sdir, StudyWithVersions(study), plan_text)
        for run in plan.runs:
            sd.write_run_yaml(sdir, run)

        def init(m: dict[str, Any]) -> None:
            m["executor"] = ex.name
            for job in plan.jobs:
                e = m["runs"].get(job.run_id) or sd.run_entry(sdir, job.run_id, items=list(job.array))
                e["job"] = _job_to_dict(job)
                m["runs"][job.run_id] = e

        sd.update_manifest(sdir, init, create=sd.new_manifest(name, ex.name))
        if not ex.handles_dependencies:
            return _drive_all(sdir, ex, plan.jobs, poll_s=poll_s, parallel=_local_parallel(plan),
                              weights=_size_weights(sdir))
        _announce(sdir, ex, _submit_scheduled(sdir, ex, plan.jobs))
    return _follow(sdir, ex, wait=wait, poll_s=poll_s)


def _local_parallel(plan: Plan) -> int:
    """How many local runs execute at once. GPU machines: one (a workstation has one set of GPUs;
    labelled default). CPU profiles: as many as the cores allow at the planned
    ``resources.cpus_per_task`` each (rule:cpu_jobs in rules.job_resources)."""
    return _parallel_for(getattr(plan, "profile", None), plan.jobs)


def _parallel_for(profile: ClusterProfile | None, jobs: list[JobSpec]) -> int:
    if profile is None or profile.gpus_per_node > 0 or not jobs:
        return 1
    widest = max(max(1, j.resources.cpus_per_task) for j in jobs)
    return max(1, profile.cpus_per_node // widest)


def _size_weights(sdir: Path) -> dict[str, float]:
    """run_id -> the model's total parameters, from plan.json: with several local slots the
    largest size starts first, since its chain (sft -> train -> eval-trained) is the longest."""
    try:
        data = json.loads((sdir / sd.PLAN_JSON).read_text())
        return {str(r["run_id"]): float(r.get("model", {}).get("params_total") or 0) for r in data.get("runs", [])}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def _announce(sdir: Path, ex: Executor, submitted: list[str]) -> None:
    from rich.console import Console

    Console().print(f"submitted {len(submitted)} job(s) of {sdir.name} with {ex.name}: "
                    f"{', '.join(submitted) or 'nothing to do (all DONE or live)'}", highlight=False, soft_wrap=True)
    _store_states(sdir, refresh_states(sdir, sd.read_manifest(sdir), ex))


def _follow(sdir: Path, ex: Executor, *, wait: bool, poll_s: float) -> int:
    """After a scheduler submission (lock released): return, or wait with progress."""
    if not wait:
        print(f"follow with: scaling status {study_ref(sdir)} --watch")
        return 0
    return _verdict(sdir, _wait(sdir, ex, poll_s=poll_s))


def _drive_all(sdir: Path, ex: Executor, jobs: list[JobSpec], *, poll_s: float, parallel: int,
               weights: dict[str, float] | None = None) -> int:
    """Local/debug: this process runs the study (under the study lock) and reports."""
    with _Progress(jobs, parallel=parallel) as prog:
        _drive(sdir, ex, jobs, poll_s=poll_s, progress=prog.update, parallel=parallel, weights=weights)
    return _verdict(sdir, refresh_states(sdir, sd.read_manifest(sdir), ex))


def _verdict(sdir: Path, states: dict[str, dict[str, Any]]) -> int:
    from rich.console import Console

    console = Console()
    bad = {r: s for r, s in states.items() if s["state"] != "done"}
    if bad:
        console.print(f"{len(bad)} run(s) not done: " + ", ".join(f"{r} ({s['state']})" for r, s in sorted(bad.items()))
                      + f"; inspect with `scaling status {study_ref(sdir)}`, then `scaling resume {study_ref(sdir)}`",
                      highlight=False, soft_wrap=True)
        return 1
    console.print(f"all {len(states)} run(s) of {sdir.name} are DONE", highlight=False)
    return 0


def plan_estimates_s(jobs: list[JobSpec]) -> dict[str, float]:
    """run_id -> the plan's wall-time estimate of the job in seconds: the job's ``hours``; for a
    plan written before that field, GPU-hours over its GPUs when the plan has them, else the time limit read back through ``rules.time_limit_min``'s padding
    (estimate x TIME_SAFETY + STARTUP_MIN), at least one minute. Only ratios matter to the
    progress estimate, which is recalibrated against the observed times as runs finish."""
    try:
        from .rules import STARTUP_MIN, TIME_SAFETY
    except ImportError:  # pragma: no cover - a stripped install
        STARTUP_MIN, TIME_SAFETY = 15, 1.5
    out = {}
    for j in jobs:
        r = j.resources
        gpus = max(0, r.gpus_per_node) * max(1, r.nodes) * max(1, len(j.array) or 1)
        if j.hours > 0:  # 0 in manifests written before the field
            out[j.run_id] = j.hours * 3600.0
        elif j.gpu_hours > 0 and gpus > 0:
            out[j.run_id] = j.gpu_hours * 3600.0 / gpus
        else:
            out[j.run_id] = max(60.0, (max(0, r.timeout_min) - STARTUP_MIN) / TIME_SAFETY * 60.0)
    return out


def critical_path_s(jobs: list[JobSpec]) -> dict[str, float]:
    """run_id -> the plan's estimate of the job plus the longest chain of jobs that wait on it
    (list scheduling by critical path: the classic priority for a dependency graph on few slots)."""
    est = plan_estimates_s(jobs)
    children: dict[str, list[str]] = {j.run_id: [] for j in jobs}
    for j in jobs:
        for a in j.after:
            children.setdefault(a, []).append(j.run_id)
    path: dict[str, float] = {}
    for j in reversed(topo_order(jobs)):
        path[j.run_id] = est[j.run_id] + max((path[c] for c in children[j.run_id]), default=0.0)
    return path


class _Progress:
    """Progress of a followed study. On a terminal: a rich live bar of runs done / total with
    the running runs and the time left. Otherwise (a pipe, a file, a CI log): one line per run
    state change, printed and flushed as it is seen::

        02:31:05  0_3m/sft  done  took 0:03:10  |  3/20 done  elapsed 0:04:12  left ~0:11:30

    Time left = the plan's estimates of the runs not yet ended (``plan_estimates_s``), scaled by
    how long the runs that ended here took against their estimates (before the first one ends:
    the estimates divided by the runs that can execute at once)."""

    def __init__(self, jobs: list[JobSpec] | int, *, parallel: int = 1, console: Any = None,
                 lines: bool | None = None):
        from rich.console import Console

        self._console = console or Console()
        self._lines = (not self._console.is_terminal) if lines is None else lines
        self._est = plan_estimates_s(jobs) if isinstance(jobs, list) else {}
        self.total = len(jobs) if isinstance(jobs, list) else int(jobs)
        self._parallel = max(1, parallel)
        self._t0 = self._last = time.time()
        self._seen: dict[str, str] = {}
        self._started: dict[str, float] = {}  # run_id -> when it was first seen live
        self._ended_here: dict[str, float] = {}  # run_id -> seconds it took (ended while followed)
        self._p = None
        if not self._lines:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=self._console,
                               transient=False)
            self._task = self._p.add_task("runs done", total=self.total, left="")

    def __enter__(self) -> "_Progress":
        if self._p is not None:
            self._p.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.stop()

    def time_left_s(self, states: dict[str, dict[str, Any]]) -> float | None:
        now = time.time()
        todo = [r for r, s in states.items() if s["state"] in LIVE + ("not_submitted", "unknown")]
        if not todo:
            return 0.0
        if not self._est:
            return None
        left = 0.0
        worked = 0.0  # planned seconds of the runs still live that are behind us already
        for r in todo:
            est = self._est.get(r, 60.0)
            ran = now - self._started[r] if r in self._started else 0.0
            left += max(est * 0.1, est - ran)  # a run past its estimate still has a little left
            worked += min(est, ran)
        ended = [r for r in self._ended_here if r in self._est]
        if ended:  # observed wall seconds per planned second, parallel slots included: the live
            # runs count for what they have done, else the first run to end on 2 slots doubles it
            planned = sum(self._est[r] for r in ended) + worked
            return left * (now - self._t0) / max(planned, 1.0)
        return left / self._parallel

    def update(self, states: dict[str, dict[str, Any]]) -> None:
        now = time.time()
        first = not self._seen
        changed = []
        for r, s in states.items():
            st, old = s["state"], self._seen.get(r)
            if st == "not_submitted" and old in LIVE and s.get("items_done"):
                st = old  # an array between two items (the local driver submits the next one): no line
            if st in LIVE and r not in self._started:  # submitted after the previous look at the latest
                self._started[r] = self._last if not first else now
            if old is not None and old in LIVE + ("not_submitted", "unknown") and st in FINAL and st != "blocked":
                self._ended_here[r] = now - self._started.get(r, self._last)
            if old != st:
                changed.append(r)
            self._seen[r] = st
        self._last = now
        done = sum(1 for s in states.values() if s["state"] == "done")
        left = self.time_left_s(states)
        left_text = f"~{_fmt_elapsed(left)}" if left else ""
        if self._p is not None:
            live = [r for r, s in states.items() if s["state"] == "running"]
            desc = f"runs done ({', '.join(live[:2])} running)" if live else "runs done"
            self._p.update(self._task, completed=done, description=desc, left=f"{left_text} left" if left else "")
            return
        if first:  # where the study starts from, in one line; then only what changes
            counts: dict[str, int] = {}
            for s in states.values():
                counts[s["state"]] = counts.get(s["state"], 0) + 1
            est = sum(self._est.values()) / self._parallel if self._est else None
            self._print(f"{time.strftime('%H:%M:%S')}  following {self.total} run(s): "
                        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                        + (f"; the plan's estimate ~{_fmt_elapsed(est)}" if est else ""))
            changed = [r for r in changed if states[r]["state"] not in ("not_submitted", "done")]
        tail = f"{done}/{self.total} done  elapsed {_fmt_elapsed(now - self._t0)}"
        if left_text:
            tail += f"  left {left_text}"
        for r in changed:
            st = states[r]["state"]
            extra = f"  took {_fmt_elapsed(self._ended_here[r])}" if r in self._ended_here and st in FINAL else ""
            if states[r].get("detail") and st != "done":
                extra += f"  ({states[r]['detail']})"
            self._print(f"{time.strftime('%H:%M:%S')}  {r}  {st}{extra}  |  {tail}")

    @staticmethod
    def _print(line: str) -> None:
        print(line, flush=True)


def _wait(sdir: Path, ex: Executor, *, poll_s: float) -> dict[str, dict[str, Any]]:
    manifest = sd.read_manifest(sdir)
    with _Progress(_jobs(manifest), parallel=len(manifest["runs"])) as prog:
        while True:
            states = refresh_states(sdir, sd.read_manifest(sdir), ex)
            _store_states(sdir, states)
            prog.update(states)
            if not any(s["state"] in LIVE or s["state"] == "unknown" for s in states.values()):
                return states
            time.sleep(poll_s)


def _open(study: str | os.PathLike[str], runs_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    sdir = sd.study_dir(study, runs_dir)
    manifest = sd.read_manifest(sdir)
    if manifest is None:
        if (sdir / sd.PLAN_JSON).exists():  # launch stopped after the plan files (full disk, kill): nothing submitted
            raise LaunchError(f"{sdir}: plan files but no manifest.json: the launch stopped before submitting anything "
                              "(e.g. a full disk); run `scaling launch RECIPE` again with the same recipe to submit it")
        raise LaunchError(f"{sdir}: no manifest.json; this study was never launched (scaling launch RECIPE)")
    return sdir, manifest


def _executor_for(manifest: dict[str, Any], requested: str = "auto") -> Executor | None:
    kind = manifest.get("executor", "local") if requested == "auto" else requested
    if kind == "debug":
        return DebugExecutor()
    try:
        return make_executor(kind, ClusterProfile())
    except LaunchError:
        return None


def _jobs(manifest: dict[str, Any]) -> list[JobSpec]:
    return [_job_from_dict(e["job"]) for e in manifest["runs"].values()]


def resume(study: str | os.PathLike[str], *, runs_dir: str | os.PathLike[str] = "runs", executor: str | Executor = "auto",
           dry_run: bool = False, wait: bool = False, poll_s: float = POLL_S) -> int:
    """Resubmit only runs (array items) that failed or never ran, with their dependencies;
    DONE runs are never rerun, live ones are left alone."""
    sdir, manifest = _open(study, runs_dir)
    ex = executor if not isinstance(executor, str) else _executor_for(manifest, executor)
    if ex is None:
        raise LaunchError(f"{sdir}: launched with the {manifest.get('executor')} executor, which is not available "
                          "here; pass --executor local or run on the cluster's login node")
    jobs = _jobs(manifest)
    profile_plan = _profile_from_plan(sdir)
    if profile_plan is not None and hasattr(ex, "profile"):
        ex.profile = profile_plan  # type: ignore[attr-defined]
    states = refresh_states(sdir, manifest, ex)
    todo = [j.run_id for j in topo_order(jobs) if _todo(sdir, states, j) is not None]
    if dry_run:
        from rich.console import Console

        Console().print(f"dry run: would resubmit {len(todo)} run(s): {', '.join(todo) or 'none'}", highlight=False)
        return 0
    with sd.study_lock(sdir, "resume"):
        def reset(m: dict[str, Any]) -> None:
            m["executor"] = ex.name

        sd.update_manifest(sdir, reset)
        _clean_stale_tmp(sdir, manifest, states)
        if not ex.handles_dependencies:
            return _drive_all(sdir, ex, jobs, poll_s=poll_s, parallel=_parallel_for(profile_plan, jobs),
                              weights=_size_weights(sdir))
        _announce(sdir, ex, _submit_scheduled(sdir, ex, jobs))
    return _follow(sdir, ex, wait=wait, poll_s=poll_s)


def _profile_from_plan(sdir: Path) -> ClusterProfile | None:
    """The cluster profile stored in plan.json (so resume submits with the same facts)."""
    try:
        data = json.loads((sdir / sd.PLAN_JSON).read_text())
    except (OSError, ValueError):
        return None
    prof = data.get("profile") if isinstance(data, dict) else None
    if not isinstance(prof, dict):
        return None
    fields = {f.name for f in dataclasses.fields(ClusterProfile)}
    return ClusterProfile(**{k: v for k, v in prof.items() if k in fields})


def cancel(study: str | os.PathLike[str], *, runs_dir: str | os.PathLike[str] = "runs") -> int:
    """Cancel every live job of the study (DONE outputs stay). Does not wait for the study lock,
    so it works while `launch --wait` follows the study; a local launcher driving the study sees
    the request and submits nothing more."""
    sdir, manifest = _open(study, runs_dir)
    ex = _executor_for(manifest)
    if ex is None:
        raise LaunchError(f"{sdir}: the {manifest.get('executor')} executor is not available here; cancel on the cluster")
    sd.update_manifest(sdir, lambda m: m.__setitem__("cancel_requested_ts", time.time()))
    states = refresh_states(sdir, manifest, ex)
    live_ids: list[str] = []
    for run_id, info in states.items():
        if info["state"] in LIVE:
            live_ids += _ids_of(manifest["runs"][run_id])
    ex.cancel(live_ids)

    def apply(m: dict[str, Any]) -> None:
        for run_id, info in states.items():
            if info["state"] in LIVE:
                m["runs"][run_id]["state"] = "cancelled"
                m["runs"][run_id]["cancelled"] = True

    sd.update_manifest(sdir, apply)
    n_runs = sum(1 for info in states.values() if info["state"] in LIVE)
    print(f"cancelled {n_runs} run(s) ({len(live_ids)} job(s) or array task(s)) of {sdir.name}")
    return 0


# ------------------------------------------------------------------------------ status
def _last_log_line(folder: Path, *, prefer_err: bool = False) -> str:
    """Last non-empty line of the newest log (stderr first for failed jobs: the exception)."""
    try:
        logs = [p for p in folder.iterdir() if p.suffix in (".out", ".err")]
    except OSError:
        return ""
    logs.sort(key=lambda p: (p.stat().st_mtime, (p.suffix == ".err") == prefer_err))
    for path in reversed(logs):
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - 4096))
                lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            continue
        if lines:
            return redact(re.sub(r"^submitit \w+ \([^)]*\) - ", "", lines[-1]))
    return ""


def redact(text: str) -> str:
    """Hide the values of secret environment variables in text shown to users."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, f"<{name}>")
    return text


def _fmt_elapsed(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# a fix sentence in a log line starts after "; " or ": " with one of these verbs (the project's
# one-line errors end with the fix: "...; run `scaling prefetch ...`")
_FIX_RE = re.compile(r"(?:;|:|\.|,)\s+((?:run|use|set|pass|add|give|try|see|rerun|install|lower|raise|export|"
                     r"check|delete|remove|start|call|fix|choose|pick|increase|decrease)\b.*)$", re.IGNORECASE)


def fit_log_line(line: str, width: int) -> str:
    """A log line in at most ``width`` characters that keeps its end: the fix sentence when the line
    has one (``head… fix``), else the tail (``…tail``). Errors put the fix last, so the end is the
    part a user must see; the start is usually the exception type or a logger prefix."""
    if width <= 0:
        return ""
    if len(line) <= width:
        return line
    if width < 8:
        return line[-width:]
    m = _FIX_RE.search(line)
    if m and len(m.group(1)) + 6 <= width:
        fix = m.group(1)
        head = line[: width - len(fix) - 2].rstrip()
        return f"{head}… {fix}"
    return "…" + line[-(width - 1):]


def _status_rows(sdir: Path, manifest: dict[str, Any], states: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per run: run, job_id, state (with array counts), detail, elapsed, attempts, log."""
    now = time.time()
    rows = []
    for run_id, e in manifest["runs"].items():
        info = states.get(run_id, {"state": e.get("state", "?")})
        st = info["state"]
        st_text = f"{st} ({info.get('items_done', 0)}/{len(e['items'])})" if e.get("items") else st
        elapsed = info.get("elapsed_s")
        if elapsed is None and e.get("submitted_ts"):
            end = now
            if st not in LIVE:  # ended: the last write of its logs (or DONE) is when it stopped
                rd = sd.run_dir(sdir, run_id)
                marks = [p.stat().st_mtime for p in _folder(sdir, e).glob("*_log.*")] if _folder(sdir, e).exists() else []
                marks += [p.stat().st_mtime for p in rd.rglob(sd.DONE)]
                end = max(marks) if marks else now
            elapsed = max(0.0, end - float(e["submitted_ts"]))
        rows.append({"run": run_id, "job_id": str(e.get("job_id") or "-"), "state": st, "state_text": st_text,
                     "detail": info.get("detail", "") if st != "done" else "", "elapsed": _fmt_elapsed(elapsed),
                     "attempts": int(e.get("attempts", 0) or 0),
                     "log": _last_log_line(_folder(sdir, e), prefer_err=st in ("failed", "timeout", "cancelled"))})
    return rows


_COLORS = {"done": "green", "running": "cyan", "pending": "yellow", "failed": "red", "blocked": "red",
           "cancelled": "magenta", "timeout": "red", "unknown": "white", "not_submitted": "white"}
_BAD = ("failed", "timeout", "cancelled", "blocked")


def status_table(sdir: Path, manifest: dict[str, Any], states: dict[str, dict[str, Any]], *,
                 width: int = 80, wide: bool = False) -> Any:
    """The status table for a terminal ``width`` columns wide: no line wider, no cell wrapped.

    Narrow (default): run, state (``(try N)`` after a retry), elapsed, and one note per run (the
    state's detail, else the last log line cut by ``fit_log_line`` so that its fix stays); the
    job id column appears when the terminal has room. ``wide``: every column, whole cells."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = _status_rows(sdir, manifest, states)
    done = sum(1 for r in rows if r["state"] == "done")
    title = Text(f"{manifest['study']} ({manifest.get('executor')}): {done}/{len(rows)} done  {sdir}",
                 no_wrap=not wide, overflow="ellipsis")
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  expand=False, padding=(0, 1))
    if wide:
        for col in ("run", "job id", "state", "elapsed", "attempts", "last log line"):
            table.add_column(col, no_wrap=True, overflow="ignore")
        for r in rows:
            st = f"{r['state_text']}: {r['detail']}" if r["detail"] else r["state_text"]
            table.add_row(r["run"], r["job_id"], f"[{_COLORS.get(r['state'], 'white')}]{st}[/]", r["elapsed"],
                          str(r["attempts"]), Text(r["log"]))
        return table
    state_texts = [r["state_text"] + (f" (try {r['attempts']})" if r["attempts"] > 1 else "") for r in rows]
    w_run = max([3] + [len(r["run"]) for r in rows])
    w_state = max([5] + [len(t) for t in state_texts])
    w_el = 7
    w_id = max([6] + [len(r["job_id"]) for r in rows])
    sep = 3  # SIMPLE_HEAD without edges: a padding space, the (blank) divider, a padding space
    fixed = w_run + w_state + w_el + 3 * sep
    show_id = width - fixed - w_id - sep >= 60  # the note column comes first
    if show_id:
        fixed += w_id + sep
    w_note = width - fixed
    if w_note < 12:  # a very narrow terminal: the state and run columns give way first
        cut = min(12 - w_note, w_state - 5)
        w_state, w_note = w_state - cut, w_note + cut
        cut = min(max(0, 12 - w_note), w_run - 8)
        w_run, w_note = w_run - cut, w_note + cut
    w_note = max(4, w_note)
    table.add_column("run", no_wrap=True, overflow="ellipsis", width=w_run)
    if show_id:
        table.add_column("job id", no_wrap=True, overflow="ellipsis", width=w_id)
    table.add_column("state", no_wrap=True, overflow="ellipsis", width=w_state)
    table.add_column("elapsed", no_wrap=True, overflow="ellipsis", width=w_el)
    table.add_column("note / last log line", no_wrap=True, overflow="ellipsis", width=w_note)
    for r, st in zip(rows, state_texts):
        # a state's detail is cut at its end (its start says what happened); a log line keeps its fix
        note = Text(r["detail"], overflow="ellipsis") if r["detail"] else Text(fit_log_line(r["log"], w_note))
        cells = [r["run"]] + ([r["job_id"]] if show_id else []) + [
            Text(st, style=_COLORS.get(r["state"], "white")), r["elapsed"], note]
        table.add_row(*cells)
    return table


def status(study: str | os.PathLike[str], *, runs_dir: str | os.PathLike[str] = "runs", watch: bool = False,
           poll_s: float = POLL_S, wide: bool = False) -> int:
    """Print the study's jobs (run, state, elapsed, the detail or last log line; ``wide``: also the
    job id and attempts, and nothing cut), fitting the terminal's width. Below the table, the whole
    last log line of each failed, timed-out or cancelled run, wrapped at words, so its fix is read in full.

    States come from DONE markers first and the scheduler second; the manifest is updated with
    what was seen. ``watch`` refreshes until no job is pending or running.
    """
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    sdir, manifest = _open(study, runs_dir)
    ex = _executor_for(manifest)
    console = Console()

    def snapshot() -> tuple[Any, dict[str, dict[str, Any]]]:
        m = sd.read_manifest(sdir)
        states = refresh_states(sdir, m, ex)
        _store_states(sdir, states)
        m = sd.read_manifest(sdir)
        table = status_table(sdir, m, states, width=console.width, wide=wide)
        if wide:
            return table, states
        notes = [Text(f"{r['run']}: {r['log']}", style="red") for r in _status_rows(sdir, m, states)
                 if r["state"] in _BAD and r["log"] and not r["detail"]]
        return (Group(table, *notes) if notes else table), states

    table, states = snapshot()
    if not watch:
        if wide:
            Console(width=100_000).print(table, crop=False)
        else:
            console.print(table)
        return 0
    with Live(table, console=console, refresh_per_second=1) as live:
        while any(s["state"] in LIVE for s in states.values()):
            time.sleep(poll_s)
            table, states = snapshot()
            live.update(table)
    return 0


