"""Plan -> submitted jobs, and their lifecycle: launch, resume, cancel.

    scaling launch recipes/tiny-ladder.yaml --dry-run      # print what would be submitted
    scaling launch recipes/tiny-ladder.yaml --wait         # submit, then follow progress
    scaling status tiny-ladder --watch                     # status.py
    scaling resume tiny-ladder                             # only what failed or never ran
    scaling cancel tiny-ladder

Executors (``--executor``): ``slurm`` (scheduler holds dependents until their dependencies
succeed), ``local`` (jobs run as subprocesses on this machine, one at a time, in dependency
order, driven by this process; so a local launch always waits), ``debug`` (in this process,
so a breakpoint works). ``auto`` is slurm when a cluster is configured here, else local. The
executors are ``executors.py``'s (the scheduler-specific code lives in ``slurm.py``); this module
only speaks of jobs, ids and states, which ``status.py`` computes.

A run is *done* only when its directory has a ``DONE`` marker (``durable.mark_done``), which
the job writes last. ``resume`` resubmits exactly the runs (array items) without one, and never
reruns a done run. Job bodies are ``supervise.JobBody`` objects: picklable, they import
``JobSpec.entry`` ("module:function") on the node and call ``main(run_yaml)`` or, for array
items, ``main(run_yaml, item)``.

* ``topo_order(jobs)``, ``critical_path_s(jobs)``: the job graph in dependency order, and the
  longest chain ahead of each job (the local driver's priority);
* ``launch(study, plan, ...)``, ``resume(study, ...)``, ``cancel(study, ...)``: the commands;
* ``resolve_runs_dir(study, runs_dir)``: the runs directory of a study (``--runs-dir``, else the recipe's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import durable, numerics
from . import studydir as sd
from .errors import LaunchError
from .executors import (Executor, executor_for, local_parallel, make_executor, parallel_for,
                        refuse_gpu_jobs_without_gpus)
from .progress import Progress, plan_estimates_s, verdict, wait_until_ended
from .records import ClusterProfile, JobSpec, Plan, to_dict
from .records.convert import from_plain
from .status import (LIVE, POLL_S, clean_stale_tmp, job_ids_of, open_study, record_ids, refresh_states,
                     store_states)
from .studydir import study_ref  # re-exported: hints name the study so they run as printed
# JobBody: submitit pickles the bodies of a job into its folder as scaling.launch.JobBody until this
# version; a job submitted before an upgrade and started after it unpickles it from this path.
from .supervise import JobBody  # noqa: F401
from .versions import StudyWithVersions  # records the torch/trl/vllm/... versions in study.yaml

if TYPE_CHECKING:  # the type only: launch reads name, runs_dir, to_yaml() (tests pass small studies)
    from .recipe import Study

DRIVE_POLL_S = 2.0  # labelled default: how often the local driver looks for a free slot


# ------------------------------------------------------------------------------ graph
def _job_to_dict(job: JobSpec) -> dict[str, Any]:
    return to_dict(job)


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
        os.kill(os.getpid(), signal.SIGKILL)


def _submit_one(sdir: Path, ex: Executor, job: JobSpec, items: list[str], after_ids: list[str]) -> None:
    """Submit one run (or the given items of an array run) and record ids in the manifest.

    The intent (job name, items, time) is written to the manifest BEFORE submitting, so a
    launcher killed between the scheduler accepting the job and the id reaching the manifest
    leaves a trace: ``reconcile`` then finds the job by name (or by submitit's pickle) and
    adopts its id instead of declaring the run unsubmitted and submitting it again."""
    entry_folder = sd.run_dir(sdir, job.run_id) / durable.LOGS
    intent = {"name": job.name, "items": list(items), "ts": time.time(), "time": durable.utc_now(), "executor": ex.name}
    sd.update_manifest(sdir, lambda m: m["runs"][job.run_id].__setitem__("submitting", intent))
    ids = ex.submit(job, _bodies(sdir, job, items), folder=entry_folder, after=after_ids)
    _fault_point("after_submit", job.run_id)
    record_ids(sdir, ex, job.run_id, bool(job.array), items, ids)


def _todo(sdir: Path, states: dict[str, dict[str, Any]], job: JobSpec) -> list[str] | None:
    """Items (or ["-"] for a single job) that must be (re)submitted; None when nothing to do."""
    st = states.get(job.run_id, {}).get("state", "not_submitted")
    if st == "done" or st in LIVE or st == "unknown":  # unknown: the scheduler cannot say; never risk a twin
        return None
    rd = sd.run_dir(sdir, job.run_id)
    if job.array:
        return [it for it in job.array if not durable.is_done(sd.item_dir(rd, it))] or None
    return ["-"]


def _pending_ids(sdir: Path, entry: dict[str, Any], run_id: str) -> list[str]:
    """Current ids of a run's parts that are not DONE (an array's finished items are skipped,
    so a dependency never points at an old, partly failed array)."""
    if entry.get("items"):
        rd = sd.run_dir(sdir, run_id)
        return [jid for it, jid in entry.get("item_ids", {}).items() if jid and not durable.is_done(sd.item_dir(rd, it))]
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
        store_states(sdir, states)
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
    store_states(sdir, final)
    if progress:
        progress(final)


# ------------------------------------------------------------------------ public API
def resolve_runs_dir(study: Any, runs_dir: str | os.PathLike[str] | None) -> Path:
    """The directory that holds a study's directory: ``runs_dir`` when given, else the recipe's ``runs_dir``."""
    return Path(runs_dir if runs_dir is not None else getattr(study, "runs_dir", "runs") or "runs")


def _print_dry_run(sdir: Path, plan: Plan, ex: Executor) -> None:
    """Plain lines (no wrapping, greppable): each job, its dependencies and its scheduler lines."""
    print(f"dry run: study {plan.study} -> {sdir} with the {ex.name} executor; nothing is submitted")
    ids = {j.run_id: f"<{j.run_id}>" for j in plan.jobs}
    for job in topo_order(plan.jobs):
        done = sd.run_is_done(sdir, job.run_id, job.array) if sdir.exists() else False
        desc = ex.describe(job, items=list(job.array), after=[ids[a] for a in job.after],
                           folder=sd.run_dir(sdir, job.run_id) / durable.LOGS)
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
        if desc.get("command"):
            print(f"    $ {desc['command']}")
        if "sbatch" not in desc:
            print("    " + json.dumps({k: v for k, v in desc.items() if k not in ("executor", "command")}))


def _plan_json(plan: Plan) -> str:
    """plan.json through the planner's own serialiser (``plan.plan_to_json``); where plan.py is
    not importable (a stripped install), the same records serialised by ``records.to_dict``."""
    try:
        from .plan import plan_to_json
    except ImportError:
        return json.dumps(to_dict(plan), indent=2, sort_keys=True) + "\n"
    return plan_to_json(plan)


def _check_secrets(plan: Plan, ex: Executor) -> list[str]:
    if ex.name != "slurm":
        return []
    from .slurm import script_secret_problems

    return script_secret_problems(plan.jobs, plan.profile)


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


def launch(study: Study, plan: Plan, *, executor: str | Executor = "auto", runs_dir: str | os.PathLike[str] | None = None,
           dry_run: bool = False, wait: bool = False, poll_s: float = POLL_S, force: bool = False) -> int:
    """Submit a planned study. Returns 0 when everything was submitted (and, when waiting or
    running locally, finished with DONE), 1 when some run failed.

    Refuses (LaunchError) a study name that is not ``[a-z0-9_-]+``, a preflight problem (all
    listed at once), a second live launch (lock), and a relaunch while jobs are still live.
    Relaunching a study whose jobs have all ended, with the same plan, acts like ``resume``.
    """
    name = sd.safe_name(plan.study)
    sdir = resolve_runs_dir(study, runs_dir) / name
    numerics.mode()  # a bad SCALING_CPU_BF16 is refused before anything is written or submitted
    if dry_run and executor == "auto":
        ex = _dry_run_executor(plan)
    else:
        ex = executor if not isinstance(executor, str) else make_executor(executor, plan.profile)
    topo_order(plan.jobs)
    if dry_run:
        _print_dry_run(sdir, plan, ex)
        return 0
    if ex.name in ("local", "debug") and not force:
        refuse_gpu_jobs_without_gpus(plan)
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
            clean_stale_tmp(sdir, old, states)
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
            return _drive_all(sdir, ex, plan.jobs, poll_s=poll_s, parallel=local_parallel(plan),
                              weights=_size_weights(sdir))
        _announce(sdir, ex, _submit_scheduled(sdir, ex, plan.jobs))
    return _follow(sdir, ex, wait=wait, poll_s=poll_s)


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
    store_states(sdir, refresh_states(sdir, sd.read_manifest(sdir), ex))


def _follow(sdir: Path, ex: Executor, *, wait: bool, poll_s: float) -> int:
    """After a scheduler submission (lock released): return, or wait with progress."""
    if not wait:
        print(f"follow with: scaling status {study_ref(sdir)} --watch")
        return 0
    return verdict(sdir, wait_until_ended(sdir, ex, _jobs(sd.read_manifest(sdir)), poll_s=poll_s))


def _drive_all(sdir: Path, ex: Executor, jobs: list[JobSpec], *, poll_s: float, parallel: int,
               weights: dict[str, float] | None = None) -> int:
    """Local/debug: this process runs the study (under the study lock) and reports."""
    with Progress(jobs, parallel=parallel) as prog:
        _drive(sdir, ex, jobs, poll_s=poll_s, progress=prog.update, parallel=parallel, weights=weights)
    return verdict(sdir, refresh_states(sdir, sd.read_manifest(sdir), ex))


def _jobs(manifest: dict[str, Any]) -> list[JobSpec]:
    return [from_plain(JobSpec, e["job"], f"manifest.json: runs.{run_id}.job") for run_id, e in manifest["runs"].items()]


def resume(study: str | os.PathLike[str], *, runs_dir: str | os.PathLike[str] = "runs", executor: str | Executor = "auto",
           dry_run: bool = False, wait: bool = False, poll_s: float = POLL_S) -> int:
    """Resubmit only runs (array items) that failed or never ran, with their dependencies;
    DONE runs are never rerun, live ones are left alone."""
    sdir, manifest = open_study(study, runs_dir)
    numerics.mode()  # as launch: a bad SCALING_CPU_BF16 is refused before anything is resubmitted
    ex = executor if not isinstance(executor, str) else executor_for(manifest, executor)
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
        clean_stale_tmp(sdir, manifest, states)
        if not ex.handles_dependencies:
            return _drive_all(sdir, ex, jobs, poll_s=poll_s, parallel=parallel_for(profile_plan, jobs),
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
    fields = {f.name for f in dataclasses.fields(ClusterProfile)}  # a field this version dropped is ignored
    return from_plain(ClusterProfile, {k: v for k, v in prof.items() if k in fields}, "plan.json: profile")


def cancel(study: str | os.PathLike[str], *, runs_dir: str | os.PathLike[str] = "runs") -> int:
    """Cancel every live job of the study (DONE outputs stay). Does not wait for the study lock,
    so it works while `launch --wait` follows the study; a local launcher driving the study sees
    the request and submits nothing more."""
    sdir, manifest = open_study(study, runs_dir)
    ex = executor_for(manifest)
    if ex is None:
        raise LaunchError(f"{sdir}: the {manifest.get('executor')} executor is not available here; cancel on the cluster")
    sd.update_manifest(sdir, lambda m: m.__setitem__("cancel_requested_ts", time.time()))
    states = refresh_states(sdir, manifest, ex)
    live_ids: list[str] = []
    for run_id, info in states.items():
        if info["state"] in LIVE:
            live_ids += job_ids_of(manifest["runs"][run_id])
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
