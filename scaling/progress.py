"""Following a launched study: the plan's time estimates, the progress printer, the verdict.

* ``plan_estimates_s(jobs)``: run_id -> the plan's wall-time estimate of the job in seconds;
* ``Progress``: a rich live bar on a terminal, one line per run state change elsewhere, with the
  time left estimated from the plan and recalibrated as runs end; a running training job's step
  and last reward or loss (``refresh_states``' ``progress``, read from the job's files) as it moves;
* ``wait_until_ended(sdir, ex, jobs, poll_s=...)``: poll a scheduler's study with progress until nothing is live;
* ``verdict(sdir, states)``: the closing line (what is not done, what to run next) and the exit status.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import studydir as sd
from .capacity import STARTUP_MIN, TIME_SAFETY
from .executors import Executor
from .records import JobSpec
from .status import FINAL, LIVE, fmt_elapsed, refresh_states, store_states
from .studydir import study_ref

# Seconds between two progress lines of one running training job in line mode (labelled default:
# a 3-hour GRPO job prints ~360 lines, a 2-minute tiny-ladder job a few; state changes print at once).
STEP_LINE_S = 30.0


def plan_estimates_s(jobs: list[JobSpec]) -> dict[str, float]:
    """run_id -> the plan's wall-time estimate of the job in seconds: the job's ``hours``; for a
    plan written before that field, GPU-hours over its GPUs when the plan has them, else the time
    limit read back through ``capacity.time_limit_min``'s padding (estimate x TIME_SAFETY +
    STARTUP_MIN), at least one minute. Only ratios matter to the progress estimate, which is
    recalibrated against the observed times as runs finish."""
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


class Progress:
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
        self._steps: dict[str, tuple[str, float]] = {}  # run_id -> (progress text printed, when)
        self._p = None
        if not self._lines:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=self._console,
                               transient=False)
            self._task = self._p.add_task("runs done", total=self.total, left="")

    def __enter__(self) -> "Progress":
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
        left_text = f"~{fmt_elapsed(left)}" if left else ""
        if self._p is not None:
            live = [r + (f" {states[r]['progress']}" if states[r].get("progress") else "")
                    for r, s in states.items() if s["state"] == "running"]
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
                        + (f"; the plan's estimate ~{fmt_elapsed(est)}" if est else ""))
            changed = [r for r in changed if states[r]["state"] not in ("not_submitted", "done")]
        tail = f"{done}/{self.total} done  elapsed {fmt_elapsed(now - self._t0)}"
        if left_text:
            tail += f"  left {left_text}"
        for r in changed:
            st = states[r]["state"]
            extra = f"  took {fmt_elapsed(self._ended_here[r])}" if r in self._ended_here and st in FINAL else ""
            if states[r].get("detail") and st != "done":
                extra += f"  ({states[r]['detail']})"
            self._print(f"{time.strftime('%H:%M:%S')}  {r}  {st}{extra}  |  {tail}")
        for r, s in states.items():  # inside a running training job: its step and last reward or loss
            text = s.get("progress") or ""
            seen = self._steps.get(r)
            if s["state"] != "running" or not text or (seen and (seen[0] == text or now - seen[1] < STEP_LINE_S)):
                continue
            self._steps[r] = (text, now)
            self._print(f"{time.strftime('%H:%M:%S')}  {r}  {text}  |  {tail}")

    @staticmethod
    def _print(line: str) -> None:
        print(line, flush=True)


def wait_until_ended(sdir: Path, ex: Executor, jobs: list[JobSpec], *, poll_s: float) -> dict[str, dict[str, Any]]:
    """Follow a study a scheduler runs, with progress, until no run is live or unknown; the last states."""
    with Progress(jobs, parallel=len(jobs)) as prog:
        while True:
            states = refresh_states(sdir, sd.read_manifest(sdir), ex)
            store_states(sdir, states)
            prog.update(states)
            if not any(s["state"] in LIVE or s["state"] == "unknown" for s in states.values()):
                return states
            time.sleep(poll_s)


def verdict(sdir: Path, states: dict[str, dict[str, Any]]) -> int:
    """Print the outcome of a study (the runs not done, with what to run next) and return 0 when
    every run is DONE, else 1."""
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
