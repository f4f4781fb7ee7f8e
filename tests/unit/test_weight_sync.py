"""jobs/weight_sync.py without vLLM: choosing one tensor per kind, HF -> vLLM names (stacked
qkv_proj / gate_up_proj), shard rows, probe columns, the exact comparison (padded vocabulary,
dtype), the kernel read-back, and the one error. The engine side runs in the vllm tier
(tests/vllm_cpu/test_vllm_grpo.py)."""

from __future__ import annotations

import pytest

from scaling.errors import JobError, WeightSyncError
from scaling.jobs import weight_sync as ws

QWEN3_PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}


def qwen3_names(layers: int = 3, tied: bool = False) -> list[str]:
    names = ["model.embed_tokens.weight"]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [p + f"self_attn.{s}_proj.weight" for s in "qkvo"]
        names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        names += [p + f"mlp.{s}_proj.weight" for s in ("gate", "up", "down")]
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    names.append("model.norm.weight")
    if not tied:
        names.append("lm_head.weight")
    return names


def test_param_kind_wildcards_every_layer_index():
    assert ws.param_kind("model.layers.12.self_attn.q_proj.weight") == "model.layers.*.self_attn.q_proj.weight"
    assert ws.param_kind("model.layers.3.mlp.experts.7.up_proj.weight") == "model.layers.*.mlp.experts.*.up_proj.weight"
    assert ws.param_kind("lm_head.weight") == "lm_head.weight"


def test_choose_probe_names_takes_one_per_kind_from_the_last_layer():
    chosen = ws.choose_probe_names(qwen3_names(layers=3))
    assert len(chosen) == 1 + 11 + 2  # embeddings, eleven per-layer kinds, final norm, lm_head
    assert chosen[0] == "model.embed_tokens.weight" and chosen[-2:] == ["model.norm.weight", "lm_head.weight"]
    assert {ws.param_kind(n) for n in chosen} == {ws.param_kind(n) for n in qwen3_names(layers=3)}
    assert all(".layers.2." in n for n in chosen if ".layers." in n)
    # "highest layer" is numeric, not lexicographic; order of the input does not matter
    names = [f"model.layers.{i}.input_layernorm.weight" for i in (9, 10, 2)]
    assert ws.choose_probe_names(names) == ["model.layers.10.input_layernorm.weight"]


def test_engine_target_maps_hf_names_onto_vllm_stacked_parameters():
    t = ws.engine_target("model.layers.5.self_attn.k_proj.weight", QWEN3_PACKED)
    assert t.engine_name == "model.layers.5.self_attn.qkv_proj.weight" and t.shard == 1
    assert t.shard_names == tuple(f"model.layers.5.self_attn.{s}_proj.weight" for s in "qkv")
    t = ws.engine_target("model.layers.0.mlp.up_proj.weight", QWEN3_PACKED)
    assert (t.engine_name, t.shard) == ("model.layers.0.mlp.gate_up_proj.weight", 1)
    t = ws.engine_target("model.layers.0.self_attn.q_proj.bias", QWEN3_PACKED)  # Qwen2's qkv bias
    assert (t.engine_name, t.shard) == ("model.layers.0.self_attn.qkv_proj.bias", 0)
    for same in ("model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight",
                 "model.norm.weight", "lm_head.weight", "model.layers.0.self_attn.q_norm.weight"):
        assert ws.engine_target(same, QWEN3_PACKED) == ws.EngineTarget(engine_name=same)
    assert ws.engine_target("model.layers.0.self_attn.q_proj.weight", {}).engine_name.endswith("q_proj.weight")


def test_shard_rows_and_probe_columns():
    assert ws.shard_rows([64, 32, 32], 0) == (0, 64)
    assert ws.shard_rows([64, 32, 32], 2) == (96, 32)
    with pytest.raises(ValueError):
        ws.shard_rows([64, 32], 2)
    assert ws.probe_columns(5) == [0, 1, 2, 3, 4]
    cols = ws.probe_columns(4096)
    assert len(cols) == ws.PROBE_COLUMNS and cols[0] == 0 and cols[-1] == 4095 and cols == sorted(set(cols))
    assert ws.probe_columns(10, 1) == [0]


def test_compare_is_exact_and_ignores_only_vocabulary_padding():
    import torch

    w = torch.randn(10, 4, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    w[3, 1] = 1.0  # 1.0 + 0.5 is exact in bf16, so the difference below is exactly 0.5 whatever the draw
    assert ws.compare("w", "parameter", w, w.clone()) is None
    padded = torch.cat([w, torch.zeros(6, 4, dtype=torch.bfloat16)])  # vocab padded to 16 rows
    assert ws.compare("w", "parameter", w, padded) is None
    moved = w.clone()
    moved[3, 1] = moved[3, 1] + 0.5
    d = ws.compare("w", "kernel", w, moved)
    assert d is not None and d.where == "kernel" and d.detail.startswith("1 of 40 values differ, max |diff| 0.5")
    d = ws.compare("w", "parameter", w, torch.empty(0, dtype=torch.bfloat16))  # a weight packed away
    assert d is not None and "shape (0,) in the engine" in d.detail
    d = ws.compare("w", "parameter", w, w.t().contiguous())
    assert d is not None and "shape (4, 10)" in d.detail


def test_one_bf16_ulp_is_a_difference():
    """An update below bf16's resolution leaves nothing to see; one that survives the cast, even
    by one unit in the last place, is caught (no tolerance)."""
    import torch

    policy = torch.full((4, 4), 1.0, dtype=torch.float32)
    engine = policy.to(torch.bfloat16)
    assert ws.compare("w", "parameter", policy.to(torch.bfloat16), engine) is None
    policy[0, 0] = 1.0 + 2 ** -7  # one bf16 ulp at 1.0
    assert ws.compare("w", "parameter", policy.to(torch.bfloat16), engine) is not None


def test_kernel_read_back_sees_a_stale_packed_copy_behind_a_fresh_parameter():
    """The CPU case jobs/weight_sync.py reads through the kernel for: a layer whose Parameter was
    updated while its kernel still computes with the copy packed at load time (vLLM's lm_head on
    CPU keeps layer.weight, remove_weight=False, but computes with its oneDNN handler)."""
    import torch

    layer = torch.nn.Linear(8, 6, bias=True).to(torch.bfloat16)
    packed = layer.weight.detach().clone()  # what dispatch_cpu_unquantized_gemm hands the kernel
    layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, packed, bias)
    cols = ws.probe_columns(8, 3)
    got = ws.read_kernel_columns(layer, cols, 8).t()  # [N, cols]: exactly the packed columns, no bias
    assert torch.equal(got, packed[:, cols])
    with torch.no_grad():
        layer.weight.add_(1.0)  # the sync reached the Parameter only
    assert ws.compare("lm_head.weight", "parameter", layer.weight.detach(), layer.weight.detach()) is None
    got = ws.read_kernel_columns(layer, cols, 8).t()
    d = ws.compare("lm_head.weight", "kernel", layer.weight.detach()[:, cols], got)
    assert d is not None and d.detail.startswith(f"{6 * len(cols)} of {6 * len(cols)} values differ")


def test_verdict_raises_one_clear_error():
    ok = ws.CheckReport(compared=["a", "b"])
    assert ws.verdict(ok, 3) is None
    bad = ws.CheckReport(compared=["a", "b", "c"], differences=[
        ws.Difference("a", "kernel", "3 of 9 values differ, max |diff| 0.1"),
        ws.Difference("a", "parameter", "3 of 9 values differ, max |diff| 0.1"),  # one tensor, read two ways
        ws.Difference("b", "parameter", "x")])
    with pytest.raises(WeightSyncError) as err:
        ws.verdict(bad, 3)
    msg = str(err.value)
    assert isinstance(err.value, JobError) and "\n" not in msg
    assert msg.startswith("vLLM colocate weight sync at step 3: the rollout engine's a (kernel) is not the policy's: "
                          "3 of 9 values differ, max |diff| 0.1 (2 of 3 checked tensors differ); "
                          "rollouts would sample from stale weights;")
    assert "train.vllm_mode: none" in msg and "docs/training.md" in msg
    unreadable = ws.CheckReport(compared=["a"], unreadable=[("q", "packed away")])
    unread = r"at step 0: cannot read the rollout engine's q \(packed away\), so the sync cannot be verified"
    with pytest.raises(WeightSyncError, match=unread):
        ws.verdict(unreadable, 0)
    with pytest.raises(WeightSyncError, match="no policy tensor could be matched"):
        ws.verdict(ws.CheckReport(skipped=[("x", "no engine parameter")]), 1)

