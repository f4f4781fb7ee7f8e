"""Issue 22, finding 8: LoRA on a Qwen3-MoE adapts the routed experts.

In transformers 5 the experts are fused 3-D parameters (``mlp.experts.gate_up_proj`` (E, 2i, h),
``mlp.experts.down_proj`` (E, h, i)), not modules, so ``target_modules`` cannot reach them;
``train_config.lora_config`` targets them with peft's ``target_parameters``. peft 0.21 also warns
"rank_pattern keys did not match any targeted module and were ignored: ['.*\\.gate_up_proj']":
that check looks at module names only, while the pattern (rank 2r for the fused gate+up) is applied
to the wrapped parameter, as the adapter shapes below show."""

from __future__ import annotations

import pytest

from scaling.records import Finetune, RunSpec, Stage, TrainSettings

pytestmark = pytest.mark.integration

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_LINEAR = ATTENTION + ["gate_proj", "up_proj", "down_proj"]


def _run(targets: list[str], rank: int = 4) -> RunSpec:
    from scaling.jobs.tiny import tiny_facts

    return RunSpec(study="t", run_id="1_3m_a0_4m/train", size="1_3m_a0_4m", stage=Stage.train,
                   model=tiny_facts("1_3m_a0_4m"), model_source="tiny",
                   train=TrainSettings(finetune=Finetune.lora, lora_rank=rank, lora_alpha=2 * rank,
                                       lora_targets=list(targets)), seed=0)


def _peft_model(model_dir: str, run: RunSpec):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from scaling.jobs.train_config import lora_config

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return get_peft_model(model, lora_config(run))


def _expert_wrappers(peft_model) -> dict[str, object]:
    """parameter name ("layers.0.mlp.experts.gate_up_proj") -> the peft ParamWrapper around it."""
    from peft.tuners.lora import ParamWrapper

    out = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, ParamWrapper):
            layer = name.split("model.layers.")[1].split(".")[0]
            out[f"layers.{layer}.mlp.experts.{module.parameter_name}"] = module
    return out


@pytest.mark.parametrize("targets", [ALL_LINEAR, ATTENTION])
def test_every_moe_layer_gets_adapters_on_both_fused_expert_parameters(tiny_moe_dir, targets):
    from scaling import capacity
    from scaling.paramcount import resolve_facts

    run = _run(targets)
    pm = _peft_model(tiny_moe_dir, run)
    facts = resolve_facts(run.model)
    wrapped = _expert_wrappers(pm)
    want = {f"layers.{i}.mlp.experts.{p}" for i in range(facts.num_layers) for p in ("gate_up_proj", "down_proj")}
    assert set(wrapped) == want
    e, h, i, r = facts.num_experts, facts.hidden_size, facts.moe_intermediate_size, run.train.lora_rank
    for name, w in wrapped.items():
        a, b = w.lora_A["default"].weight, w.lora_B["default"].weight
        rank = a.shape[0] // e  # one rank-r adapter per expert, stacked
        if name.endswith("gate_up_proj"):
            # peft fuses gate+up: rank 2r when both were targeted as modules, else r
            assert rank == (2 * r if "gate_proj" in targets else r)
            assert a.shape == (e * rank, h) and b.shape == (2 * i, e * rank)
        else:
            assert rank == r and a.shape == (e * r, i) and b.shape == (h, e * r)
    # the planner's LoRA count (capacity.train_memory) is what peft builds
    trainable = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    assert trainable == capacity.lora_trainable_params(facts, r, targets)


def test_expert_weights_change_after_a_few_optimiser_steps_and_in_the_merged_model(tiny_moe_dir):
    import torch

    run = _run(ALL_LINEAR)
    pm = _peft_model(tiny_moe_dir, run)
    from transformers import AutoModelForCausalLM

    base = {k: v for k, v in AutoModelForCausalLM.from_pretrained(tiny_moe_dir).state_dict().items()
            if k.endswith(("experts.gate_up_proj", "experts.down_proj"))}
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(3, pm.config.vocab_size, (4, 24))
    for _ in range(3):
        loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    wrapped = _expert_wrappers(pm)
    for name, w in wrapped.items():
        delta = w.get_delta_weight("default")  # the change LoRA makes to the effective expert weights
        assert delta.shape == w.get_param().shape and delta.abs().max() > 0, name
    merged = pm.merge_and_unload()  # what trainer_hooks.save_final_model saves for LoRA
    after = merged.state_dict()
    assert len(base) == 2 * run.model.num_layers and all(not torch.equal(after[k], v) for k, v in base.items())
    assert not any("lora" in n for n, _ in merged.named_parameters())
