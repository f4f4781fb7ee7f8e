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
from .errors import LaunchError
from .records import ClusterProfile, JobSpec, Plan, Resources

# Tokens pass to jobs through the environment only; launch refuses to write them anywhere.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# Seconds between state polls while waiting (labelled default; tests pass a smaller value).
POLL_S = 10.0
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

    Returns run_id -> {state, detail, elapsed_s, items_done}; does not write the manifest.
    """
    runs = manifest["runs"]
    ids: list[str] = []
    folders: dict[str, Path] = {}
    for entry in runs.values():
        for jid in _ids_of(entry):
            ids.append(jid)
            folders[jid] = _folder(sdir, entry)
    sched = ex.states(ids, folders) if (ex is not None and ids) else {}
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


def _submit_one(sdir: Path, ex: Executor, job: JobSpec, items: list[str], after_ids: list[str]) -> None:
    """Submit one run (or the given items of an array run) and record ids in the manifest."""
    entry_folder = sd.run_dir(sdir, job.run_id) / sd.LOGS
    ids = ex.submit(job, _bodies(sdir, job, items), folder=entry_folder, after=after_ids)
    now = sd._now()

    def apply(m: dict[str, Any]) -> None:
        e = m["runs"][job.run_id]
        if job.array:  # attempts of an array = the most any item was submitted
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
        e.setdefault("history", []).append({"time": now, "ids": ids, "items": items if job.array else []})

    sd.update_manifest(sdir, apply)


def _todo(sdir: Path, states: dict[str, dict[str, Any]], job: JobSpec) -> list[str] | None:
    """Items (or ["-"] for a single job) that must be (re)submitted; None when nothing to do."""
    st = states.get(job.run_id, {}).get("state", "not_submitted")
    if st == "done" or st in LIVE:
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
    With several slots, ready runs of heavier ``weights`` (model size) start first.
    Within one drive a unit is submitted once: a failure is left for ``resume``."""
    order = topo_order(jobs)
    if parallel > 1 and weights:
        rank = {j.run_id: i for i, j in enumerate(order)}
        order.sort(key=lambda j: (-weights.get(j.run_id, 0.0), rank[j.run_id]))
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
        time.sleep(poll_s if live else 0)
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


def launch(study: Any, plan: Plan, *, executor: str | Executor = "auto", runs_dir: str | os.PathLike[str] | None = None,
           dry_run: bool = False, wait: bool = False, poll_s: float = POLL_S) -> int:
    """Submit a planned study. Returns 0 when everything was submitted (and, when waiting or
    running locally, finished with DONE), 1 when some run failed.

    Refuses (LaunchError) a study name that is not ``[a-z0-9_-]+``, a preflight problem (all
    listed at once), a second live launch (lock), and a relaunch while jobs are still live.
    Relaunching a study whose jobs have all ended, with the same plan, acts like ``resume``.
    """
    name = sd.safe_name(plan.study)
    sdir = _resolve_runs_dir(study, runs_dir) / name
    ex = executor if not isinstance(executor, str) else make_executor(executor, plan.profile)
    topo_order(plan.jobs)
    if dry_run:
        _print_dry_run(sdir, plan, ex)
        return 0
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
                                  f"follow it with `scaling status {name}`, or `scaling cancel {name}` first")
            stored = (sdir / sd.PLAN_JSON).read_text() if (sdir / sd.PLAN_JSON).exists() else ""
            if stored != plan_text:
                raise LaunchError(f"{sdir}: holds a different plan of study {name}; use another study name "
                                  f"(set name: in the recipe) or delete {sdir} to start over")
        sd.write_study_files(sdir, study, plan_text)
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
                    f"{', '.join(submitted) or 'nothing to do (all DONE or live)'}", highlight=False)
    _store_states(sdir, refresh_states(sdir, sd.read_manifest(sdir), ex))


def _follow(sdir: Path, ex: Executor, *, wait: bool, poll_s: float) -> int:
    """After a scheduler submission (lock released): return, or wait with progress."""
    if not wait:
        print(f"follow with: scaling status {sdir.name} --watch")
        return 0
    return _verdict(sdir, _wait(sdir, ex, poll_s=poll_s))


def _drive_all(sdir: Path, ex: Executor, jobs: list[JobSpec], *, poll_s: float, parallel: int,
               weights: dict[str, float] | None = None) -> int:
    """Local/debug: this process runs the study (under the study lock) and reports."""
    with _Progress(len(jobs)) as prog:
        _drive(sdir, ex, jobs, poll_s=poll_s, progress=prog.update, parallel=parallel, weights=weights)
    return _verdict(sdir, refresh_states(sdir, sd.read_manifest(sdir), ex))


def _verdict(sdir: Path, states: dict[str, dict[str, Any]]) -> int:
    from rich.console import Console

    console = Console()
    bad = {r: s for r, s in states.items() if s["state"] != "done"}
    if bad:
        console.print(f"{len(bad)} run(s) not done: " + ", ".join(f"{r} ({s['state']})" for r, s in sorted(bad.items()))
                      + f"; inspect with `scaling status {sdir.name}`, then `scaling resume {sdir.name}`",
                      highlight=False)
        return 1
    console.print(f"all {len(states)} run(s) of {sdir.name} are DONE", highlight=False)
    return 0


class _Progress:
    """A rich progress bar of runs done / total (quiet when stdout is not a terminal)."""

    def __init__(self, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           transient=False)
        self._task = self._p.add_task("runs done", total=total)

    def __enter__(self) -> "_Progress":
        self._p.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._p.stop()

    def update(self, states: dict[str, dict[str, Any]]) -> None:
        done = sum(1 for s in states.values() if s["state"] == "done")
        live = [r for r, s in states.items() if s["state"] == "running"]
        desc = f"runs done ({', '.join(live[:2])} running)" if live else "runs done"
        self._p.update(self._task, completed=done, description=desc)


def _wait(sdir: Path, ex: Executor, *, poll_s: float) -> dict[str, dict[str, Any]]:
    manifest = sd.read_manifest(sdir)
    with _Progress(len(manifest["runs"])) as prog:
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


def status_table(sdir: Path, manifest: dict[str, Any], states: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    colors = {"done": "green", "running": "cyan", "pending": "yellow", "failed": "red", "blocked": "red",
              "cancelled": "magenta", "timeout": "red", "unknown": "white", "not_submitted": "white"}
    table = Table(title=f"{manifest['study']} ({manifest.get('executor')})  {sdir}")
    for col in ("run", "job id", "state", "elapsed", "attempts"):
        table.add_column(col, no_wrap=col != "state")
    table.add_column("last log line", overflow="fold", ratio=1)
    now = time.time()
    for run_id, e in manifest["runs"].items():
        info = states.get(run_id, {"state": e.get("state", "?")})
        st = info["state"]
        if e.get("items"):
            st_text = f"{st} ({info.get('items_done', 0)}/{len(e['items'])})"
        else:
            st_text = st
        if info.get("detail") and st != "done":
            st_text += f": {info['detail']}"
        elapsed = info.get("elapsed_s")
        if elapsed is None and e.get("submitted_ts"):
            end = now
            if st not in LIVE:  # ended: the last write of its logs (or DONE) is when it stopped
                rd = sd.run_dir(sdir, run_id)
                marks = [p.stat().st_mtime for p in _folder(sdir, e).glob("*_log.*")] if _folder(sdir, e).exists() else []
                marks += [p.stat().st_mtime for p in rd.rglob(sd.DONE)]
                end = max(marks) if marks else now
            elapsed = max(0.0, end - float(e["submitted_ts"]))
        job_id = e.get("job_id") or "-"
        table.add_row(run_id, str(job_id), f"[{colors.get(st, 'white')}]{st_text}[/]", _fmt_elapsed(elapsed),
                      str(e.get("attempts", 0)),
                      _last_log_line(_folder(sdir, e), prefer_err=st in ("failed", "timeout", "cancelled"))[:120])
    return table


def status(study: str | os.PathLike[str], *, runs_dir: str | os.PathLike[str] = "runs", watch: bool = False,
           poll_s: float = POLL_S) -> int:
    """Print the study's jobs (run, job id, state, elapsed, attempts, last log line).

    States come from DONE markers first and the scheduler second; the manifest is updated with
    what was seen. ``watch`` refreshes until no job is pending or running.
    """
    from rich.console import Console
    from rich.live import Live

    sdir, manifest = _open(study, runs_dir)
    ex = _executor_for(manifest)

    def snapshot() -> tuple[Any, dict[str, dict[str, Any]]]:
        m = sd.read_manifest(sdir)
        states = refresh_states(sdir, m, ex)
        _store_states(sdir, states)
        return status_table(sdir, sd.read_manifest(sdir), states), states

    console = Console()
    table, states = snapshot()
    if not watch:
        console.print(table)
        return 0
    with Live(table, console=console, refresh_per_second=1) as live:
        while any(s["state"] in LIVE for s in states.values()):
            time.sleep(poll_s)
            table, states = snapshot()
            live.update(table)
    return 0
