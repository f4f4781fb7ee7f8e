"""Layout of ``runs/<study>/``, atomic writes, the lock, the manifest, DONE markers, safe names.

    runs/<study>/
      study.yaml        resolved recipe (every value) + provenance + code version
      plan.json         the Plan
      manifest.json     run_id -> job id, state, attempts, paths
      .lock             refuses a second live `launch`
      <size>/<stage>/   e.g. 8b/train, 8b/eval-base, 8b/eval-trained/<benchmark>
        run.yaml        the RunSpec this job executed (the job reads nothing else)
        logs/           submitit's folder (pickles, stdout/stderr)
        records.parquet | signals.parquet | model/ | checkpoints/
        DONE            written last: row counts + content hash

Every write of results goes to a temporary file in the same directory, is fsync'ed, and is
renamed over the target (``os.replace``), so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
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
