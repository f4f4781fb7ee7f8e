"""A training job's curves read back from its tracker files (``<job_dir>/tracking/``, written by
``scaling/jobs/tracking.py``): trackio's local SQLite (stdlib ``sqlite3``) and TensorBoard event
files (tensorboard's ``EventAccumulator``, imported inside the function). No torch.

Metric names are the trainer's, as the transformers callbacks write them: ``train/loss``,
``train/reward``. Steps are the trainer's global step (trackio: its ``train/global_step``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

TRACKING_DIR = "tracking"  # = jobs/tracking.TRACKING_DIR (jobs/ is not imported here: no torch)
RUN_ID_FILE = "run_id"


def tracking_dirs(job_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The tracker directories this job wrote: {"trackio": dir, "tensorboard": dir, "wandb": dir}."""
    root = Path(job_dir) / TRACKING_DIR
    return {name: root / name for name in ("trackio", "tensorboard", "wandb") if (root / name).is_dir()}


def stored_run_id(job_dir: str | os.PathLike[str]) -> str | None:
    p = Path(job_dir) / TRACKING_DIR / RUN_ID_FILE
    return p.read_text(encoding="utf-8").strip() if p.is_file() else None


def trackio_databases(trackio_dir: str | os.PathLike[str]) -> list[Path]:
    """One SQLite file per trackio project."""
    return sorted(Path(trackio_dir).glob("*.db"))


def trackio_runs(db: str | os.PathLike[str]) -> list[dict[str, object]]:
    """[{run_id, run_name, rows}] of one trackio project database, in first-logged order."""
    with _ro(db) as con:
        rows = con.execute(
            "SELECT run_id, run_name, COUNT(*), MIN(id) FROM metrics GROUP BY run_id, run_name ORDER BY MIN(id)"
        ).fetchall()
    return [{"run_id": r[0], "run_name": r[1], "rows": int(r[2])} for r in rows]


def trackio_metric(db: str | os.PathLike[str], metric: str, run_name: str | None = None) -> list[tuple[int, float]]:
    """(step, value) of ``metric`` in logging order (``run_name``: that run only). The step is the
    trainer's ``train/global_step`` where it was logged, else trackio's own step."""
    sql = "SELECT step, metrics FROM metrics" + (" WHERE run_name = ?" if run_name is not None else "") + " ORDER BY id"
    with _ro(db) as con:
        rows = con.execute(sql, () if run_name is None else (run_name,)).fetchall()
    out = []
    for step, text in rows:
        m = json.loads(text)
        if metric in m and isinstance(m[metric], (int, float)):
            out.append((int(m.get("train/global_step", step)), float(m[metric])))
    return out


def trackio_steps(db: str | os.PathLike[str], run_name: str) -> list[int]:
    """trackio's own step column of one run (a resumed run continues it)."""
    with _ro(db) as con:
        return [int(r[0]) for r in con.execute("SELECT step FROM metrics WHERE run_name = ? ORDER BY id", (run_name,))]


def tensorboard_metric(logdir: str | os.PathLike[str], tag: str) -> list[tuple[int, float]]:
    """(step, value) of scalar ``tag`` from every event file in ``logdir`` (oldest file first)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return []
    return [(int(e.step), float(e.value)) for e in acc.Scalars(tag)]


def tensorboard_event_files(logdir: str | os.PathLike[str]) -> list[Path]:
    return sorted(Path(logdir).glob("events.out.tfevents.*"))


def where_curves_are(job_dir: str | os.PathLike[str]) -> list[str]:
    """One line per tracker of a job: where its curves are and the command that shows them (the
    trackio project is the database's name: the study name, as trackio spells it on disk)."""
    out = []
    dirs = tracking_dirs(job_dir)
    if "trackio" in dirs:
        for db in trackio_databases(dirs["trackio"]):
            out.append(f"trackio: `TRACKIO_DIR={dirs['trackio']} trackio show --project {db.stem}`")
    if "tensorboard" in dirs:
        out.append(f"TensorBoard: `tensorboard --logdir {dirs['tensorboard']}`")
    if "wandb" in dirs:
        out.append(f"W&B (offline): `wandb sync {dirs['wandb']}/wandb/offline-run-*`")
    return out


def study_curves(study_dir: str | os.PathLike[str]) -> list[str]:
    """``<size>/<stage>: <where>`` for every SFT/GRPO job of a study that wrote tracker files."""
    out = []
    for job in sorted(Path(study_dir).glob(f"*/*/{TRACKING_DIR}")):
        for line in where_curves_are(job.parent):
            out.append(f"{job.parent.parent.name}/{job.parent.name}: {line}")
    return out


def _ro(db: str | os.PathLike[str]) -> closing[sqlite3.Connection]:
    """Read-only; trackio keeps its database in WAL mode, which a reader does not disturb."""
    return closing(sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True, timeout=10))
