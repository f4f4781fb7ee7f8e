"""Layout of ``runs/<study>/``, safe names, the lock, the manifest, the study and run files.

    runs/<study>/
      study.yaml        resolved recipe (every value) + provenance + code version
      plan.json         the Plan
      manifest.json     run_id -> job id, state, attempts, paths
      .lock             refuses a second live `launch` (pid, host, time)
      <size>/<stage>/   e.g. 8b/train, 8b/eval-base, 8b/eval-trained/<benchmark>
        run.yaml        the RunSpec this job executed (the job reads nothing else)
        logs/           submitit's folder (pickles, stdout/stderr)
        records.parquet | signals.parquet | model/ | checkpoints/
        DONE            written last: row counts + content hash

Every file here is written atomically and a run counts as finished only with its ``DONE``
marker: both are ``durable.py``'s, where every job and the analysis import them from.

This module imports the standard library only (yaml lazily, inside ``write_run_yaml``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .durable import LOGS, atomic_write_json, atomic_write_text, ensure_dir, is_done, utc_now
from .errors import LaunchError, storage_error
from .records import to_dict

LOCK = ".lock"
MANIFEST = "manifest.json"
STUDY_YAML = "study.yaml"
PLAN_JSON = "plan.json"
RUN_YAML = "run.yaml"

MANIFEST_VERSION = 1
MAX_NAME = 64  # study names: a directory and part of every scheduler job name (recipe.MAX_STUDY_NAME)
_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
# A lock held by another host is considered stale after this long: launch/resume/cancel hold the
# lock only while they submit (seconds), never while waiting (labelled default).
_STALE_LOCK_S = 3600.0


# ----------------------------------------------------------------------------- names
def safe_name(name: str, *, what: str = "study name") -> str:
    """Return ``name`` if it is a valid study name (``[a-z0-9_-]+``), else raise LaunchError.

    Study names become directory names under ``runs/`` and parts of Slurm job names, so
    anything that could escape the directory (``..``, ``/``) or confuse a shell is refused
    rather than silently rewritten: two different names must never map to one directory.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.strip("-_") == "" or len(name) > MAX_NAME:
        shown = repr(name) if len(str(name)) <= 80 else f"{str(name)[:60]!r}... ({len(str(name))} characters)"
        raise LaunchError(
            f"{what} {shown} is not allowed: use lowercase letters, digits, '_' and '-' only "
            f"(e.g. qwen3-ladder), at most {MAX_NAME} characters; set `name:` in the recipe"
        )
    return name


def job_name(study: str, run_id: str) -> str:
    """The scheduler job name of a run: ``<study>.<size>.<stage>`` with unsafe characters
    replaced (the name is only a label; ids and paths never derive from it)."""
    raw = f"{study}.{run_id.replace('/', '.')}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


def study_dir(name_or_path: str | os.PathLike[str], runs_dir: str | os.PathLike[str] = "runs") -> Path:
    """Resolve a study given by name (``runs_dir/<name>``) or by an existing directory path."""
    p = Path(name_or_path)
    # os.path answers False for a name the file system refuses (too long); Path.is_dir raises
    if os.path.isdir(p) and os.path.exists(p / MANIFEST):
        return p
    if os.sep in str(name_or_path) or str(name_or_path).startswith("."):
        if os.path.isdir(p):
            return p
        raise LaunchError(f"{name_or_path}: no such study directory; give a study name or a directory under runs/")
    return Path(runs_dir) / safe_name(str(name_or_path))


def run_dir(sdir: str | os.PathLike[str], run_id: str) -> Path:
    """``<study>/<size>/<stage>``; the run id must have exactly one slash and safe parts."""
    parts = run_id.split("/")
    if len(parts) != 2 or not all(re.match(r"^[A-Za-z0-9_.-]+$", x) and x not in (".", "..") for x in parts):
        raise LaunchError(f"run id {run_id!r} is not '<size>/<stage>' with safe parts; fix the plan")
    return Path(sdir) / parts[0] / parts[1]


def item_dir(job_dir: str | os.PathLike[str], item: str) -> Path:
    """Output directory of one array item (e.g. a benchmark) inside its job directory."""
    if not re.match(r"^[A-Za-z0-9_.-]+$", item) or item in (".", ".."):
        raise LaunchError(f"array item {item!r} is not a safe directory name; rename it in the recipe")
    return Path(job_dir) / item


# ------------------------------------------------------------------------------ lock
def pid_alive(pid: int, start: int | None = None) -> bool:
    """True when a process with this pid exists on this machine (also when owned by another user)
    and, when ``start`` is given, it is the same process: its start time (``pid_start_time``)
    matches, so a recycled pid is not mistaken for the process recorded earlier."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    if start is not None:
        now = pid_start_time(pid)
        if now is not None and now != int(start):
            return False
    return True


def pid_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), which
    with the pid identifies one process; None where /proc is not available or it has gone."""
    try:
        raw = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def read_lock(sdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(sdir) / LOCK).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lock_is_stale(lock: dict[str, Any], *, now: float | None = None) -> bool:
    """A lock is stale when its process is gone (same host) or it is very old (other host)."""
    now = time.time() if now is None else now
    if lock.get("host") == socket.gethostname():
        try:
            start = lock.get("pid_start")
            return not pid_alive(int(lock.get("pid", -1)), None if start is None else int(start))
        except (TypeError, ValueError):
            return True
    return now - float(lock.get("since", 0)) > _STALE_LOCK_S


@contextlib.contextmanager
def study_lock(sdir: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Hold ``<study>/.lock`` (pid, host, command, time) while submitting; refuse when another
    live process holds it; take over a stale one."""
    sdir = ensure_dir(sdir)
    path = sdir / LOCK
    record = {"pid": os.getpid(), "pid_start": pid_start_time(os.getpid()), "host": socket.gethostname(),
              "command": command, "since": time.time(), "time": utc_now()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read_lock(sdir)
            if held is None or lock_is_stale(held):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise LaunchError(
                f"{sdir}: study is locked by `scaling {held.get('command', '?')}` (pid {held.get('pid')} on "
                f"{held.get('host')}, since {held.get('time')}); wait for it to finish, or delete {path} if that "
                "process is gone"
            ) from None
        except OSError as err:
            raise storage_error(err, path, "cannot take the study lock") from None
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh)
        except OSError as err:
            with contextlib.suppress(OSError):
                path.unlink()
            raise storage_error(err, path, "cannot take the study lock") from None
        break
    else:
        raise LaunchError(f"{path}: could not take the study lock (another process keeps recreating it)")
    try:
        yield path
    finally:
        held = read_lock(sdir)
        if held and held.get("pid") == os.getpid() and held.get("host") == record["host"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def writer_lock(run_directory: str | os.PathLike[str], item: str | None = None) -> Iterator[Path]:
    """Refuse a second live writer of one run (or array item): held by the job body for its
    whole life (an ``flock`` on ``<run>/.writer.lock``, released by the kernel when the process
    dies, even by SIGKILL). A twin job (a duplicate submission) fails at once with a one-line
    error instead of writing into the same directory. Only task 0 / global rank 0 of a
    multi-process job takes it (the other ranks of the same job are one writer)."""
    if os.environ.get("SLURM_PROCID", "0") != "0" or os.environ.get("RANK", "0") != "0":
        yield Path(run_directory)
        return
    d = ensure_dir(Path(run_directory) if item is None else item_dir(run_directory, item))
    path = d / ".writer.lock"
    try:
        fh = open(path, "a+")
    except OSError as err:
        raise storage_error(err, path, "cannot take the run's writer lock") from None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            held = fh.read().strip()[:200]
            raise LaunchError(f"{d}: another live job is writing this run ({held or 'holder unknown'}); this twin "
                              "stops without touching it (`scaling status` shows the live one)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()}"
                 f"{' (job ' + os.environ['SLURM_JOB_ID'] + ')' if os.environ.get('SLURM_JOB_ID') else ''}\n")
        fh.flush()
        try:
            yield d
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# -------------------------------------------------------------------------- manifest
def read_manifest(sdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The study's manifest.json, or None when the study was never launched."""
    path = Path(sdir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise LaunchError(f"{path}: unreadable manifest ({err}); restore it or relaunch under a new name") from None
    except OSError as err:
        raise storage_error(err, path, "cannot read the manifest") from None
    _check_manifest_shape(data, path)
    return data


def _check_manifest_shape(data: Any, path: Path) -> None:
    """A manifest is a mapping with version, study and runs (run id -> a mapping with paths):
    anything else (a JSON list, a hand-edited file) is one line, never a traceback later."""
    fix = "restore it from a backup, or relaunch under a new study name"

    def bad(what: str) -> LaunchError:
        return LaunchError(f"{path}: not a scaling manifest ({what}); {fix}")

    if not isinstance(data, dict):
        raise bad(f"a JSON {type(data).__name__}, not an object")
    if data.get("version") != MANIFEST_VERSION:
        raise LaunchError(f"{path}: manifest version {str(data.get('version'))[:40]} unknown; this scaling reads "
                          f"{MANIFEST_VERSION}")
    if not isinstance(data.get("runs"), dict):
        raise bad("no 'runs' mapping")
    for run_id, e in data["runs"].items():
        if not isinstance(e, dict):
            raise bad(f"runs.{str(run_id)[:60]} is a {type(e).__name__}, not an object")
        paths = e.get("paths")
        if not isinstance(paths, dict) or not all(isinstance(paths.get(k), str) for k in ("dir", "logs")):
            raise bad(f"runs.{str(run_id)[:60]}.paths lacks dir/logs")
        run_dir(path.parent, str(run_id))  # a safe '<size>/<stage>' id, else LaunchError
        for key in ("item_ids", "item_attempts"):
            if key in e and not isinstance(e[key], dict):
                raise bad(f"runs.{str(run_id)[:60]}.{key} is not an object")
        if "items" in e and not isinstance(e["items"], list):
            raise bad(f"runs.{str(run_id)[:60]}.items is not a list")
        if "job" in e and not isinstance(e["job"], dict):
            raise bad(f"runs.{str(run_id)[:60]}.job is not an object")


def new_manifest(study: str, executor: str) -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, "study": study, "executor": executor, "created": utc_now(),
            "updated": utc_now(), "runs": {}}


def update_manifest(sdir: str | os.PathLike[str], fn: Callable[[dict[str, Any]], None],
                    *, create: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read-modify-write manifest.json under an flock, written atomically.

    ``fn`` mutates the manifest in place. ``create`` is the manifest to start from when none
    exists yet (else a missing manifest is an error).
    """
    sdir = ensure_dir(sdir)
    try:
        lk = open(sdir / ".manifest.lock", "a+")
    except OSError as err:
        raise storage_error(err, sdir / ".manifest.lock") from None
    with lk:
        fcntl.flock(lk.fileno(), fcntl.LOCK_EX)
        try:
            data = read_manifest(sdir)
            if data is None:
                if create is None:
                    raise LaunchError(f"{sdir}: no {MANIFEST}; this study was never launched (run `scaling launch`)")
                data = create
            fn(data)
            data["updated"] = utc_now()
            atomic_write_json(sdir / MANIFEST, data)
        finally:
            fcntl.flock(lk.fileno(), fcntl.LOCK_UN)
    return data


def run_entry(sdir: str | os.PathLike[str], run_id: str, *, items: list[str] | None = None) -> dict[str, Any]:
    """A fresh manifest entry for one run: paths relative to the study directory."""
    rd = run_dir(sdir, run_id)
    rel = rd.relative_to(sdir).as_posix()
    return {
        "job_id": None,
        "item_ids": {},
        "state": "not_submitted",
        "attempts": 0,
        "history": [],
        "paths": {"dir": rel, "run_yaml": f"{rel}/{RUN_YAML}", "logs": f"{rel}/{LOGS}"},
        "items": list(items or []),
    }


# ------------------------------------------------------------------ study/plan/run files
def write_study_files(sdir: str | os.PathLike[str], study: Any, plan_json: str) -> None:
    """study.yaml (``Study.to_yaml()``) and plan.json, atomically."""
    sdir = Path(sdir)
    atomic_write_text(sdir / STUDY_YAML, study.to_yaml())
    atomic_write_text(sdir / PLAN_JSON, plan_json)


def write_run_yaml(sdir: str | os.PathLike[str], run: Any) -> Path:
    """``<study>/<size>/<stage>/run.yaml`` from a RunSpec (``records.to_dict`` as YAML)."""
    import yaml

    path = run_dir(sdir, run.run_id) / RUN_YAML
    atomic_write_text(path, yaml.safe_dump(to_dict(run), sort_keys=False))
    return path


def run_is_done(sdir: str | os.PathLike[str], run_id: str, items: list[str] | None = None) -> bool:
    """A single job is done when its directory is; an array when every item directory is."""
    rd = run_dir(sdir, run_id)
    if items:
        return all(is_done(item_dir(rd, it)) for it in items)
    return is_done(rd)


def study_ref(sdir: Path) -> str:
    """How a printed hint names a study so that it runs as printed: the bare name when the study
    lives in ./runs (every command's default), else the name with ``--runs-dir``."""
    default = Path("runs").resolve() / sdir.name
    try:
        if Path(sdir).resolve() == default:
            return sdir.name
    except OSError:
        pass
    return f"{sdir.name} --runs-dir {shlex.quote(str(Path(sdir).parent))}"
