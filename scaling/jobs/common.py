"""What every job body shares: reading its ``run.yaml`` (one reader, one set of messages), the
start-up (its folders, the DONE check, the CPU thread count) and the ``python -m`` wrapper.

``read_run(path, needs=("train",), why=...)`` returns the ``RunSpec`` the launcher wrote, validated
through the records schema, or raises a one-line ``JobError`` naming the file and the fix.
``start_job(run_yaml, load, tag=...)`` is the first thing a job's ``main`` does;
``job_main(main, usage)`` is its ``if __name__ == "__main__":`` block.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import JobError, ScalingError
from ..records import RunSpec, from_dict
from ..durable import is_done
from ..studydir import study_ref


def read_run(run_yaml: str | os.PathLike[str], *, needs: tuple[str, ...] = (), why: str = "") -> RunSpec:
    """The RunSpec of a job; ``needs`` names the settings sections the stage cannot run without."""
    import yaml

    path = Path(run_yaml)
    if not path.is_file():
        raise JobError(f"{path}: run.yaml not found (the launcher writes it; run "
                       f"`scaling resume {study_ref(path.parent.parent.parent)}`)")
    try:
        run = from_dict(RunSpec, yaml.safe_load(path.read_text()))
    except Exception as exc:  # omegaconf validation: one line naming the file
        raise JobError(f"{path}: not a valid run spec: {str(exc).splitlines()[0]}") from exc
    missing = [name for name in needs if getattr(run, name) is None]
    if missing:
        raise JobError(f"{path}: stage {run.stage.value} has no {' or '.join(repr(m) for m in missing)} settings; {why}")
    return run


def limit_cpu_threads(run: RunSpec) -> int:
    """CPU jobs (``resources.gpus_per_node == 0``) use ``resources.cpus_per_task`` threads, so
    that the local launcher can run several at once on one machine without oversubscribing it
    (rule:cpu_jobs in scaling/capacity.py). GPU jobs are left alone. Returns the thread count set
    (0 = unchanged). Call before the first heavy torch operation of a job."""
    r = run.resources
    if r.gpus_per_node > 0 or r.cpus_per_task < 1:
        return 0
    import torch

    if torch.cuda.is_available():
        return 0
    torch.set_num_threads(int(r.cpus_per_task))
    return int(r.cpus_per_task)


@dataclass(frozen=True)
class StartedJob:
    """A job past its start-up: the RunSpec and its folders (``<study>/<size>/<stage>/``)."""

    run: RunSpec
    job_dir: Path
    study_dir: Path


def start_job(
    run_yaml: str | os.PathLike[str], load: Callable[[Any], RunSpec], *, tag: str | None
) -> StartedJob | None:
    """The start-up of a job body: None (after printing ``[tag] <job_dir> is already done``) when
    the job's DONE marker is there, else its RunSpec (``load(run_yaml)``, the job's reader) with
    the CPU thread count set (``limit_cpu_threads``). ``tag=None``: no DONE check here (the
    evaluation checks one per benchmark)."""
    job_dir = Path(run_yaml).resolve().parent
    study_dir = job_dir.parents[1]
    if tag is not None and is_done(job_dir):
        print(f"[{tag}] {job_dir} is already done")
        return None
    run = load(run_yaml)
    limit_cpu_threads(run)
    return StartedJob(run, job_dir, study_dir)


def job_main(main: Callable[..., Any], usage: str, *, max_args: int = 1, usage_exit: int = 1) -> None:
    """``python -m scaling.jobs.<job> RUN_YAML [ITEM]``: ``usage`` on stderr (exit ``usage_exit``)
    for a wrong argument count; a ``ScalingError`` as one ``error:`` line and its exit code."""
    args = sys.argv[1:]
    if not 1 <= len(args) <= max_args:
        print(usage, file=sys.stderr)
        sys.exit(usage_exit)
    try:
        main(*args)
    except ScalingError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
