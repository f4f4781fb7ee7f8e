"""The distributed command a training job runs on its allocation (pure; unit-tested).

A multi-GPU or multi-node training job is ONE submission with ONE task per node (submitit
runs ``srun`` with ``nodes x tasks_per_node`` tasks). On every node the task starts
``accelerate launch`` with that node's rank, which spawns one worker per local GPU:

    accelerate launch --config_file <job>/accelerate.yaml --num_processes 16 --num_machines 2
        --machine_rank $SLURM_NODEID --main_process_ip <first host of $SLURM_JOB_NODELIST>
        --main_process_port <port> -m scaling.jobs.train <job>/run.yaml

This is the pattern of accelerate's and TRL's Slurm examples (one ``accelerate launch`` per
node, rendezvous at the first node). The main address is the first host of
``SLURM_JOB_NODELIST``, expanded by a pure parser here (``scontrol show hostnames`` gives the
same answer; ``hostnames(..., use_scontrol=True)`` asks it). The port is ``MASTER_PORT`` when
set, else ``29500 + SLURM_JOB_ID % 1000`` so two jobs sharing a node do not collide (labelled
default, not from a paper).

With ``vllm_mode: server`` node 0 also runs ``trl vllm-serve`` on its last ``tensor_parallel`` GPUs
and training uses the remaining GPUs of every node (``worker_processes``).

    >>> expand_nodelist("gpu-[01-02,05],login1")
    ['gpu-01', 'gpu-02', 'gpu-05', 'login1']
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from ..errors import JobError
from ..records import VllmMode
from .distributed import write_accelerate_config

BASE_PORT = 29500
VLLM_PORT = 8000  # trl vllm-serve's default port (GRPOConfig.vllm_server_port default)
TRAIN_MODULE = "scaling.jobs.train"


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [p.strip() for p in out if p.strip()]


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a Slurm hostlist (``node[01-03,7]``, ``a[1-2]-ib[0-1]``, ``x,y``) into host names."""
    hosts: list[str] = []
    for group in _split_top(nodelist.strip()):
        m = re.search(r"\[([^\]]+)\]", group)
        if not m:
            hosts.append(group)
            continue
        prefix, suffix = group[: m.start()], group[m.end():]
        tails = expand_nodelist(suffix) if "[" in suffix else [suffix]
        for rng in m.group(1).split(","):
            if "-" in rng:
                lo, hi = rng.split("-", 1)
                width = len(lo)
                for i in range(int(lo), int(hi) + 1):
                    hosts += [f"{prefix}{i:0{width}d}{t}" for t in tails]
            else:
                hosts += [f"{prefix}{rng}{t}" for t in tails]
    return hosts


def hostnames(nodelist: str, *, use_scontrol: bool = False) -> list[str]:
    """Hosts of a nodelist; ``use_scontrol`` asks ``scontrol show hostnames`` instead of parsing."""
    if use_scontrol:
        res = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=False)
        if res.returncode == 0 and res.stdout.strip():
            return res.stdout.split()
    return expand_nodelist(nodelist)


def main_port(env: Mapping[str, str]) -> int:
    if env.get("MASTER_PORT"):
        return int(env["MASTER_PORT"])
    job = re.sub(r"\D", "", str(env.get("SLURM_JOB_ID", "0"))) or "0"
    return BASE_PORT + int(job) % 1000


def accelerate_command(run: Any, env: Mapping[str, str], config_file: str, *, run_yaml: str | None = None,
                       module: str = TRAIN_MODULE) -> list[str]:
    """``accelerate launch`` for this node of the job, from the RunSpec's resources and the Slurm env.

    ``run_yaml`` defaults to ``run.yaml`` beside ``config_file`` (both live in the job directory).
    Raises JobError when the environment does not match the resources (e.g. a 2-node run
    started outside a 2-node allocation), so a misconfigured job fails at once, not at rendezvous.
    """
    res = run.resources
    nodes, gpus = int(res.nodes), int(res.gpus_per_node)
    if gpus < 1:
        raise JobError(f"{run.run_id}: accelerate launch needs gpus_per_node >= 1 (got {gpus})")
    run_yaml = run_yaml or str(Path(config_file).parent / "run.yaml")
    cmd = ["accelerate", "launch", "--config_file", str(config_file), "--num_processes", str(nodes * gpus),
           "--num_machines", str(nodes)]
    if nodes > 1:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise JobError(f"{run.run_id}: {nodes}-node run but SLURM_JOB_NODELIST is not set; submit it with "
                           "scaling launch (one task per node)")
        hosts = expand_nodelist(nodelist)
        if len(hosts) != nodes:
            raise JobError(f"{run.run_id}: resources say {nodes} nodes but the allocation has {len(hosts)} ({nodelist})")
        rank = int(env.get("SLURM_NODEID", "-1"))
        if not 0 <= rank < nodes:
            raise JobError(f"{run.run_id}: SLURM_NODEID={env.get('SLURM_NODEID')!r} is not a node rank in 0..{nodes - 1}")
        cmd += ["--machine_rank", str(rank), "--main_process_ip", hosts[0], "--main_process_port", str(main_port(env)),
                "--rdzv_backend", "static", "--same_network"]
    else:
        cmd += ["--machine_rank", "0", "--main_process_port", str(main_port(env))]
    return cmd + ["-m", module, run_yaml]


def _visible_gpus(env: Mapping[str, str], gpus: int) -> list[str]:
    vis = [g for g in str(env.get("CUDA_VISIBLE_DEVICES", "")).split(",") if g.strip()]
    return vis if len(vis) >= gpus else [str(i) for i in range(gpus)]


def _server_mode(run: Any) -> bool:
    return getattr(getattr(run, "train", None), "vllm_mode", None) == VllmMode.server  # a str-enum: "server" too


def vllm_server_command(run: Any, model_path: str, port: int = VLLM_PORT) -> list[str]:
    """``trl vllm-serve`` for ``vllm_mode: server``: the rollout engine on ``tensor_parallel`` GPUs of node 0
    (TRL's GRPOTrainer connects to it and pushes weights after each step)."""
    tp = max(1, int(run.resources.tensor_parallel))
    cmd = ["trl", "vllm-serve", "--model", model_path, "--tensor_parallel_size", str(tp), "--port", str(port)]
    t = getattr(run, "train", None)
    if t is not None and t.rollout_limit:
        cmd += ["--max_model_len", str(int(t.max_prompt_length) + int(t.rollout_limit))]
    return cmd


def worker_processes(run: Any, env: Mapping[str, str], job_dir: str | Path, *, entry: str,
                     model_path: str | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """The processes a checkpointable job starts on this node: ``[(role, command, extra_env)]``.

    * one GPU or CPU: one Python process calling the entry;
    * several GPUs (train): ``accelerate launch`` (config from ``jobs.distributed``);
    * ``vllm_mode: server``: node 0 also starts ``trl vllm-serve`` on its last ``tensor_parallel``
      GPUs; training uses the other GPUs of EVERY node (symmetric, because ``accelerate launch``
      starts the same number of processes per machine), and finds the server at the first host
      (``SCALING_VLLM_HOST``).
    """
    job_dir = Path(job_dir)
    run_yaml = str(job_dir / "run.yaml")
    nodes, gpus = int(run.resources.nodes), int(run.resources.gpus_per_node)
    module = entry.partition(":")[0]
    if nodes * gpus <= 1 or module != TRAIN_MODULE:
        code = "import sys; from scaling.supervise import run_entry; run_entry(sys.argv[1], sys.argv[2], None)"
        return [("worker", [sys.executable, "-u", "-c", code, entry, run_yaml], {})]
    config = job_dir / "accelerate.yaml"
    write_accelerate_config(run, str(config))
    out: list[tuple[str, list[str], dict[str, str]]] = []
    if not _server_mode(run):
        return [("worker", accelerate_command(run, env, str(config), run_yaml=run_yaml), {})]
    tp = max(1, int(run.resources.tensor_parallel))
    if tp >= gpus:
        raise JobError(f"{run.run_id}: vllm_mode=server needs gpus_per_node > tensor_parallel ({gpus} <= {tp}); "
                       "use vllm_mode=colocate or more GPUs per node")
    visible = _visible_gpus(env, gpus)
    train_gpus, server_gpus = visible[: gpus - tp], visible[gpus - tp: gpus]
    rank = int(env.get("SLURM_NODEID", "0") or 0)
    extra: dict[str, str] = {"CUDA_VISIBLE_DEVICES": ",".join(train_gpus)}
    if nodes > 1:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
        extra["SCALING_VLLM_HOST"] = expand_nodelist(nodelist)[0] if nodelist else "127.0.0.1"
    if rank == 0:
        if not model_path:
            raise JobError(f"{run.run_id}: vllm_mode=server needs the model path to serve")
        out.append(("server", vllm_server_command(run, model_path), {"CUDA_VISIBLE_DEVICES": ",".join(server_gpus)}))
    shrunk = _with_gpus(run, gpus - tp)
    out.append(("worker", accelerate_command(shrunk, env, str(config), run_yaml=run_yaml), extra))
    return out


def _with_gpus(run: Any, gpus: int) -> Any:
    return dataclasses.replace(run, resources=dataclasses.replace(run.resources, gpus_per_node=gpus))


def worker_command(run: Any, env: Mapping[str, str], job_dir: str | Path, *, entry: str) -> list[str]:
    """The single worker command of a job without a vLLM server (see ``worker_processes``)."""
    procs = worker_processes(run, env, job_dir, entry=entry, model_path="-")
    return next(cmd for role, cmd, _ in procs if role == "worker")
