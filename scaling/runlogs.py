"""What a run's own files say: its log files, the cause of a failure read from them, what
``scaling logs`` prints, and how far a running training job has got.

    scaling logs tiny-ladder 1m/sft [--tail 40]          every log file of the run's newest attempt
    scaling logs tiny-ladder 1m/eval-trained/tiny_arith  one array item

submitit writes each job's stdout and stderr as ``<study>/<size>/<stage>/logs/<job id>_<task>_log.out``
and ``.err`` (array items: ``<master>_<index>_<task>_log.*``; the debug executor: ``debug-*_0_log.*``).

* ``log_files(sdir, entry, item=None)``: the newest attempt's files of a run (or of one item);
* ``failure_cause(paths, ...)``: the line that says why a job failed: the scheduler's time-limit or
  OOM-kill line, else the job's own exception (the last one of its traceback chain that is not the
  supervisor's ``RuntimeError: ... exited with status N`` or submitit's re-raise), else how the worker
  ended (a signal) -- with the file and line number it was read from;
* ``find_run``, ``print_logs``, ``redact``: what ``scaling logs`` (``status.logs``) prints, secrets hidden;
* ``job_progress(job_dir, stage)``: a running training job's step/total and last reward or loss, from
  ``signals.jsonl`` (or ``signals.parquet``) and the newest ``checkpoint-*/trainer_state.json``;
* ``last_log_line``, ``fit_log_line``, ``fit_cause``: one line of a log for a table cell.

status.py imports this module (never the reverse: the import graph has no cycle).

Standard library only.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LaunchError
from .supervise import SECRET_ENV_VARS

MAX_READ_BYTES = 4 << 20  # a log is read from its last 4 MiB (a long training log keeps its end)

# the supervisor's wrapper around a worker that failed (supervise.SupervisedBody): never the cause
_WRAPPER_RE = re.compile(r"^RuntimeError: \S+:\S+ \S+ (?:exited with status (-?\d+)|stopped)")
# an exception line as Python prints it below a traceback: "pkg.mod.Name: message" or "Name"
_EXC_RE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?::(?:\s.*)?)?$")
# how the scheduler or submitit says a job ran out of time (Slurm's slurmstepd line; submitit's own
# lines on the warning signal, as both the Slurm and the local executor print them)
_TIMEOUT_RE = re.compile(r"DUE TO TIME LIMIT|this job is timed-out|Job has timed out")
_PREEMPT_RE = re.compile(r"DUE TO PREEMPTION")
# Slurm's cgroup OOM kill: "slurmstepd: error: Detected 1 oom_kill event in StepId=..."; the kernel's
_OOM_KILL_RE = re.compile(r"oom[-_]kill|Out of memory: Killed process|OOM Killed", re.IGNORECASE)
# consequences of a stop or of submitit's own handling, never the cause when something else is there
_CONSEQUENCES = ("KeyboardInterrupt", "submitit.core.utils.UncompletedJobError", "SystemExit")
_PREFIX_RE = re.compile(r"^submitit \w+ \([^)]*\) - ")


@dataclass(frozen=True)
class Cause:
    """Why a run failed, as read from its log: ``line`` (one line, shown by ``scaling status``),
    ``path`` and ``line_no`` (1-based) of the log it came from (0: not from a line, e.g. a signal)."""

    line: str
    path: Path | None
    line_no: int = 0

    @property
    def where(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line_no}" if self.line_no else str(self.path)


# ------------------------------------------------------------------------------ files
def _job_ids(entry: dict[str, Any], item: str | None) -> list[str]:
    if entry.get("items"):
        ids = entry.get("item_ids") or {}
        return [ids[item]] if item is not None and ids.get(item) else \
            ([] if item is not None else [ids[i] for i in entry["items"] if ids.get(i)])
    return [entry["job_id"]] if entry.get("job_id") else []


def _logs_of(folder: Path, job_id: str) -> list[Path]:
    """``<id>_<task>_log.out/.err`` of one job id (task 0 first; .out before .err)."""
    try:
        found = [p for p in folder.iterdir() if p.name.startswith(f"{job_id}_") and p.name.endswith(("_log.out", "_log.err"))
                 and re.fullmatch(r"\d+", p.name[len(job_id) + 1:].split("_", 1)[0])]
    except OSError:
        return []
    return sorted(found, key=lambda p: (int(p.name[len(job_id) + 1:].split("_", 1)[0]), p.suffix == ".err"))


def log_files(sdir: Path, entry: dict[str, Any], item: str | None = None) -> list[Path]:
    """The log files of a run's newest attempt (of every item, or of ``item``), in item order;
    for a run whose ids name no file (logs removed, another executor), the folder's newest files."""
    folder = sdir / entry["paths"]["logs"]
    out: list[Path] = []
    for jid in _job_ids(entry, item):
        out += _logs_of(folder, str(jid))
    if out or item is not None:
        return out
    try:
        logs = sorted((p for p in folder.iterdir() if p.name.endswith(("_log.out", "_log.err"))),
                      key=lambda p: p.stat().st_mtime)
    except OSError:
        return []
    return logs[-2:]


def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - MAX_READ_BYTES))
            return fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


# ------------------------------------------------------------------------------ cause
def _exceptions(lines: list[str]) -> list[tuple[int, str]]:
    """(line index, exception line) of every traceback in ``lines``, in order."""
    out = []
    in_tb = False
    for i, raw in enumerate(lines):
        line = _PREFIX_RE.sub("", raw.rstrip())
        if line.startswith("Traceback (most recent call last):"):
            in_tb = True
            continue
        if not in_tb:
            continue
        if not line or line[0] in " \t":  # a frame, its source line, or a caret line
            continue
        if _EXC_RE.match(line):
            out.append((i, line))
        in_tb = False
    return out


def _signal_text(status: int) -> str:
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    why = {"SIGKILL": "the kernel's OOM killer, kill -9, or the scheduler", "SIGTERM": "a cancel or a preemption",
           "SIGSEGV": "a crash in native code", "SIGABRT": "an abort in native code"}.get(name, "")
    return f"{name}{f' ({why})' if why else ''}"


def failure_cause(paths: list[Path], *, state: str = "failed", detail: str = "") -> Cause | None:
    """The line of a failed job's logs that says why it ended (see the module docstring); None when
    the logs hold nothing that says (then the state's detail is all there is)."""
    timeouts: list[Cause] = []
    found: list[Cause] = []
    wrapper: Cause | None = None
    wrapper_status: int | None = None
    oom_kill: Cause | None = None
    for path in paths:
        lines = _read_lines(path)
        for i, raw in enumerate(lines):
            line = _PREFIX_RE.sub("", raw.strip())
            if _TIMEOUT_RE.search(line) or _PREEMPT_RE.search(line):
                timeouts.append(Cause(line, path, i + 1))
            elif _OOM_KILL_RE.search(line) and oom_kill is None:
                oom_kill = Cause(line, path, i + 1)
        for i, line in _exceptions(lines):
            m = _WRAPPER_RE.match(line)
            if m:
                wrapper = Cause(line, path, i + 1)
                wrapper_status = int(m.group(1)) if m.group(1) else None
                continue
            found.append(Cause(line, path, i + 1))
    if timeouts:  # the time limit came first; the exceptions below it are its consequences
        slurm = [c for c in timeouts if "DUE TO" in c.line]
        first = (slurm or timeouts)[0]
        what = "preempted" if _PREEMPT_RE.search(first.line) else "timed out"
        return Cause(f"{what}: {first.line}", first.path, first.line_no)
    if oom_kill is not None:
        return Cause(f"killed for memory: {oom_kill.line}", oom_kill.path, oom_kill.line_no)
    own = [c for c in found if not c.line.startswith(_CONSEQUENCES)] or found
    if own:
        return own[-1]  # a chain's last exception is the one the job raised (a JobError with its fix)
    if wrapper is not None and wrapper_status is not None and wrapper_status < 0:
        return Cause(f"killed by {_signal_text(wrapper_status)}; no exception in the log", wrapper.path,
                     wrapper.line_no)
    if wrapper is not None:
        return wrapper
    if state == "failed" and "without a result" in detail:
        where = next((p for p in paths if p.suffix == ".err"), paths[0] if paths else None)
        end = len(_read_lines(where)) if where is not None else 0  # where the log stops
        return Cause("killed: the job ended without a result or an exception in its log (SIGKILL: the kernel's "
                     "OOM killer, kill -9, or a lost node)", where, end)
    return None


# ------------------------------------------------------------------------------ command
def find_run(manifest: dict[str, Any], run: str) -> tuple[str, str | None]:
    runs = manifest["runs"]
    if run in runs:
        return run, None
    head, _, item = run.rpartition("/")
    if head in runs and runs[head].get("items"):
        if item not in runs[head]["items"]:
            raise LaunchError(f"run {head} has no item {item!r}; its items are {', '.join(runs[head]['items'])}")
        return head, item
    import difflib

    close = difflib.get_close_matches(run, list(runs), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise LaunchError(f"no run {run!r} in study {manifest.get('study')}{hint}; "
                      "`scaling status STUDY` lists its runs (arrays: RUN/ITEM)")


def redact(text: str) -> str:
    """Hide the values of secret environment variables in text shown to users."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, f"<{name}>")
    return text


def print_logs(sdir: Path, entry: dict[str, Any], run_id: str, item: str | None, *, tail: int | None = None) -> int:
    """Print the newest attempt's stdout and stderr of one run (every item of an array, or
    ``item``), each file under a ``==> path <==`` header; ``tail``: only its last lines.
    Secrets in the environment are shown as ``<NAME>``."""
    paths = log_files(sdir, entry, item)
    if not paths:
        what = f"{run_id}/{item}" if item else run_id
        never = not _job_ids(entry, item)
        raise LaunchError(f"{what}: no log files in {sdir / entry['paths']['logs']}"
                          + ("; it was never submitted (scaling resume STUDY runs it)" if never else ""))
    out = sys.stdout
    for n, path in enumerate(paths):
        lines = _read_lines(path)
        shown = lines[-tail:] if tail else lines
        cut = f" (last {len(shown)} of {len(lines)} lines)" if tail and len(lines) > len(shown) else ""
        out.write(("\n" if n else "") + f"==> {path} <=={cut}\n")
        for line in shown:
            out.write(redact(line) + "\n")
    out.flush()
    return 0


# ------------------------------------------------------------------------------ progress
SIGNALS_JSONL = "signals.jsonl"  # jobs/trainer_hooks.py SIGNALS_JSONL (one row per logged GRPO step)
SIGNALS_PARQUET = "signals.parquet"
TRAINING_STAGES = ("train", "sft")


@dataclass(frozen=True)
class JobProgress:
    """Where a training job is, read from the files it writes: ``step`` of ``total`` (0: unknown),
    the last ``metric`` (``reward`` of GRPO, ``loss`` of SFT) and ``value``, and the file it came from."""

    step: int
    total: int
    metric: str
    value: float | None
    source: str

    @property
    def text(self) -> str:
        of = f"/{self.total}" if self.total > 0 else ""
        value = f"  {self.metric} {self.value:.4g}" if self.value is not None and self.value == self.value else ""
        return f"step {self.step}{of}{value}"


def _tail_json_rows(path: Path, max_bytes: int = 64 << 10) -> list[dict[str, Any]]:
    """The JSON rows in the last ``max_bytes`` of a JSONL file (a torn line is skipped)."""
    import json

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines()[(1 if size > max_bytes else 0):]:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _from_signals(job_dir: Path) -> tuple[int, float | None] | None:
    rows = [r for r in _tail_json_rows(job_dir / SIGNALS_JSONL) if isinstance(r.get("step"), int)]
    if not rows and (job_dir / SIGNALS_PARQUET).is_file():  # a job that kept only the table
        try:
            import pyarrow.parquet as pq

            rows = pq.read_table(job_dir / SIGNALS_PARQUET, columns=["step", "reward_mean"]).to_pylist()
        except Exception:  # a torn or foreign file: no progress from it
            rows = []
    if not rows:
        return None
    last = max(rows, key=lambda r: int(r["step"]))
    value = last.get("reward_mean")
    return int(last["step"]), (float(value) if isinstance(value, (int, float)) else None)


def _from_trainer_state(job_dir: Path) -> tuple[int, int, str, float | None] | None:
    """(global_step, max_steps, metric, value) of the newest checkpoint's ``trainer_state.json``."""
    import json

    best: tuple[int, Path] | None = None
    try:
        for p in (job_dir / "checkpoints").glob("checkpoint-*"):
            suffix = p.name.rsplit("-", 1)[-1]
            if suffix.isdigit() and (p / "trainer_state.json").is_file() and (best is None or int(suffix) > best[0]):
                best = (int(suffix), p)
    except OSError:
        return None
    if best is None:
        return None
    try:
        state = json.loads((best[1] / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return None
    history = [h for h in state.get("log_history") or [] if isinstance(h, dict)]
    metric, value = "loss", None
    for h in reversed(history):
        for key in ("reward", "loss"):
            if isinstance(h.get(key), (int, float)):
                metric, value = key, float(h[key])
                break
        if value is not None:
            break
    return int(state.get("global_step") or best[0]), int(state.get("max_steps") or 0), metric, value


def _planned_steps(job_dir: Path, stage: str) -> int:
    """``train.max_steps`` or ``sft.max_steps`` from the run.yaml the launcher wrote (0: unknown)."""
    import yaml

    try:
        data = yaml.safe_load((job_dir / "run.yaml").read_text()) or {}
        steps = int(((data.get(stage) or {}).get("max_steps")) or 0)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return 0
    return max(0, steps)


def job_progress(job_dir: Path, stage: str) -> JobProgress | None:
    """Progress of a running training job (``stage`` train or sft) from what it has written: the
    newest of ``signals.jsonl`` (every logged GRPO step: step, reward) and the newest checkpoint's
    ``trainer_state.json`` (every save: global step, max steps, the last loss or reward), against
    the planned steps of its run.yaml. None before the first log or save. No process is asked."""
    if stage not in TRAINING_STAGES:
        return None
    sig = _from_signals(job_dir)
    st = _from_trainer_state(job_dir)
    if sig is None and st is None:
        return None
    total = _planned_steps(job_dir, stage) or (st[1] if st else 0)
    if sig is not None and (st is None or sig[0] >= st[0]):
        return JobProgress(sig[0], total, "reward", sig[1], SIGNALS_JSONL)
    assert st is not None
    return JobProgress(st[0], total, st[2], st[3], "trainer_state.json")


# ------------------------------------------------------------------------------ one line
def last_log_line(folder: Path, *, prefer_err: bool = False) -> str:
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


_EXC_MODULE_RE = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*(?::|$))")


def fit_cause(line: str, width: int) -> str:
    """A failure's cause in at most ``width`` characters: the exception's module path dropped
    (``JobError: ...``, not ``scaling.errors.JobError: ...``), then its fix kept when it has one,
    else its start (the exception type and what it says first)."""
    line = _EXC_MODULE_RE.sub("", line)
    if len(line) <= width or _FIX_RE.search(line):  # a fix is what the user must see (fit_log_line)
        return fit_log_line(line, width)
    return line[: max(0, width - 1)] + "…" if width > 0 else ""
