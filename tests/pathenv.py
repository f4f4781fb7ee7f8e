"""A PATH with no Slurm client on it: what a laptop (or a fresh CI machine before the slurm
tier installs Slurm) has, built from this machine's real PATH, whatever this machine has.

Slurm's client commands live in /usr/bin beside everything else, so PATH cannot simply drop a
directory: ``path_without_slurm`` makes one directory of symlinks to every executable on the
current PATH (first one wins, as the shell's lookup does) except Slurm's commands, and returns
it as the whole PATH. Nothing is mocked: ``shutil.which("sbatch")`` really finds nothing, and a
Slurm command run by name really fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# every command Debian's slurm-client / slurmctld / slurmd ship (and munge, which they call)
SLURM_COMMANDS = frozenset({
    "sacct", "sacctmgr", "salloc", "sattach", "sbatch", "sbcast", "scancel", "scontrol", "scrontab",
    "sdiag", "sh5util", "sinfo", "sprio", "squeue", "sreport", "srun", "sshare", "sstat", "strigger",
    "sview", "slurmctld", "slurmd", "slurmdbd", "slurmstepd", "munge", "unmunge", "munged", "remunge",
})


def path_without_slurm(where: Path, path: str | None = None) -> str:
    """``where/bin`` holding the executables of ``path`` (default: $PATH) minus Slurm's; returns
    the new PATH value (that one directory). The running interpreter's own directory comes first,
    so ``python`` and ``scaling`` are this test run's (a venv's, not a pyenv shim's)."""
    bin_dir = where / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    dirs = [str(Path(sys.executable).parent), *(path if path is not None else os.environ.get("PATH", "")).split(os.pathsep)]
    for d in dirs:
        if not d or not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            name = entry.name
            if name in SLURM_COMMANDS or (bin_dir / name).exists() or (bin_dir / name).is_symlink():
                continue
            try:
                if entry.is_file() and os.access(entry.path, os.X_OK):
                    (bin_dir / name).symlink_to(entry.path)
            except OSError:
                continue
    return str(bin_dir)
