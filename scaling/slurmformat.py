"""Slurm's formats, both ways, as pure functions: what a job asks for, and how Slurm's answers read.

* ``executor_params(job, profile)``: pure renaming of a ``JobSpec`` + ``ClusterProfile`` into
  submitit ``AutoExecutor`` parameters (pinned by ``tests/golden/slurm/*.json``);
* ``dependency_string(ids)``: ``afterok:<id>:<id>``; ``sbatch_lines(script)``: the ``#SBATCH`` lines;
* ``secrets_in(text)``: the secret environment variables a script would leak;
* ``parse_gres_gpus``, ``parse_time_min``, ``parse_elapsed_s``: ``sinfo``/``squeue`` fields;
  ``SQUEUE_PENDING``, ``SQUEUE_RUNNING``, ``SACCT_STATES``: Slurm's job states in ours.

No process is started and submitit is not imported: ``slurm.py`` does both, with these.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .records import ClusterProfile, JobSpec
from .supervise import SECRET_ENV_VARS, SIGNAL_DELAY_CHECKPOINT_S

# Seconds between Slurm's warning signal and the kill. Checkpointable (training) jobs get more
# time so the largest sizes can write a ZeRO-3 checkpoint (supervise.SIGNAL_DELAY_CHECKPOINT_S);
# other jobs keep submitit's default of 90 s.
SIGNAL_DELAY_DEFAULT_S = 90
# sbatch options added to every job: a dependent job whose dependency failed is removed
# instead of pending forever ("DependencyNeverSatisfied"); `scaling resume` resubmits it.
_COMMON_SBATCH = {"kill-on-invalid-dep": "yes"}

SQUEUE_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD",
                  "SPECIAL_EXIT", "RESIZING"}
SQUEUE_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED"}
SACCT_STATES = {
    "COMPLETED": "succeeded", "FAILED": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed", "DEADLINE": "timeout", "TIMEOUT": "timeout", "CANCELLED": "cancelled",
    "PREEMPTED": "pending", "REVOKED": "cancelled",
}


# ------------------------------------------------------------------------ what a job asks for
def executor_params(job: JobSpec, profile: ClusterProfile) -> dict[str, Any]:
    """JobSpec resources + cluster facts -> submitit AutoExecutor parameters (pure).

    Generic names (``timeout_min``, ``mem_gb``, ``nodes``, ...) are submitit's; cluster facts
    become ``slurm_*`` parameters. Only set values appear, so the golden files stay readable.
    """
    r = job.resources
    params: dict[str, Any] = {
        "name": job.name,
        "nodes": int(r.nodes),
        "tasks_per_node": int(r.tasks_per_node),
        "cpus_per_task": int(r.cpus_per_task),
        "mem_gb": int(r.mem_gb),
        "timeout_min": int(r.timeout_min),
    }
    if r.gpus_per_node > 0:  # CPU-only jobs ask for no GPU gres at all
        params["gpus_per_node"] = int(r.gpus_per_node)
    for key in ("partition", "account", "qos", "constraint"):
        value = getattr(profile, key)
        if value:
            params[f"slurm_{key}"] = str(value)
    if profile.setup:
        params["slurm_setup"] = [str(line) for line in profile.setup]
    # checkpointable: the plan's lead for this job (capacity.stop_lead_s: longest step + checkpoint write)
    params["slurm_signal_delay_s"] = (int(job.signal_delay_s or SIGNAL_DELAY_CHECKPOINT_S) if job.checkpointable
                                      else SIGNAL_DELAY_DEFAULT_S)
    if job.array:
        params["slurm_array_parallelism"] = int(min(len(job.array), max(1, profile.array_parallelism)))
    additional: dict[str, Any] = dict(_COMMON_SBATCH)
    if job.checkpointable and profile.requeue:
        additional["requeue"] = True
    additional.update({str(k): v for k, v in profile.extra.items()})
    if profile.export:  # a named list instead of the whole environment (docs/launching.md)
        names = [str(n) for n in profile.export]
        if names != ["ALL"] and "SUBMITIT_EXECUTOR" not in names:  # srun inherits the list; submitit's
            names.append("SUBMITIT_EXECUTOR")  # job side needs this one (set by its sbatch script)
        additional["export"] = ",".join(names)
    params["slurm_additional_parameters"] = dict(sorted(additional.items()))
    return params


def sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def dependency_string(after_ids: list[str]) -> str | None:
    """``afterok:<id>:<id>``; array task ids are reduced to the array's id (waits for all tasks)."""
    ids = sorted({re.sub(r"^(\d+)_\d+$", r"\1", str(i)) for i in after_ids})
    return "afterok:" + ":".join(ids) if ids else None


def secrets_in(text: str, env: dict[str, str] | None = None) -> list[str]:
    """Names of secret environment variables whose value (or an assignment) appears in ``text``."""
    env = os.environ if env is None else env
    found = []
    for name in SECRET_ENV_VARS:
        value = env.get(name)
        if (value and len(value) >= 6 and value in text) or re.search(rf"\b{name}\s*=\s*\S", text):
            found.append(name)
    return found


# ------------------------------------------------------------------ how Slurm's answers read
def parse_gres_gpus(gres: str) -> int:
    """``gpu:8``, ``gpu:h100:8(S:0-1)``, ``gpu:a100:4,shard:8`` -> number of GPUs per node."""
    total = 0
    for part in gres.split(","):
        part = re.sub(r"\(.*?\)", "", part.strip())
        bits = part.split(":")
        if bits and bits[0] == "gpu" and len(bits) >= 2 and bits[-1].isdigit():
            total += int(bits[-1])
    return total


def parse_time_min(text: str) -> int | None:
    """Slurm time limits (``infinite``, ``1-00:00:00``, ``30:00``, ``60``) -> minutes."""
    text = text.strip()
    if not text or text.upper() in ("INFINITE", "UNLIMITED", "N/A"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 3:
        h, m, s = parts
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = 0, parts[0], 0
    return days * 1440 + h * 60 + m + (1 if s else 0)


def parse_elapsed_s(text: str) -> float | None:
    """squeue's elapsed time (``%M``: ``1:02``, ``2-03:04:05``) -> seconds."""
    t = parse_time_min(text) if text else None
    if t is None:
        return None
    bits = text.strip().split("-")[-1].split(":")
    seconds = int(bits[-1]) if len(bits) >= 2 else 0
    return float((t - (1 if seconds else 0)) * 60 + seconds)
