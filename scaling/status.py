"""Run states and the status table: what each run of a launched study is, and how it is shown.

    scaling status tiny-ladder [--watch] [--wide]

A run is *done* only when its directory has a ``DONE`` marker (``durable.mark_done``); the
scheduler's view of its ids (``Executor.states``) says the rest: pending, running, failed, ...

* ``refresh_states(sdir, manifest, ex)``: run_id -> {state, detail, elapsed_s, items_done};
* ``reconcile(sdir, ex)``: settle a submission left in doubt (adopt the job the scheduler has);
* ``record_ids(...)``, ``store_states(...)``: write submitted ids and seen states into the manifest;
* ``open_study(study, runs_dir)``: a launched study's directory and manifest (one-line errors);
* ``status_table(...)``: the table; a failed run's note is its cause (``runlogs.failure_cause``: the
  job's own exception line, with its log file and line), a running training job's its step and last
  reward or loss (``runlogs.job_progress``); ``fit_log_line``, ``redact`` (from runlogs): a line cut
  so its fix stays, secrets hidden;
* ``status(study, ...)``: the ``scaling status`` command; ``logs(study, run, ...)``: ``scaling logs``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import durable
from . import studydir as sd
from .errors import LaunchError
from .executors import Executor, executor_for
from .runlogs import (failure_cause, find_run, fit_cause, fit_log_line, job_progress, last_log_line, log_files,
                      print_logs, redact)
from .studydir import study_ref

# Seconds between state polls while waiting (labelled default; tests pass a smaller value).
POLL_S = 10.0
LIVE = ("pending", "running")
FINAL = ("done", "failed", "cancelled", "timeout", "blocked")


# ------------------------------------------------------------------------------ states
def _folder(sdir: Path, entry: dict[str, Any]) -> Path:
    return sdir / entry["paths"]["logs"]


def job_ids_of(entry: dict[str, Any]) -> list[str]:
    """The scheduler ids a manifest entry records (an array's task ids, else its one job id)."""
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
        for jid in job_ids_of(entry):
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
            done_items = [it for it in items if durable.is_done(sd.item_dir(rd, it))]
            pending_items = [it for it in items if it not in done_items]
        else:
            done_items, pending_items = ([], []) if not durable.is_done(rd) else (["-"], [])
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
        if info["state"] == "running":  # a training job's step and last reward/loss, from its own files
            prog = job_progress(rd, run_id.rsplit("/", 1)[-1])
            if prog is not None:
                info["progress"] = prog.text
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


def clean_stale_tmp(sdir: Path, manifest: dict[str, Any], states: dict[str, dict[str, Any]]) -> None:
    """Remove temporary files a SIGKILL left inside ``atomic_path``: in the study directory when
    older than 10 min (its writers finish in milliseconds), and in every run directory whose run
    is not live (no job can be writing there). Run under the study lock."""
    durable.clean_stale_tmp(sdir, older_than_s=600.0)
    for run_id, info in states.items():
        if info.get("state") not in LIVE and info.get("state") != "unknown" and run_id in manifest["runs"]:
            durable.clean_stale_tmp(sd.run_dir(sdir, run_id), older_than_s=60.0, recursive=True)


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
        record_ids(sdir, ex, run_id, bool(items), items, ids, how="adopted")
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
        from .slurm import jobs_named

        got = jobs_named(name, since_ts)
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


def store_states(sdir: Path, states: dict[str, dict[str, Any]]) -> None:
    """Write each run's seen state and detail into the manifest."""

    def apply(m: dict[str, Any]) -> None:
        for run_id, info in states.items():
            if run_id in m["runs"]:
                m["runs"][run_id]["state"] = info["state"]
                m["runs"][run_id]["detail"] = info.get("detail", "")

    sd.update_manifest(sdir, apply)


def record_ids(sdir: Path, ex: Executor | None, run_id: str, array: bool, items: list[str], ids: list[str],
               *, how: str = "submitted") -> None:
    """Write submitted (or adopted) ids into the manifest and clear the submission intent."""
    now = durable.utc_now()
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


def open_study(study: str | os.PathLike[str], runs_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """A launched study's directory and manifest; a LaunchError saying what happened when it has none."""
    sdir = sd.study_dir(study, runs_dir)
    manifest = sd.read_manifest(sdir)
    if manifest is None:
        if (sdir / sd.PLAN_JSON).exists():  # launch stopped after the plan files (full disk, kill): nothing submitted
            raise LaunchError(f"{sdir}: plan files but no manifest.json: the launch stopped before submitting anything "
                              "(e.g. a full disk); run `scaling launch RECIPE` again with the same recipe to submit it")
        raise LaunchError(f"{sdir}: no manifest.json; this study was never launched (scaling launch RECIPE)")
    return sdir, manifest


# ------------------------------------------------------------------------------ status
def fmt_elapsed(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


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
                marks += [p.stat().st_mtime for p in rd.rglob(durable.DONE)]
                end = max(marks) if marks else now
            elapsed = max(0.0, end - float(e["submitted_ts"]))
        cause = None
        if st in ("failed", "timeout"):  # the job's own error line, not the supervisor's wrapper
            cause = failure_cause(_failed_logs(sdir, e), state=st, detail=info.get("detail", ""))
        rows.append({"run": run_id, "job_id": str(e.get("job_id") or "-"), "state": st, "state_text": st_text,
                     "detail": info.get("detail", "") if st != "done" else "", "elapsed": fmt_elapsed(elapsed),
                     "attempts": int(e.get("attempts", 0) or 0), "progress": info.get("progress", ""),
                     "cause": redact(cause.line) if cause else "", "cause_at": cause.where if cause else "",
                     "log": last_log_line(_folder(sdir, e), prefer_err=st in ("failed", "timeout", "cancelled"))})
    return rows


def _failed_logs(sdir: Path, e: dict[str, Any]) -> list[Path]:
    """The log files of a failed run's newest attempt: of its first item without DONE (arrays)."""
    if e.get("items"):
        rd = sdir / e["paths"]["dir"]
        for it in e["items"]:
            if not durable.is_done(rd / it) and (e.get("item_ids") or {}).get(it):
                return log_files(sdir, e, it)
    return log_files(sdir, e)


def _note(r: dict[str, Any]) -> str:
    """What the narrow table says of a run: a failure's cause, a training job's step, else the
    state's detail or the last log line."""
    if r["cause"]:
        return r["cause"]
    if r["state"] == "running" and r["progress"]:
        return r["progress"]
    return r["detail"] or r["log"]


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
        for col in ("run", "job id", "state", "elapsed", "attempts", "cause / progress / last log line", "log"):
            table.add_column(col, no_wrap=True, overflow="ignore")
        for r in rows:
            st = f"{r['state_text']}: {r['detail']}" if r["detail"] else r["state_text"]
            table.add_row(r["run"], r["job_id"], f"[{_COLORS.get(r['state'], 'white')}]{st}[/]", r["elapsed"],
                          str(r["attempts"]), Text(r["cause"] or (r["progress"] if r["state"] == "running" else "")
                                                   or r["log"]), Text(r["cause_at"]))
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
        text = _note(r)
        note = (Text(fit_cause(text, w_note)) if r["cause"] else Text(text, overflow="ellipsis")
                if text == r["detail"] else Text(fit_log_line(text, w_note)))
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

    sdir, manifest = open_study(study, runs_dir)
    ex = executor_for(manifest)
    console = Console()

    def snapshot() -> tuple[Any, dict[str, dict[str, Any]]]:
        m = sd.read_manifest(sdir)
        states = refresh_states(sdir, m, ex)
        store_states(sdir, states)
        m = sd.read_manifest(sdir)
        table = status_table(sdir, m, states, width=console.width, wide=wide)
        if wide:
            return table, states
        notes: list[Any] = []
        for r in _status_rows(sdir, m, states):
            if r["cause"]:  # the whole cause line, then where it was read and how to see the rest
                notes.append(Text(f"{r['run']}: {r['cause']}", style="red"))
                if r["cause_at"]:
                    notes.append(Text(f"  log: {r['cause_at']}  (scaling logs {study_ref(sdir)} {r['run']})",
                                      overflow="fold"))
            elif r["state"] in _BAD and r["log"] and not r["detail"]:
                notes.append(Text(f"{r['run']}: {r['log']}", style="red"))
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


def logs(study: str | os.PathLike[str], run: str, *, runs_dir: str | os.PathLike[str] = "runs",
         tail: int | None = None) -> int:
    """``scaling logs STUDY RUN[/ITEM] [--tail N]``: the newest attempt's log files of one run (every
    item of an array, or one), each under a ``==> path <==`` header, secrets hidden."""
    if tail is not None and tail < 1:
        raise LaunchError(f"--tail {tail}: must be a positive number of lines")
    sdir, manifest = open_study(study, runs_dir)
    run_id, item = find_run(manifest, run)
    return print_logs(sdir, manifest["runs"][run_id], run_id, item, tail=tail)
