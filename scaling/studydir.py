"""Layout of ``runs/<study>/``, atomic writes, the lock, the manifest, DONE markers, safe names.

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

Every write of results goes to a temporary file in the same directory, is fsync'ed, and is
renamed over the target (``os.replace``), so a crash leaves either the old file or the new one.
Readers trust only directories with a ``DONE`` marker (``is_done``); ``resume`` reruns exactly
the runs whose directories lack one.

This module imports the standard library only (yaml/pyarrow lazily, inside the helpers).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import LaunchError

DONE = "DONE"
LOCK = ".lock"
MANIFEST = "manifest.json"
STUDY_YAML = "study.yaml"
PLAN_JSON = "plan.json"
RUN_YAML = "run.yaml"
LOGS = "logs"

MANIFEST_VERSION = 1
_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
# Files above this size are hashed by (size, first and last _SAMPLE_BYTES): reading a 60 GB
# checkpoint end to end only to fingerprint it would cost minutes per job (labelled default).
_FULL_HASH_MAX_BYTES = 256 * 1024**2
_SAMPLE_BYTES = 8 * 1024**2
# A lock held by another host is considered stale after this long: launch/resume/cancel hold the
# lock only while they submit (seconds), never while waiting (labelled default).
_STALE_LOCK_S = 3600.0


# ------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_table(path: str | os.PathLike[str], table) -> None:  # pyarrow.Table
    """Write a pyarrow Table as Parquet atomically (schema metadata preserved)."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- names
def safe_name(name: str, *, what: str = "study name") -> str:
    """Return ``name`` if it is a valid study name (``[a-z0-9_-]+``), else raise LaunchError.

    Study names become directory names under ``runs/`` and parts of Slurm job names, so
    anything that could escape the directory (``..``, ``/``) or confuse a shell is refused
    rather than silently rewritten: two different names must never map to one directory.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.strip("-_") == "":
        shown = repr(name)
        raise LaunchError(
            f"{what} {shown} is not allowed: use lowercase letters, digits, '_' and '-' only "
            "(e.g. qwen3-ladder); set `name:` in the recipe"
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
    if p.is_dir() and (p / MANIFEST).exists():
        return p
    if os.sep in str(name_or_path) or str(name_or_path).startswith("."):
        if p.is_dir():
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


# ---------------------------------------------------------------------------- DONE
def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= _FULL_HASH_MAX_BYTES:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f"sampled:{size}:".encode())
            h.update(fh.read(_SAMPLE_BYTES))
            fh.seek(size - _SAMPLE_BYTES)
            h.update(fh.read(_SAMPLE_BYTES))
    return h.hexdigest()


def _output_files(d: Path) -> list[Path]:
    """Files that make up a job's outputs: everything except DONE, logs, checkpoints,
    hidden/temporary files and nested directories that carry their own DONE (array items)."""
    out: list[Path] = []
    for root, dirs, files in os.walk(d):
        rootp = Path(root)
        keep = []
        for name in sorted(dirs):
            if name in (LOGS, "checkpoints") or name.startswith("."):
                continue
            if (rootp / name / DONE).exists():
                continue
            keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            if name == DONE or name.startswith(".") or name.endswith(".tmp"):
                continue
            out.append(rootp / name)
    return out


def content_hash(d: str | os.PathLike[str]) -> str:
    """sha256 over (relative path, size, file digest) of a job's output files."""
    d = Path(d)
    h = hashlib.sha256()
    for f in _output_files(d):
        rel = f.relative_to(d).as_posix()
        h.update(f"{rel}\0{f.stat().st_size}\0{_file_digest(f)}\n".encode())
    return h.hexdigest()


def _parquet_rows(d: Path) -> dict[str, int]:
    rows: dict[str, int] = {}
    files = [f for f in _output_files(d) if f.suffix == ".parquet"]
    if not files:
        return rows
    import pyarrow.parquet as pq

    for f in files:
        rows[f.relative_to(d).as_posix()] = int(pq.ParquetFile(f).metadata.num_rows)
    return rows


def mark_done(d: str | os.PathLike[str], info: dict[str, Any] | None = None) -> Path:
    """Write ``d/DONE`` LAST, after every output of the job is in place.

    DONE is JSON: ``time`` (UTC), ``rows`` (row count per Parquet file, read from the footers),
    ``files`` (number of output files), ``content_hash`` (see ``content_hash``) and whatever the
    job passes in ``info`` (e.g. steps, problems). Its presence is the only thing collect and
    resume trust.
    """
    d = Path(d)
    if not d.is_dir():
        raise LaunchError(f"{d}: cannot mark done, the directory does not exist")
    record: dict[str, Any] = {
        "time": _now(),
        "host": socket.gethostname(),
        "rows": _parquet_rows(d),
        "files": len(_output_files(d)),
        "content_hash": content_hash(d),
    }
    for k, v in (info or {}).items():  # the job's own counts come first; time and hash stay ours
        if k not in ("time", "content_hash"):
            record[k] = v
    path = d / DONE
    atomic_write_json(path, record)
    return path


def is_done(d: str | os.PathLike[str]) -> bool:
    """True when ``d/DONE`` exists and is a readable DONE record."""
    return read_done(d) is not None


def read_done(d: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The DONE record of ``d``, or None when absent or unreadable (a torn write never counts)."""
    path = Path(d) / DONE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "time" in data else None


# ------------------------------------------------------------------------------ lock
def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine (also when owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            return not pid_alive(int(lock.get("pid", -1)))
        except (TypeError, ValueError):
            return True
    return now - float(lock.get("since", 0)) > _STALE_LOCK_S


@contextlib.contextmanager
def study_lock(sdir: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Hold ``<study>/.lock`` (pid, host, command, time) while submitting; refuse when another
    live process holds it; take over a stale one."""
    sdir = Path(sdir)
    sdir.mkdir(parents=True, exist_ok=True)
    path = sdir / LOCK
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time(),
              "time": _now()}
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
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
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
    if data.get("version") != MANIFEST_VERSION:
        raise LaunchError(f"{path}: manifest version {data.get('version')} unknown; this scaling reads {MANIFEST_VERSION}")
    return data


def new_manifest(study: str, executor: str) -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, "study": study, "executor": executor, "created": _now(),
            "updated": _now(), "runs": {}}


def update_manifest(sdir: str | os.PathLike[str], fn: Callable[[dict[str, Any]], None],
                    *, create: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read-modify-write manifest.json under an flock, written atomically.

    ``fn`` mutates the manifest in place. ``create`` is the manifest to start from when none
    exists yet (else a missing manifest is an error).
    """
    sdir = Path(sdir)
    sdir.mkdir(parents=True, exist_ok=True)
    with open(sdir / ".manifest.lock", "a+") as lk:
        fcntl.flock(lk.fileno(), fcntl.LOCK_EX)
        try:
            data = read_manifest(sdir)
            if data is None:
                if create is None:
                    raise LaunchError(f"{sdir}: no {MANIFEST}; this study was never launched (run `scaling launch`)")
                data = create
            fn(data)
            data["updated"] = _now()
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

    from .records import to_dict

    path = run_dir(sdir, run.run_id) / RUN_YAML
    atomic_write_text(path, yaml.safe_dump(to_dict(run), sort_keys=False))
    return path


def run_is_done(sdir: str | os.PathLike[str], run_id: str, items: list[str] | None = None) -> bool:
    """A single job is done when its directory is; an array when every item directory is."""
    rd = run_dir(sdir, run_id)
    if items:
        return all(is_done(item_dir(rd, it)) for it in items)
    return is_done(rd)
