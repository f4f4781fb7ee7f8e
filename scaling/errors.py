"""Errors a user can act on. The CLI prints ``str(err)`` on one line and exits 2.

Every message names the file and/or key path at fault and says how to fix it, e.g.
``recipes/qwen3-ladder.yaml: train.learing_rate: unknown key (did you mean learning_rate?)``.
Programming errors stay ordinary Python exceptions (and keep their tracebacks).
"""

from __future__ import annotations


# The longest line an error may print (a message that echoes a huge value is cut here), and the
# longest echo of one user value inside a message (``short``). Labelled defaults: long enough for
# every message this package writes (the longest list known benchmarks or sizes), short enough
# that a hostile recipe cannot flood a terminal (issue 14: a 38 KB echoed alias expansion).
MAX_MESSAGE_CHARS = 1000
ECHO_MAX = 80


def short(value: object, limit: int = ECHO_MAX) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` and the full length when cut)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: max(0, limit - 3)]}... ({len(text)} characters)"


class ScalingError(Exception):
    """Base class: a problem with the user's input or environment, reported in one line."""

    exit_code = 2

    def __str__(self) -> str:  # always a single line, at most MAX_MESSAGE_CHARS
        text = " ".join(super().__str__().split("\n"))
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 20] + " ... (message cut)"
        return text


class RecipeError(ScalingError):
    """A recipe (YAML) is malformed: unknown key, wrong type, bad value, missing include."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path, self.key, self.reason = path, key, message
        if key and len(key) > 2 * ECHO_MAX:  # a hostile key is echoed cut, like any value
            key = key[: 2 * ECHO_MAX - 3] + "..."
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class PlanError(ScalingError):
    """The recipe is well-formed but its settings cannot be planned (incompatible or infeasible)."""


class LaunchError(ScalingError):
    """Submission, preflight, locking or study-directory problems."""


class JobError(ScalingError):
    """A job body cannot run with the RunSpec it was given (missing data, bad checkpoint...)."""


class WeightSyncError(JobError):
    """GRPO's rollout engine (colocated vLLM) does not hold the policy's weights after a weight
    sync: its rollouts would come from a stale policy (jobs/weight_sync.py)."""


class FitError(ScalingError):
    """A trend fit failed or is degenerate (too few sizes, no variance...)."""


class RecordError(ScalingError):
    """A records file is missing, unmarked, or has an unknown schema version."""


class StorageError(ScalingError, OSError):
    """A file or directory cannot be written or read (full or read-only disk, permissions, a file
    where a directory is expected, a name too long). Also an ``OSError``, so code that handles
    OSError keeps working; the CLI prints it in one line and exits 2."""

    def __str__(self) -> str:  # the message, not OSError's "[Errno N] ..." layout
        return " ".join(str(self.args[0] if self.args else "").split())[:MAX_MESSAGE_CHARS]


_ERRNO_FIXES = {
    "ENOSPC": "the disk is full; free space or use another --runs-dir / -o",
    "EDQUOT": "the disk quota is exceeded; free space or use another --runs-dir / -o",
    "EROFS": "the file system is read-only; use a writable --runs-dir / -o",
    "EACCES": "permission denied; fix the permissions or use another directory",
    "EPERM": "operation not permitted; fix the permissions or use another directory",
    "ENAMETOOLONG": "the name is too long; use a shorter study name or path",
    "ENOTDIR": "a file stands where a directory is expected; remove it or choose another path",
    "EISDIR": "a directory stands where a file is expected; give a file name",
    "EEXIST": "something already exists there; remove it or choose another path",
    "ENOENT": "no such file or directory; check the path",
    "ELOOP": "too many symbolic links; check the path",
}


def storage_error(err: OSError, path: object = None, action: str = "cannot write") -> StorageError:
    """An OSError from the file system -> a one-line StorageError naming the path and the fix."""
    import errno as _errno

    code = _errno.errorcode.get(err.errno or 0, "")
    where = path if path is not None else (err.filename or "")
    fix = _ERRNO_FIXES.get(code, "check the path and the disk")
    reason = err.strerror or type(err).__name__
    shown = str(where) if where else "?"
    if len(shown) > 200:
        shown = shown[:197] + "..."
    out = StorageError(f"{shown}: {action}: {reason}"
                       f"{f' ({code})' if code else ''}; {fix}")
    out.errno, out.filename = err.errno, err.filename
    return out
