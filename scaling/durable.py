"""Files that survive a crash: atomic writes and the DONE marker of a finished job.

Every write of results goes to a temporary file in the same directory, is fsync'ed, and is
renamed over the target (``os.replace``), so a crash leaves either the old file or the new one
(``atomic_path``, ``atomic_write_*``; ``clean_stale_tmp`` removes what a SIGKILL left behind).
Readers trust only directories with a ``DONE`` marker (``is_done``), which a job writes last
(``mark_done``: row counts and a content hash of its outputs); ``resume`` reruns exactly the
runs whose directories lack one.

What a job directory's outputs are (everything but ``logs/``, ``checkpoints/``, hidden files and
array items with their own DONE) is decided here; the study's layout is ``studydir.py``'s.
Standard library only (pyarrow lazily, inside the Parquet helpers).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import LaunchError, StorageError, storage_error

DONE = "DONE"
LOGS = "logs"  # submitit's folder in a job directory: logs, never outputs

# Files above this size are hashed by (size, first and last _SAMPLE_BYTES): reading a 60 GB
# checkpoint end to end only to fingerprint it would cost minutes per job (labelled default).
_FULL_HASH_MAX_BYTES = 256 * 1024**2
_SAMPLE_BYTES = 8 * 1024**2


# ------------------------------------------------------------------------- atomic writes
def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` that fails as one line (StorageError naming the path and the fix): a file
    where a directory should be, a read-only or full disk, a name too long, no permission."""
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except StorageError:
        raise
    except OSError as err:
        raise storage_error(err, d, "cannot create the directory") from None
    return d


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Any OSError of the write (full or read-only disk, a directory named like the target, ...)
    removes the temporary file, leaves the target as it was, and is raised as a one-line
    ``StorageError`` (an OSError too) naming the target."""
    target = Path(path)
    if os.path.isdir(target):  # (os.path.isdir answers False on ENAMETOOLONG; Path.is_dir raises)
        raise StorageError(f"{target}: is a directory; give a file name")
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as err:
        raise storage_error(err, target) from None
    tmp_path = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(err, OSError) and not isinstance(err, StorageError):
            raise storage_error(err, target) from None
        raise


def clean_stale_tmp(d: str | os.PathLike[str], *, older_than_s: float = 3600.0, recursive: bool = False) -> int:
    """Remove ``.<name>.*.tmp`` files left by a process killed inside ``atomic_path`` (SIGKILL
    skips its cleanup). Only files older than ``older_than_s`` (labelled default: 1 h, far
    longer than any single write) go, so a live writer's temporary file is never touched.
    Returns how many were removed."""
    d = Path(d)
    now = time.time()
    n = 0
    try:
        paths = d.rglob(".*.tmp") if recursive else d.glob(".*.tmp")
        for p in paths:
            with contextlib.suppress(OSError):
                if p.is_file() and now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    n += 1
    except OSError:
        return n
    return n


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


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second: the time stamps of DONE, the lock and the manifest."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
        "time": utc_now(),
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
