"""accelerate / DeepSpeed configs per size: DDP for small dense sizes, ZeRO-3 with MoE leaf
modules for the MoE size, server-mode GPU reservation, CPU fallback."""

from __future__ import annotations

import json

import pytest
import yaml

from scaling.errors import JobError
from scaling.jobs.distributed import training_processes, write_accelerate_config
from scaling.records import ModelFacts, Resources, RunSpec, Stage, TrainSettings, VllmMode


def run_for(size, *, nodes=1, gpus=8, zero=0, experts=0, model_type="qwen3", vllm=VllmMode.colocate, tp=1):
    return RunSpec(
        study="s",
        run_id=f"{size}/train",
        size=size,
        stage=Stage.train,
        model=ModelFacts(size=size, model_type=model_type, num_experts=experts),
        model_source="x",
        train=TrainSettings(zero_stage=zero, vllm_mode=vllm),
        resources=Resources(nodes=nodes, gpus_per_node=gpus, tensor_parallel=tp),
    )


def load(path):
    return yaml.safe_load(path.read_text())


def test_small_dense_size_uses_plain_ddp_without_deepspeed(tmp_path):
    out = write_accelerate_config(run_for("0_6b"), tmp_path / "accelerate.yaml")
    cfg = load(out)
    assert cfg["distributed_type"] == "MULTI_GPU" and cfg["num_processes"] == 8
    assert cfg["mixed_precision"] == "bf16" and "deepspeed_config" not in cfg
    assert not (tmp_path / "accelerate.deepspeed.json").exists()


def test_zero2_size_writes_a_deepspeed_json_with_auto_batches(tmp_path):
    cfg = load(write_accelerate_config(run_for("8b", zero=2), tmp_path / "acc.yaml"))
    assert cfg["distributed_type"] == "DEEPSPEED"
    ds = json.loads((tmp_path / "acc.deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
    assert cfg["deepspeed_config"]["deepspeed_config_file"] == str(tmp_path / "acc.deepspeed.json")
    assert cfg["deepspeed_config"]["zero3_init_flag"] is False


def test_moe_size_on_two_nodes_with_zero3_marks_the_sparse_block_as_leaf(tmp_path):
    run = run_for("30b_a3b", nodes=2, zero=3, experts=128, model_type="qwen3_moe", vllm=VllmMode.server, tp=4)
    cfg = load(write_accelerate_config(run, tmp_path / "acc.yaml"))
    # 2 nodes x (8 GPUs - 4 for the vLLM server on node 0): accelerate starts as many per node
    assert cfg["num_machines"] == 2 and cfg["num_processes"] == 8
    assert cfg["deepspeed_config"]["deepspeed_moe_layer_cls_names"] == "Qwen3MoeSparseMoeBlock"
    assert cfg["deepspeed_config"]["zero3_init_flag"] is True
    ds = json.loads((tmp_path / "acc.deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_unknown_moe_type_under_zero3_names_the_fix(tmp_path):
    run = run_for("x", zero=3, experts=8, model_type="weird_moe")
    with pytest.raises(JobError, match="MOE_BLOCKS"):
        write_accelerate_config(run, tmp_path / "acc.yaml")


def test_server_mode_without_spare_gpus_is_an_error():
    with pytest.raises(JobError, match="colocate"):
        training_processes(run_for("14b", gpus=2, vllm=VllmMode.server, tp=2))


def test_cpu_run_gets_a_single_process_config(tmp_path):
    cfg = load(write_accelerate_config(run_for("0_1m", gpus=0, zero=3), tmp_path / "acc.yaml"))
    assert cfg["distributed_type"] == "NO" and cfg["num_processes"] == 1 and cfg["use_cpu"] is True
    assert not (tmp_path / "acc.deepspeed.json").exists()


# --- batch layout (jobs/train.py, pure): prompts_per_step × N completions per rollout batch
def _train_run(prompts, n, *, staleness=1, per_device=None, gpus=8, nodes=1):
    run = run_for("8b", gpus=gpus, nodes=nodes)
    run.train.prompts_per_step, run.train.num_generations = prompts, n
    run.train.off_policy_staleness, run.train.per_device_batch = staleness, per_device
    return run


def test_on_policy_batch_layout_covers_prompts_times_generations_per_step():
    from scaling.jobs.train_config import batch_layout

    per_device, accum, spg = batch_layout(_train_run(128, 24), world=8)
    assert per_device * accum * 8 == 128 * 24 and spg == accum and per_device <= 24


def test_off_policy_staleness_splits_one_rollout_batch_into_s_steps():
    from scaling.jobs.train_config import batch_layout

    per_device, accum, spg = batch_layout(_train_run(32, 24, staleness=4, per_device=4), world=8)
    assert (per_device, accum, spg) == (4, 6, 24)  # 768 completions / 4 steps / 8 GPUs = 24 = 4 × 6


def test_per_device_batch_that_does_not_divide_is_a_job_error():
    from scaling.jobs.train_config import batch_layout

    with pytest.raises(JobError, match="divisor"):
        batch_layout(_train_run(32, 24, per_device=5), world=8)


def test_cpu_jobs_limit_torch_threads_to_their_planned_cores():
    torch = pytest.importorskip("torch")
    from scaling.jobs.common import limit_cpu_threads

    before = torch.get_num_threads()
    try:
        run = RunSpec(study="s", run_id="a/train", size="a", stage=Stage.train, model=ModelFacts(size="a"),
                      model_source="x", resources=Resources(gpus_per_node=0, cpus_per_task=1))
        assert limit_cpu_threads(run) == 1 and torch.get_num_threads() == 1
        gpu = RunSpec(study="s", run_id="a/train", size="a", stage=Stage.train, model=ModelFacts(size="a"),
                      model_source="x", resources=Resources(gpus_per_node=1, cpus_per_task=8))
        assert limit_cpu_threads(gpu) == 0 and torch.get_num_threads() == 1  # GPU jobs: untouched
    finally:
        torch.set_num_threads(before)


def test_deepspeed_configs_keep_precision_in_the_json_and_launch_with_torchrun_per_node(tmp_path):
    """Issue 11 findings 1-2 (the real-accelerate check is tests/unit/test_accelerate_real_configs.py):
    no top-level mixed_precision beside deepspeed_config_file; multi-node uses the standard launcher."""
    for nodes in (1, 2):
        cfg = load(write_accelerate_config(run_for("8b", nodes=nodes, zero=3), tmp_path / f"acc{nodes}.yaml"))
        assert "mixed_precision" not in cfg
        assert cfg["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"
        ds = json.loads((tmp_path / f"acc{nodes}.deepspeed.json").read_text())
        assert ds["bf16"] == {"enabled": "auto"}
