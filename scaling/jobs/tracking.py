"""The tracker setup of one training job (SFT or GRPO): where its logs go, its project and run
name, and the run id that keeps one run one curve across requeues.

``train.report_to`` / ``sft.report_to`` list trackio, tensorboard and/or wandb. Everything goes
inside the job directory (a job writes only there)::

    <job_dir>/tracking/run_id        the tracker run id: created on the first start, reused after
                                     a requeue or `scaling resume` (written atomically, once)
    <job_dir>/tracking/trackio/      trackio's local SQLite (TRACKIO_DIR), project = study name,
                                     run name = <size>-<stage>-<run id>, resume="allow"
    <job_dir>/tracking/tensorboard/  TensorBoard event files (TENSORBOARD_LOGGING_DIR); a requeue
                                     appends a new event file to the same directory
    <job_dir>/tracking/wandb/        W&B offline (WANDB_MODE=offline, WANDB_RUN_ID = run id,
                                     WANDB_RESUME=allow); only where wandb is installed

transformers' callbacks read these environment variables when the trainer is built (trackio
reads TRACKIO_DIR when it is first imported), so ``setup`` runs before the trainer.
``scaling/tracking_read.py`` reads the curves back.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..durable import atomic_write_text
from ..errors import JobError
from ..records import RunSpec

TRACKING_DIR = "tracking"
RUN_ID_FILE = "run_id"
TRACKERS = ("trackio", "tensorboard", "wandb")
# the package that makes each tracker work, and how to install it
_NEEDS = {"trackio": ("trackio", "pip install trackio"), "tensorboard": ("tensorboard", "pip install tensorboard"),
          "wandb": ("wandb", "pip install wandb")}


@dataclass(frozen=True)
class Tracking:
    """What a job's trainer config needs (``config_kwargs``) and the environment it exports."""

    report_to: tuple[str, ...]
    project: str
    run_name: str
    run_id: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def config_kwargs(self) -> dict[str, object]:
        """``report_to`` / ``run_name`` / ``project`` for TRL's GRPOConfig / SFTConfig."""
        return {"report_to": list(self.report_to) or "none", "run_name": self.run_name, "project": self.project}

    def export(self) -> None:
        """Put ``env`` into ``os.environ`` (before the trainer is built)."""
        os.environ.update(self.env)


def tracking_root(job_dir: str | os.PathLike[str]) -> Path:
    return Path(job_dir) / TRACKING_DIR


def run_id(job_dir: str | os.PathLike[str]) -> str:
    """The job's tracker run id: read from ``tracking/run_id``, or created there once.

    Created atomically and exclusively (a hard link of a complete temp file: two ranks starting
    at once agree on the first one written), so every attempt of the job logs to the same run.
    """
    path = tracking_root(job_dir) / RUN_ID_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{RUN_ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        atomic_write_text(tmp, secrets.token_hex(6) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another rank (or attempt) wrote it first: use that one
        finally:
            tmp.unlink(missing_ok=True)
    rid = path.read_text(encoding="utf-8").strip()
    if not rid or not all(c.isalnum() or c in "-_" for c in rid):
        raise JobError(f"{path}: not a tracker run id ({rid[:40]!r}); delete the file to start a new run")
    return rid


def run_name(run: RunSpec, rid: str) -> str:
    stage = getattr(run.stage, "value", run.stage)
    return f"{run.size}-{stage}-{rid}"


def setup(run: RunSpec, job_dir: str | os.PathLike[str], report_to: list[str]) -> Tracking:
    """The tracking of this job: the loggers asked for, pointed into ``<job_dir>/tracking/``.

    Refuses (JobError, one line) a logger this module does not set up, or one whose package is
    not installed. With no logger, no file is written and ``report_to`` is "none".
    """
    wanted = tuple(dict.fromkeys(r for r in report_to if r and r != "none"))
    for r in wanted:
        if r not in TRACKERS:
            raise JobError(f"{run.run_id}: report_to {r!r} is not set up by the jobs; use {', '.join(TRACKERS)} or none")
        module, fix = _NEEDS[r]
        if importlib.util.find_spec(module) is None:
            raise JobError(f"{run.run_id}: report_to names {r} but it is not installed; run `{fix}` or drop it")
    root = tracking_root(job_dir).resolve()
    if not wanted:
        return Tracking(report_to=(), project=run.study, run_name=run_name(run, "none"), run_id="", root=root)
    rid = run_id(job_dir)
    env: dict[str, str] = {}
    if "trackio" in wanted:
        env["TRACKIO_DIR"] = str(root / "trackio")
        _check_trackio_dir(run, root / "trackio")
    if "tensorboard" in wanted:
        env["TENSORBOARD_LOGGING_DIR"] = str(root / "tensorboard")
    if "wandb" in wanted:
        (root / "wandb").mkdir(parents=True, exist_ok=True)
        env.update(WANDB_MODE="offline", WANDB_DIR=str(root / "wandb"), WANDB_RUN_ID=rid, WANDB_RESUME="allow",
                   WANDB_PROJECT=run.study)
    return Tracking(report_to=wanted, project=run.study, run_name=run_name(run, rid), run_id=rid, root=root, env=env)


def _check_trackio_dir(run: RunSpec, want: Path) -> None:
    """trackio fixes its directory when first imported: a process that imported it for another
    directory (two jobs in one process, the debug executor) would log elsewhere."""
    utils = sys.modules.get("trackio.utils")
    if utils is not None and Path(getattr(utils, "TRACKIO_DIR", want)).resolve() != want:
        raise JobError(
            f"{run.run_id}: trackio was already imported in this process for {utils.TRACKIO_DIR}; "
            "run the job in its own process (the local executor) or drop trackio from report_to"
        )
