"""Issue 22, finding 3, job side: the GRPOConfig the train job builds carries the plan's
importance-sampling mode and cap (TRL 1.16's own default is sequence_mask), and TRL's IS metrics,
under the names the installed TRL logs them, land in signals.parquet."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest

pytestmark = pytest.mark.integration

IS_LOGS = {  # TRL log key -> TrainSignal column
    "sampling/importance_sampling_ratio/min": "is_ratio_min",
    "sampling/importance_sampling_ratio/mean": "is_ratio_mean",
    "sampling/importance_sampling_ratio/max": "is_ratio_max",
    "sampling/sampling_logp_difference/mean": "logp_diff_mean",
    "sampling/sampling_logp_difference/max": "logp_diff_max",
}


def test_grpo_config_sets_the_is_mode_explicitly(tmp_path, tiny_qwen3_dir):
    from trl import GRPOConfig

    from scaling.jobs.train import load_run
    from scaling.jobs.train_config import make_grpo_config
    from tests.integration.test_train import write_run

    assert GRPOConfig.__dataclass_fields__["vllm_importance_sampling_mode"].default == "sequence_mask"  # TRL's
    run = load_run(write_run(tmp_path, tiny_qwen3_dir))
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, vllm_is_mode="token_truncate", vllm_is_cap=2.5))
    cfg = make_grpo_config(run, tmp_path, "cpu")
    assert cfg.vllm_importance_sampling_correction is True
    assert cfg.vllm_importance_sampling_mode == "token_truncate"
    assert cfg.vllm_importance_sampling_clip_max == 2.5


def test_the_metric_names_are_the_ones_trl_logs():
    from trl.trainer import grpo_trainer

    source = inspect.getsource(grpo_trainer)
    for key in IS_LOGS:
        assert f'"{key}"' in source, key


def test_is_metrics_go_into_signals_parquet(tmp_path):
    import pyarrow.parquet as pq
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from scaling.jobs.tiny import tiny_facts
    from scaling.jobs.trainer_hooks import SIGNALS_PARQUET, trainer_callbacks
    from scaling.records import RunSpec, Stage, TrainSettings

    run = RunSpec(study="t", run_id="0_1m/train", size="0_1m", stage=Stage.train, model=tiny_facts("0_1m"),
                  model_source="tiny", train=TrainSettings(), seed=0)
    signals_cb, _ = trainer_callbacks(run, tmp_path)
    state = TrainerState()
    args = TrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none")
    logs = {"reward": 0.5, "reward_std": 0.1, "kl": 0.0, "entropy": 1.0, "completions/mean_length": 10.0}
    for step, ratio in ((1, 0.8), (2, 1.2)):
        state.global_step = step
        values = {k: ratio + i / 10 for i, k in enumerate(IS_LOGS)}
        signals_cb.on_log(args, state, TrainerControl(), logs={**logs, **values})
    state.global_step = 3  # a step without vLLM metrics (transformers rollouts): NaN, not a crash
    signals_cb.on_log(args, state, TrainerControl(), logs=logs)
    rows = pq.read_table(tmp_path / SIGNALS_PARQUET).to_pylist()
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row, ratio in zip(rows, (0.8, 1.2)):
        for i, col in enumerate(IS_LOGS.values()):
            assert row[col] == pytest.approx(ratio + i / 10)
    assert all(math.isnan(rows[2][c]) for c in IS_LOGS.values())
