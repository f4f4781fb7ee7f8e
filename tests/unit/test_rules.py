"""The per-size rules: each rule on its own, and the layout's response to the cluster profile."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from scaling import capacity, rules
from scaling.errors import PlanError
from scaling.paramcount import resolve_facts
from scaling.profiles import load_profile
from scaling.recipe import load_method, load_study
from scaling.records import ClusterProfile, Finetune, ModelFacts

H100 = load_profile("h100_8x80gb")
SMALL = load_profile("small_4x24gb")
CPU = load_profile("local_cpu")


@pytest.fixture(scope="module")
def facts() -> dict[str, ModelFacts]:
    study = load_study("recipes/qwen3-ladder.yaml", overrides=["study.sizes=[0_6b,1_7b,4b,8b,14b,32b,30b_a3b]"])
    out = {k: study.settings[k].model for k in study.sizes}
    art = load_study("recipes/art-paper.yaml", sizes=["4b_instruct_2507", "4b_thinking_2507"])
    out.update({k: art.settings[k].model for k in art.sizes})
    return out


@pytest.fixture(scope="module")
def method() -> dict:
    m = load_method()
    m["eval"]["benchmarks"] = ["aime25", "math500"]
    return m


def test_learning_rate_is_arts_1e6_up_to_its_largest_model_and_smaller_beyond(facts):
    for k in ("0_6b", "8b", "30b_a3b"):
        assert rules.lr_by_size(facts[k], Finetune.full) == pytest.approx(1e-6, rel=0.01)
    assert rules.lr_by_size(facts["32b"], Finetune.full) < 1e-6
    assert rules.lr_by_size(facts["8b"], Finetune.lora) == pytest.approx(1e-5)


def test_rollout_limit_is_8k_and_16k_for_thinking_only_models(facts):
    assert rules.rollout_limit(facts["8b"], enable_thinking=True, max_prompt_length=1024) == 8192
    assert rules.rollout_limit(facts["4b_thinking_2507"], enable_thinking=True, max_prompt_length=1024) == 16384
    short = dataclasses.replace(facts["8b"], max_position=4096)
    assert rules.rollout_limit(short, enable_thinking=True, max_prompt_length=1024) == 3072


def test_target_length_equals_limit_when_thinking_and_sits_below_it_for_instruct(facts):
    assert rules.target_length(facts["8b"], enable_thinking=True, limit=8192) == 8192
    assert rules.target_length(facts["4b_instruct_2507"], enable_thinking=False, limit=8192) == 6144  # Art 6k/8k
    assert rules.target_length(facts["8b"], enable_thinking=False, limit=8192) == 6144


def test_prompts_per_step_follows_arts_128_small_32_large(facts):
    assert rules.prompts_per_step(facts["0_6b"]) == 128
    assert rules.prompts_per_step(facts["1_7b"]) == 128
    assert rules.prompts_per_step(facts["4b"]) == 32
    assert rules.prompts_per_step(facts["30b_a3b"]) == 32


def test_mini_batch_is_on_policy_by_default_and_refuses_a_non_divisor():
    assert rules.mini_batch(128, 1) == 128
    assert rules.mini_batch(128, 4) == 32
    with pytest.raises(PlanError, match="does not divide"):
        rules.mini_batch(128, 3)


def test_tp_candidates_divide_heads_and_respect_kv_heads(facts):
    assert capacity.tp_candidates(facts["30b_a3b"], 8) == [1, 2, 4, 8]  # 4 KV heads, replicated at TP 8
    odd = ModelFacts(hidden_size=768, num_layers=2, num_heads=12, num_kv_heads=2, intermediate_size=3072, vocab_size=100)
    assert capacity.tp_candidates(odd, 8) == [1, 2, 4]


def test_inference_tp_grows_when_gpu_memory_shrinks(facts):
    kw = dict(seq_tokens=33792, min_seqs=8, mem_frac=0.9, max_tp=8)
    big = capacity.inference_tp(facts["32b"], gpu_mem_gb=80, **kw)
    small = capacity.inference_tp(facts["32b"], gpu_mem_gb=24, **kw)
    assert big is not None and small is not None and small > big
    assert capacity.inference_tp(facts["32b"], gpu_mem_gb=8, **kw) is None


def test_train_memory_shrinks_with_zero_stage_and_lora(facts):
    kw = dict(num_gpus=8, seq_tokens=9216, per_device_batch=1, lora_rank=64, lora_targets=["q_proj", "v_proj"])
    z0 = capacity.train_memory_gb(facts["8b"], finetune=Finetune.full, zero_stage=0, **kw)
    z3 = capacity.train_memory_gb(facts["8b"], finetune=Finetune.full, zero_stage=3, **kw)
    lora = capacity.train_memory_gb(facts["8b"], finetune=Finetune.lora, zero_stage=0, **kw)
    assert z3 < lora < z0


def test_smaller_gpus_give_more_gpus_or_more_sharding_or_more_tp(facts, method):
    for k in ("0_6b", "1_7b", "4b"):
        big = rules.derive_size_settings(facts[k], H100, method)
        small = rules.derive_size_settings(facts[k], SMALL, method)
        rb, rs = big.resources["train"], small.resources["train"]
        more = (rs.tensor_parallel > rb.tensor_parallel
                or small.train.zero_stage > big.train.zero_stage
                or small.train.vllm_mode != big.train.vllm_mode
                or rs.nodes > rb.nodes or rs.nodes * rs.gpus_per_node > rb.nodes * rb.gpus_per_node)
        assert more, (k, big, small)
        assert small.resources["eval"].tensor_parallel >= big.resources["eval"].tensor_parallel
    assert rules.derive_size_settings(facts["4b"], SMALL, method).resources["eval"].tensor_parallel > \
        rules.derive_size_settings(facts["4b"], H100, method).resources["eval"].tensor_parallel


def test_lora_is_chosen_when_full_fine_tuning_cannot_fit(facts, method):
    one_gpu = dataclasses.replace(H100, name="one_48gb", gpu_mem_gb=48, gpus_per_node=1, max_nodes=1)
    out = rules.derive_size_settings(facts["4b"], one_gpu, method)
    assert out.train.finetune == "lora"
    assert out.train.learning_rate == pytest.approx(1e-5)  # LoRA: 10x
    assert out.provenance["train.finetune"] == "rule:finetune"
    full = rules.derive_size_settings(facts["4b"], H100, method)
    assert full.train.finetune == "full"


def test_model_too_large_for_the_profile_is_a_plan_error(facts, method):
    with pytest.raises(PlanError, match="does not fit profile small_4x24gb"):
        rules.derive_size_settings(facts["32b"], SMALL, method)


def test_cpu_profile_plans_without_gpus_vllm_or_zero(method):
    tiny = resolve_facts(ModelFacts(family="t", size="t1", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                    intermediate_size=128, vocab_size=300, max_position=4096))
    out = rules.derive_size_settings(tiny, CPU, method)
    r = out.resources["train"]
    assert (r.gpus_per_node, r.nodes, r.cpus_per_task) == (0, 1, CPU.cpus_per_job) == (0, 1, 1)
    assert r.mem_gb == CPU.mem_per_node_gb // CPU.cpus_per_node
    assert out.train.vllm_mode == "none" and out.train.zero_stage == 0
    assert out.estimates.train_gpu_hours == 0
    assert r.timeout_min <= CPU.max_time_min


def test_cpu_profile_without_cpus_per_job_gives_each_job_the_whole_node(method):
    import dataclasses

    whole = dataclasses.replace(CPU, cpus_per_job=0)
    tiny = resolve_facts(ModelFacts(family="t", size="t1", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                    intermediate_size=128, vocab_size=300, max_position=4096))
    r = rules.derive_size_settings(tiny, whole, method).resources["eval"]
    assert (r.cpus_per_task, r.mem_gb) == (whole.cpus_per_node, whole.mem_per_node_gb)


def test_values_the_recipe_sets_are_kept_not_derived(facts, method):
    cfg = {**method, "train": {**method["train"], "finetune": "lora", "learning_rate": 3e-6, "rollout_limit": 4096}}
    out = rules.derive_size_settings(facts["8b"], H100, cfg)
    assert "train.finetune" not in out.provenance and "train.learning_rate" not in out.provenance
    assert "train.rollout_limit" not in out.provenance and out.train.reward.target_length == 4096
    assert out.provenance["train.reward.target_length"] == "rule:target_length"


def test_fixed_resources_are_respected(facts, method):
    cfg = {**method, "resources": {"train": {"nodes": 2, "gpus_per_node": 8}}}
    out = rules.derive_size_settings(facts["8b"], H100, cfg)
    assert out.resources["train"].nodes == 2 and out.resources["train"].gpus_per_node == 8
    assert "resources.train.nodes" not in out.provenance


def test_time_limit_has_safety_and_is_capped_by_the_partition():
    prof = ClusterProfile(name="p", gpus_per_node=8, gpu_mem_gb=80, gpu_tflops=989, max_time_min=600)
    assert capacity.time_limit_min(1.0, prof) == 110  # 60 x 1.5 + 15 = 105, rounded up to 10 minutes
    assert capacity.time_limit_min(100.0, prof) == 600
    assert capacity.time_limit_min(0.0, prof) >= capacity.MIN_TIME_MIN


def test_bigger_models_cost_more_gpu_hours_per_step(facts):
    kw = dict(gen_gpus=8, train_gpus=8, prompts=32, generations=24, rollout_limit=8192, prompt_tokens=256,
              max_steps=100, beta=0.001)
    hours = [capacity.train_hours(facts[k], H100, **kw) for k in ("0_6b", "4b", "8b", "14b")]
    assert hours == sorted(hours)
    assert capacity.train_hours(facts["30b_a3b"], H100, **kw) < capacity.train_hours(facts["14b"], H100, **kw)  # 3.3B active


def test_every_rule_has_a_docstring_citing_its_source():
    for name in ("lr_by_size", "rollout_limit", "target_length", "prompts_per_step", "mini_batch", "tp_candidates",
                 "inference_tp", "activation_gb", "train_layout", "train_hours", "time_limit_min", "job_resources",
                 "derive_size_settings"):
        doc = inspect.getdoc(getattr(rules, name, None) or getattr(capacity, name)) or ""
        assert len(doc) > 40, name
    for name in ("lr_by_size", "rollout_limit", "target_length", "prompts_per_step", "mini_batch"):
        assert "Art" in inspect.getdoc(getattr(rules, name)), name
