"""What every job body shares: reading its ``run.yaml`` (one reader, one set of messages).

``read_run(path, needs=("train",), why=...)`` returns the ``RunSpec`` the launcher wrote, validated
through the records schema, or raises a one-line ``JobError`` naming the file and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import JobError
from ..records import RunSpec, from_dict
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
