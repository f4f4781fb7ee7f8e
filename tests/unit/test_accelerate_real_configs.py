"""Every accelerate YAML / DeepSpeed JSON the planner writes for recipes/qwen3-ladder.yaml, read by
the REAL libraries: accelerate's own ``launch`` argument handling (``launch_command_parser``,
``_validate_launch_command``, ``prepare_deepspeed_cmd_env`` / ``prepare_multi_gpu_env``), then
``trl.GRPOConfig`` built by ``make_grpo_config`` under the environment ``accelerate launch`` hands
its workers (DeepSpeedPlugin reads it), then DeepSpeed's own ``DeepSpeedConfig`` on the JSON with
the Trainer's "auto" values filled by transformers' ``HfTrainerDeepSpeedConfig``.

What is emulated (this machine has no GPU): transformers' "does this setup support bf16 on GPU"
probe answers yes, the per-worker variable torchrun would add (WORLD_SIZE) is set by hand
without RANK/LOCAL_RANK, so no process group is started, and ``TrainingArguments.world_size``
returns it (the real property asks that process group). Everything else is the libraries' code.

Findings of issue 11 pinned here: (1) top-level ``mixed_precision`` next to
``deepspeed_config_file`` made DeepSpeedPlugin raise "When using `deepspeed_config_file`, the
following accelerate config variables will be ignored"; (2) multi-node DeepSpeed fell back to
accelerate's default pdsh launcher (``deepspeed --hostfile None --launcher pdsh``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]


def _ladder_train_runs():
    from scaling.plan import make_plan
    from scaling.recipe import load_study

    plan = make_plan(load_study(ROOT / "recipes" / "qwen3-ladder.yaml"))
    return [r for r in plan.runs if r.stage.value == "train"]


TRAIN_RUNS = _ladder_train_runs()


def _slurm_env(run, node: int = 0) -> dict[str, str]:
    n = int(run.resources.nodes)
    return {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": f"gpu[1-{n}]" if n > 1 else "gpu1",
            "SLURM_NODEID": str(node)}


def _accelerate_launch(run, job_dir: Path, node: int = 0):
    """The project's command for this node, parsed and prepared by accelerate's launch code.
    Returns (args, launcher command or None for torchrun, the workers' environment)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    from scaling.jobs.distributed import write_accelerate_config
    from scaling.jobs.multinode import accelerate_command

    cfg = write_accelerate_config(run, job_dir / "accelerate.yaml")
    cmd = accelerate_command(run, _slurm_env(run, node), str(cfg), run_yaml=str(job_dir / "run.yaml"))
    assert cmd[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(cmd[2:])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # what accelerate's launch_command does before deepspeed_launcher
        fields = list(defaults.deepspeed_config.keys()) if defaults else []
        if mp_from_config:
            fields.append("mixed_precision")
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        launcher, env = prepare_deepspeed_cmd_env(args)
    else:
        launcher, env = None, prepare_multi_gpu_env(args)
    return args, launcher, env


@pytest.fixture
def gpu_bf16(monkeypatch):
    """A GPU worker as seen by TrainingArguments: bf16 supported, and ``world_size`` = the
    WORLD_SIZE torchrun gives it (the real property asks the process group, absent here)."""
    import transformers
    import transformers.training_args as TA

    monkeypatch.setattr(TA, "is_torch_bf16_gpu_available", lambda *a, **k: True)
    monkeypatch.setattr(transformers.TrainingArguments, "world_size",
                        property(lambda self: int(os.environ.get("WORLD_SIZE", "1"))))


@pytest.mark.parametrize("run", TRAIN_RUNS, ids=lambda r: r.size)
def test_grpo_config_builds_under_accelerate_launch_env_for_every_ladder_size(run, tmp_path, monkeypatch, gpu_bf16):
    from scaling.jobs.train_config import make_grpo_config

    args, launcher, env = _accelerate_launch(run, tmp_path)
    zero = int(run.train.zero_stage or 0)
    assert bool(args.use_deepspeed) == (zero > 0)
    for key in list(os.environ):
        if key.startswith(("ACCELERATE_", "FSDP_", "MASTER_", "WORLD_", "RANK", "LOCAL_RANK")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")) or key in ("MASTER_ADDR", "MASTER_PORT"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORLD_SIZE", str(args.num_processes))  # torchrun sets it in every worker
    config = make_grpo_config(run, tmp_path, "cuda")
    assert config.bf16 is True
    if zero:
        plugin = config.deepspeed_plugin
        assert plugin is not None and plugin.hf_ds_config.config["zero_optimization"]["stage"] == zero
        assert plugin.hf_ds_config.is_zero3() == (zero == 3)
    else:
        assert getattr(config, "deepspeed_plugin", None) is None


@pytest.mark.parametrize("run", [r for r in TRAIN_RUNS if r.resources.nodes > 1], ids=lambda r: r.size)
def test_multinode_sizes_use_torchrun_per_node_never_pdsh(run, tmp_path):
    args, launcher, env = _accelerate_launch(run, tmp_path, node=1)
    # accelerate's "standard" multi-node DeepSpeed launcher: torchrun on each node, no deepspeed/pdsh
    # command and no .deepspeed_env file with the whole environment in it
    assert launcher is None, f"accelerate would run {launcher}"
    assert int(args.nnodes) == run.resources.nodes and int(args.node_rank) == 1
    assert args.master_addr == "gpu1"
    assert int(args.nproc_per_node) * run.resources.nodes == int(args.num_processes)
    assert not (Path.cwd() / ".deepspeed_env").exists()


@pytest.mark.parametrize("run", [r for r in TRAIN_RUNS if r.train.zero_stage], ids=lambda r: r.size)
def test_deepspeed_json_passes_deepspeeds_own_config_class(run, tmp_path, monkeypatch, gpu_bf16):
    """The JSON after the HF Trainer fills its "auto" values (as deepspeed_init does), read by
    ``deepspeed.runtime.config.DeepSpeedConfig`` (world size 1 here: no process group, so the
    global train_batch_size is left for DeepSpeed to derive from micro batch x accumulation)."""
    pytest.importorskip("deepspeed")
    from types import SimpleNamespace

    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    from scaling.jobs.train_config import make_grpo_config

    _, _, env = _accelerate_launch(run, tmp_path)
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORLD_SIZE", str(run.resources.nodes * run.resources.gpus_per_node))
    args = make_grpo_config(run, tmp_path, "cuda")
    hf = HfTrainerDeepSpeedConfig(json.loads((tmp_path / "accelerate.deepspeed.json").read_text()))
    hf.trainer_config_process(args)
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=int(run.model.hidden_size or 1024)))
    hf.trainer_config_finalize(args, model, num_training_steps=int(args.max_steps))
    filled = dict(hf.config)
    assert "auto" not in json.dumps(filled), filled
    filled.pop("train_batch_size")
    ds = DeepSpeedConfig(filled)
    assert ds.zero_optimization_stage == int(run.train.zero_stage)
    assert ds.bfloat16_config.enabled if hasattr(ds, "bfloat16_config") else ds.bfloat16_enabled
    assert ds.gradient_accumulation_steps == args.gradient_accumulation_steps
    assert ds.train_micro_batch_size_per_gpu == args.per_device_train_batch_size
    if int(run.train.zero_stage) == 3:
        assert ds.zero_config.gather_16bit_weights_on_model_save is True
