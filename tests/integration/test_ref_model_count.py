"""Issue 22, finding 1, against TRL itself: build TRL 1.16's GRPOTrainer on a tiny Qwen3 with
beta > 0, beta = 0 and LoRA, count the models TRL builds (``trainer.ref_model``), and check that
capacity counts a reference model exactly where TRL builds one, of the size and dtype TRL gives it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scaling import capacity
from scaling.paramcount import GIB, resolve_facts
from scaling.records import Finetune

pytestmark = pytest.mark.integration


def _trainer(tmp_path: Path, model_dir: str, *, beta: float, finetune: str, device_kwargs: str = "cpu"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.jobs.train import load_run, masking_trainer_class
    from scaling.jobs.train_config import lora_config, make_grpo_config, reference_model_kwargs
    from scaling.rewards import ShapedReward
    from tests.integration.test_train import write_run

    run_yaml = write_run(tmp_path, model_dir, finetune=finetune)
    run = load_run(run_yaml)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, beta=beta))
    config = make_grpo_config(run, run_yaml.parent, "cpu")
    # what make_grpo_config passes on a GPU (the CPU config cannot say bf16=True without one)
    config.model_init_kwargs = reference_model_kwargs(run, device_kwargs)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")  # model_dtype's DDP choice
    import datasets

    data = datasets.Dataset.from_list([{"prompt": "1+1=", "answer": "2", "id": "a"}] * 4)
    reward = ShapedReward(run.train.reward, 24, run.train.num_generations, require_think_end=False,
                          think_end="</think>", eos_token_ids=[tok.eos_token_id], tokenizer=tok)
    trainer = masking_trainer_class()(model=model, reward_funcs=[reward], args=config, train_dataset=data,
                                      processing_class=tok,
                                      peft_config=lora_config(run) if finetune == "lora" else None)
    return run, trainer


@pytest.mark.parametrize("beta, finetune", [(0.001, "full"), (0.0, "full"), (0.001, "lora")])
def test_capacity_counts_a_reference_model_exactly_where_trl_builds_one(tmp_path, tiny_qwen3_dir, beta, finetune):
    run, trainer = _trainer(tmp_path, tiny_qwen3_dir, beta=beta, finetune=finetune)
    facts = resolve_facts(run.model)
    for zero in (0, 2, 3):
        planned = capacity.reference_model_gb(facts, finetune=Finetune(finetune), zero_stage=zero, num_gpus=1, beta=beta)
        assert (planned > 0) == (trainer.ref_model is not None), (zero, beta, finetune)
    if trainer.ref_model is not None:
        n = sum(p.numel() for p in trainer.ref_model.parameters())
        assert n == facts.params_total  # a whole second model, as counted by paramcount
        assert trainer.ref_model is not trainer.model


def test_on_gpu_the_reference_model_is_bf16_beside_an_fp32_policy(tmp_path, tiny_qwen3_dir):
    """model_dtype loads an fp32 policy under DDP; TRL would build the reference in the policy's
    dtype (4 B/param) unless reference_model_kwargs names bf16, which capacity counts (2 B/param)."""
    import torch

    run, trainer = _trainer(tmp_path, tiny_qwen3_dir, beta=0.001, finetune="full", device_kwargs="cuda")
    assert next(trainer.model.parameters()).dtype == torch.float32
    assert {p.dtype for p in trainer.ref_model.parameters()} == {torch.bfloat16}
    facts = resolve_facts(run.model)
    ref_bytes = sum(p.numel() * p.element_size() for p in trainer.ref_model.parameters())
    assert ref_bytes / GIB == pytest.approx(
        capacity.reference_model_gb(facts, finetune=Finetune.full, zero_stage=0, num_gpus=1, beta=0.001))
