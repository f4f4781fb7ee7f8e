"""The accelerate (and DeepSpeed) configuration one training job needs, written next to run.yaml.

What it does: ``write_accelerate_config(run, path)`` turns the planned resources and
``train.zero_stage`` into an ``accelerate launch --config_file`` YAML: plain DDP
(``MULTI_GPU``) for zero_stage 0, DeepSpeed ZeRO-2/3 otherwise with a DeepSpeed JSON beside it
(``<path stem>.deepspeed.json``, batch sizes left "auto" so the HF Trainer fills them from
``GRPOConfig``; precision only there, as accelerate requires beside ``deepspeed_config_file``;
multi-node via torchrun on each node, ``deepspeed_multinode_launcher: standard``, never pdsh).
Checked by accelerate's and DeepSpeed's own code in tests/unit/test_accelerate_real_configs.py.
For a MoE model under ZeRO-3 the sparse MoE block is made a ZeRO-3 leaf
module (``deepspeed_moe_layer_cls_names``) so ranks whose tokens skip an expert do not hang
waiting for its parameters. CPU runs get a single-process ``NO`` config.

Process layout: one process per GPU. With ``vllm_mode: server`` the vLLM server (``trl
vllm-serve``, started by jobs/multinode.py) holds ``resources.tensor_parallel`` GPUs of node 0,
so training uses the rest. ``machine_rank``/``main_process_ip`` are placeholders that
``jobs/multinode.accelerate_command`` overrides per node from the Slurm environment.

Run it:  ``python -m scaling.jobs.distributed RUN_YAML OUT.yaml`` (prints the files written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..durable import atomic_write_text
from ..errors import JobError
from ..records import RunSpec, VllmMode
from .common import read_run

# Sparse MoE block class per config.json model_type (the unit ZeRO-3 must gather whole).
MOE_BLOCKS = {
    "qwen3_moe": "Qwen3MoeSparseMoeBlock",
    "qwen2_moe": "Qwen2MoeSparseMoeBlock",
    "mixtral": "MixtralSparseMoeBlock",
    "olmoe": "OlmoeSparseMoeBlock",
    "deepseek_v3": "DeepseekV3MoE",
}


def training_processes(run: RunSpec) -> int:
    """GPUs that run training processes: all GPUs, minus the vLLM server's in server mode.

    In server mode the server takes ``tensor_parallel`` GPUs of node 0, and training uses the
    other ``gpus_per_node - tensor_parallel`` GPUs of EVERY node, because ``accelerate launch``
    starts the same number of processes per machine (``jobs/multinode.worker_processes``)."""
    r = run.resources
    total = max(0, r.nodes * r.gpus_per_node)
    if total == 0:
        return 1
    mode = VllmMode(run.train.vllm_mode or VllmMode.none) if run.train else VllmMode.none
    if mode is VllmMode.server:
        total = max(0, r.nodes) * (r.gpus_per_node - max(1, r.tensor_parallel))
        if total < 1:
            raise JobError(
                f"{run.run_id}: vllm_mode=server needs GPUs beyond the server's tensor_parallel="
                f"{r.tensor_parallel}; raise resources.gpus_per_node or nodes, or use vllm_mode=colocate"
            )
    return total


def deepspeed_config(stage: int) -> dict[str, Any]:
    """A DeepSpeed JSON for ZeRO ``stage`` (2 or 3); "auto" values are filled by the Trainer."""
    if stage not in (2, 3):
        raise JobError(f"train.zero_stage={stage}: DeepSpeed is used for stages 2 and 3 only (0 = DDP)")
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 3:
        zero |= {
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,  # job_dir/model is a full HF checkpoint
            "sub_group_size": 1_000_000_000,
        }
    else:
        zero |= {"allgather_bucket_size": 500_000_000}
    return {
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "wall_clock_breakdown": False,
    }


def accelerate_config(run: RunSpec, deepspeed_file: str | None) -> dict[str, Any]:
    """The accelerate config dict (what ``write_accelerate_config`` writes as YAML)."""
    r = run.resources
    stage = int(run.train.zero_stage or 0) if run.train else 0
    procs = training_processes(run)
    base: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "num_machines": max(1, r.nodes),
        "num_processes": procs,
        "machine_rank": 0,
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "downcast_bf16": "no",
    }
    if r.gpus_per_node == 0:
        return base | {"distributed_type": "NO", "num_processes": 1, "num_machines": 1,
                       "mixed_precision": "no", "use_cpu": True}
    base |= {"use_cpu": False, "gpu_ids": "all"}
    if r.nodes > 1:
        base |= {"main_process_ip": "127.0.0.1", "main_process_port": 29500}  # overridden per node
    if stage == 0:
        return base | {"mixed_precision": "bf16", "distributed_type": "MULTI_GPU" if procs > 1 else "NO"}
    # DeepSpeed: precision lives in the JSON only ("bf16": auto, filled from GRPOConfig.bf16).
    # accelerate's DeepSpeedPlugin refuses a top-level mixed_precision next to
    # deepspeed_config_file ("... the following accelerate config variables will be ignored").
    # Multi-node: "standard" = torchrun on every node (one `accelerate launch` per Slurm task),
    # not accelerate's default pdsh, which ssh-es to a hostfile and dumps the environment
    # (tokens included) into ./.deepspeed_env.
    ds: dict[str, Any] = {"deepspeed_config_file": deepspeed_file, "zero3_init_flag": stage == 3,
                          "deepspeed_multinode_launcher": "standard"}
    if stage == 3 and run.model.num_experts > 0:
        block = MOE_BLOCKS.get(run.model.model_type)
        if block is None:
            raise JobError(
                f"{run.run_id}: ZeRO-3 on MoE model_type {run.model.model_type!r} needs its sparse block class; "
                f"known: {', '.join(sorted(MOE_BLOCKS))} (add it to scaling/jobs/distributed.py MOE_BLOCKS)"
            )
        ds["deepspeed_moe_layer_cls_names"] = block
    return base | {"distributed_type": "DEEPSPEED", "deepspeed_config": ds}


def write_accelerate_config(run: RunSpec, path: str | Path) -> Path:
    """Write the accelerate YAML (and its DeepSpeed JSON when ZeRO is on) atomically; returns path."""
    import yaml

    if run.train is None:
        raise JobError(f"{run.run_id}: an accelerate config is only written for train runs")
    path = Path(path)
    stage = int(run.train.zero_stage or 0)
    ds_file = None
    if stage and run.resources.gpus_per_node > 0:
        ds_path = path.with_name(path.stem + ".deepspeed.json")
        atomic_write_text(ds_path, json.dumps(deepspeed_config(stage), indent=2) + "\n")
        ds_file = str(ds_path)
    cfg = accelerate_config(run, ds_file)
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=True))
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m scaling.jobs.distributed RUN_YAML OUT.yaml", file=sys.stderr)
        return 2
    out = write_accelerate_config(read_run(args[0], needs=("train",), why="a train job needs them"), args[1])
    print(out)
    ds = out.with_name(out.stem + ".deepspeed.json")
    if ds.exists():
        print(ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

