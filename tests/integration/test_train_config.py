"""make_grpo_config maps every recipe knob to TRL's GRPOConfig (in the integration tier only
because importing TRL takes tens of seconds on the shared CPU)."""

from __future__ import annotations

import pytest

from scaling.errors import JobError
from scaling.records import (
    Finetune,
    LossType,
    ModelFacts,
    Resources,
    RewardSpec,
    RunSpec,
    Shaping,
    Stage,
    TrainSettings,
    VllmMode,
)

pytestmark = pytest.mark.integration


def run_for(**train_kw):
    t = dict(
        rollout_limit=8192,
        num_generations=24,
        prompts_per_step=128,
        learning_rate=1e-6,
        max_steps=640,
        finetune=Finetune.full,
        vllm_mode=VllmMode.colocate,
    )
    t.update(train_kw)
    return RunSpec(
        study="s",
        run_id="0_6b/train",
        size="0_6b",
        stage=Stage.train,
        model=ModelFacts(size="0_6b", model_type="qwen3"),
        model_source="Qwen/Qwen3-0.6B",
        train=TrainSettings(**t),
        resources=Resources(nodes=1, gpus_per_node=8),
        seed=3,
    )


def test_paper_settings_reach_grpo_config_on_cpu(tmp_path):
    from scaling.jobs.train_config import make_grpo_config

    run = run_for(prompts_per_step=2, num_generations=4, rollout_limit=64, report_to=["tensorboard"])
    cfg = make_grpo_config(run, tmp_path, "cpu")
    assert cfg.num_generations == 4 and cfg.max_completion_length == 64
    assert cfg.learning_rate == 1e-6 and cfg.beta == 0.001
    assert cfg.epsilon == 0.2 and cfg.epsilon_high == 0.28
    assert cfg.loss_type == "dapo" and cfg.scale_rewards == "group"
    assert cfg.temperature == 0.6 and cfg.max_steps == 640 and cfg.seed == 3
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 2 * 4
    assert cfg.steps_per_generation == cfg.gradient_accumulation_steps  # on-policy
    assert cfg.use_vllm is False and cfg.use_cpu is True and not cfg.bf16  # CPU: transformers generate
    assert cfg.output_dir == str(tmp_path / "checkpoints")
    assert cfg.report_to == ["tensorboard"]


def test_staleness_and_loss_type_are_configurable(tmp_path):
    from scaling.jobs.train_config import make_grpo_config

    run = run_for(prompts_per_step=4, num_generations=4, off_policy_staleness=2, loss_type=LossType.grpo)
    cfg = make_grpo_config(run, tmp_path, "cpu")
    assert cfg.loss_type == "grpo"
    assert cfg.steps_per_generation == 2 * cfg.gradient_accumulation_steps
    assert cfg.generation_batch_size == 4 * 4


def test_group_shaping_refuses_groups_split_across_processes(tmp_path, monkeypatch):
    from scaling.jobs.train_config import make_grpo_config

    monkeypatch.setenv("WORLD_SIZE", "8")
    run = run_for(prompts_per_step=4, num_generations=4, reward=RewardSpec(shaping=Shaping.kimi))
    with pytest.raises(JobError, match="whole groups"):
        make_grpo_config(run, tmp_path, "cuda")
