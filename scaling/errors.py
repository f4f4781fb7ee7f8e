"""Errors a user can act on. The CLI prints ``str(err)`` on one line and exits 2.

Every message names the file and/or key path at fault and says how to fix it, e.g.
``recipes/qwen3-ladder.yaml: train.learing_rate: unknown key (did you mean learning_rate?)``.
Programming errors stay ordinary Python exceptions (and keep their tracebacks).
"""

from __future__ import annotations


class ScalingError(Exception):
    """Base class: a problem with the user's input or environment, reported in one line."""

    exit_code = 2

    def __str__(self) -> str:  # always a single line
        return " ".join(super().__str__().split("\n"))


class RecipeError(ScalingError):
    """A recipe (YAML) is malformed: unknown key, wrong type, bad value, missing include."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path, self.key, self.reason = path, key, message
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class PlanError(ScalingError):
    """The recipe is well-formed but its settings cannot be planned (incompatible or infeasible)."""


class LaunchError(ScalingError):
    """Submission, preflight, locking or study-directory problems."""


class JobError(ScalingError):
    """A job body cannot run with the RunSpec it was given (missing data, bad checkpoint...)."""


class FitError(ScalingError):
    """A trend fit failed or is degenerate (too few sizes, no variance...)."""


class RecordError(ScalingError):
    """A records file is missing, unmarked, or has an unknown schema version."""
