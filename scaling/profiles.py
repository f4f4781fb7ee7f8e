"""Cluster profiles: ``slurm/profiles/<name>.yaml`` (or a path) -> a validated ``ClusterProfile``.

A profile is data, not a template (records.ClusterProfile lists the fields); ``study.profile``
or ``--profile`` names one. Standard library, yaml and omegaconf (through validate.py) only.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .errors import RecipeError, short
from .layers import REPO_ROOT, Loader, check_keys, did_you_mean, display_path
from .records import ClusterProfile
from .validate import omegaconf_error, structured


def profiles_dir() -> Path:
    """Where ``study.profile: <name>`` / ``--profile <name>`` are looked up."""
    return Path(os.environ.get("SCALING_PROFILES", REPO_ROOT / "slurm" / "profiles"))


def load_profile(name_or_path: str, *, src: str = "study.profile") -> ClusterProfile:
    """A cluster profile by name (``slurm/profiles/<name>.yaml``) or path, validated."""
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    if not (raw.endswith((".yaml", ".yml")) or "/" in raw):
        path = profiles_dir() / f"{raw}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in profiles_dir().glob("*.yaml"))
        raise RecipeError(f"unknown cluster profile {raw!r}{did_you_mean(raw, known)}; "
                          f"profiles live in {display_path(profiles_dir())}", path=src)
    loader = Loader()
    data = loader.read(path)
    shown = display_path(path)
    check_keys(data, ClusterProfile, "", shown)
    try:
        prof = structured(ClusterProfile, data)
    except Exception as err:
        raise omegaconf_error(err, {}, shown) from None
    for key in ("gpus_per_node", "max_nodes", "max_time_min", "cpus_per_node", "mem_per_node_gb", "array_parallelism"):
        minimum = 0 if key == "gpus_per_node" else 1
        if getattr(prof, key) < minimum:
            raise RecipeError(f"must be >= {minimum}, got {getattr(prof, key)}", path=shown, key=key)
    for name in prof.export:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise RecipeError(f"{short(name)} is not an environment variable name (sbatch --export=NAME,...); "
                              "list names only, never NAME=value", path=shown, key="export")
    for key in ("gpu_mem_gb", "gpu_tflops"):
        if not math.isfinite(getattr(prof, key)) or getattr(prof, key) < 0:
            raise RecipeError(f"must be a finite number >= 0, got {getattr(prof, key)}", path=shown, key=key)
    if not 0 <= prof.cpus_per_job <= prof.cpus_per_node:
        raise RecipeError(f"must be between 0 (the whole node) and cpus_per_node={prof.cpus_per_node}, "
                          f"got {prof.cpus_per_job}", path=shown, key="cpus_per_job")
    if prof.gpus_per_node > 0 and (prof.gpu_mem_gb <= 0 or prof.gpu_tflops <= 0):
        raise RecipeError("a GPU profile needs gpu_mem_gb and gpu_tflops > 0 (set gpus_per_node: 0 for CPU)",
                          path=shown, key="gpu_mem_gb" if prof.gpu_mem_gb <= 0 else "gpu_tflops")
    return prof
