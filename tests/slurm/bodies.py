"""Trivial job bodies and a tiny plan builder for the launcher tests (unit, integration, slurm).

The bodies follow the real job contract (team.md): ``main(run_yaml)`` or ``main(run_yaml, item)``,
outputs inside the job directory, ``mark_done`` last. They are imported on the node by
``JobBody`` from their entry string (``tests.slurm.bodies:ok``), so the repository root must be
on the job's Python path: tests run from the repository root and export PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from scaling.durable import atomic_write_text, mark_done
from scaling.records import ClusterProfile, JobSpec, ModelFacts, Plan, Resources, RunSpec, Stage

REPO_ROOT = Path(__file__).resolve().parents[2]
M = "tests.slurm.bodies"


def _job_dir(run_yaml: str) -> Path:
    return Path(run_yaml).parent


def ok(run_yaml: str) -> None:
    """Write out.json (the time it ran and which deps were DONE then), then DONE."""
    d = _job_dir(run_yaml)
    study = d.parents[1]
    deps_done = sorted(str(p.parent.relative_to(study)) for p in study.glob("*/*/DONE"))
    atomic_write_text(d / "out.json", json.dumps({"t": time.time(), "deps_done": deps_done,
                                                  "secret_seen": bool(os.environ.get("HF_TOKEN"))}))
    mark_done(d, {"rows": 1})


def item(run_yaml: str, name: str) -> None:
    """One array item: writes <item>/out.json then <item>/DONE."""
    d = _job_dir(run_yaml) / name
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "out.json", json.dumps({"item": name, "task": os.environ.get("SLURM_ARRAY_TASK_ID")}))
    mark_done(d, {"rows": 1})


def fail_first(run_yaml: str) -> None:
    """Fails on its first attempt (leaves a marker), succeeds on the next: a flaky job."""
    d = _job_dir(run_yaml)
    marker = d / "attempted"
    if not marker.exists():
        marker.write_text("1")
        raise RuntimeError("planned failure on the first attempt")
    ok(run_yaml)


def item_fail_first(run_yaml: str, name: str) -> None:
    """Array item that fails once when its name starts with 'bad'."""
    d = _job_dir(run_yaml) / name
    d.mkdir(parents=True, exist_ok=True)
    if name.startswith("bad") and not (d / "attempted").exists():
        (d / "attempted").write_text("1")
        raise RuntimeError(f"planned failure of item {name}")
    item(run_yaml, name)


def slow(run_yaml: str) -> None:
    """Sleeps (SCALING_TEST_SLEEP_S or 30 s) unless a previous attempt was killed, then ok."""
    d = _job_dir(run_yaml)
    starts = d / "starts"
    n = int(starts.read_text()) if starts.exists() else 0
    starts.write_text(str(n + 1))
    if n == 0:
        time.sleep(float(os.environ.get("SCALING_TEST_SLEEP_S", "30")))
    ok(run_yaml)


def boom(run_yaml: str) -> None:
    raise RuntimeError("this body always fails")


def no_done(run_yaml: str) -> None:
    """Returns normally but forgets DONE: must count as failed."""
    atomic_write_text(_job_dir(run_yaml) / "out.json", "{}")


# ------------------------------------------------------------------------------ plans
@dataclass
class FakeStudy:
    """What launch() reads of a Study: name, runs_dir, to_yaml()."""

    name: str
    runs_dir: str = "runs"

    def to_yaml(self) -> str:
        return f"name: {self.name}\nsource: tests/slurm/bodies.py\n"


def job(run_id: str, entry: str, *, after: list[str] | None = None, array: list[str] | None = None,
        gpus: int = 0, cpus: int = 1, mem_gb: int = 1, timeout_min: int = 5, nodes: int = 1,
        checkpointable: bool = False, study: str = "s") -> tuple[RunSpec, JobSpec]:
    res = Resources(nodes=nodes, gpus_per_node=gpus, cpus_per_task=cpus, mem_gb=mem_gb, timeout_min=timeout_min)
    size, stage = run_id.split("/")
    st = Stage.train if stage == "train" else Stage.eval if stage.startswith("eval") else Stage.curate
    run = RunSpec(study=study, run_id=run_id, size=size, stage=st, model=ModelFacts(size=size),
                  model_source="none", resources=res)
    spec = JobSpec(name=f"{study}.{size}.{stage}", run_id=run_id, entry=f"{M}:{entry}", after=list(after or []),
                   array=list(array or []), resources=res, checkpointable=checkpointable)
    return run, spec


def plan(study: str, specs: list[tuple[RunSpec, JobSpec]], profile: ClusterProfile | None = None) -> Plan:
    return Plan(study=study, profile=profile or ClusterProfile(name="test"), runs=[r for r, _ in specs],
                jobs=[j for _, j in specs], gpu_hours=0.0)


def small_study(study: str, *, train: str = "ok", evals: str = "item", profile: ClusterProfile | None = None,
                gpus: int = 0) -> Plan:
    """Two sizes: <size>/train -> <size>/eval-trained (array of two items), plus one eval-base."""
    specs = []
    for size in ("a", "b"):
        specs.append(job(f"{size}/eval-base", evals, array=["x", "y"], study=study, gpus=gpus))
        specs.append(job(f"{size}/train", train, study=study, gpus=gpus))
        specs.append(job(f"{size}/eval-trained", evals, after=[f"{size}/train"], array=["x", "y"], study=study,
                         gpus=gpus))
    return plan(study, specs, profile)


def checkpointing(run_yaml: str) -> None:
    """A training-like body honouring the train contract: resumes from checkpoints/checkpoint-*,
    and on SIGUSR1 saves a checkpoint and exits. Runs ~60 s unless resumed."""
    import signal
    import sys

    d = _job_dir(run_yaml)
    ckpt = d / "checkpoints"
    starts = d / "starts"
    starts.write_text(str(int(starts.read_text()) + 1 if starts.exists() else 1))
    if sorted(ckpt.glob("checkpoint-*")):
        atomic_write_text(d / "out.json", json.dumps({"resumed_from": sorted(p.name for p in ckpt.glob("checkpoint-*"))}))
        mark_done(d, {"steps": 2})
        return
    got: list[int] = []
    signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    (d / "running").write_text("1")
    for _ in range(600):
        if got:
            ckpt.mkdir(exist_ok=True)
            (ckpt / "checkpoint-1").mkdir(exist_ok=True)
            print("saved checkpoint-1 after SIGUSR1", flush=True)
            sys.exit(128 + signal.SIGUSR1)
        time.sleep(0.1)
    ok(run_yaml)
