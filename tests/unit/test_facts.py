"""Parameter counts, validation, memory estimates and config.json recognition
(scaling/paramcount.py, scaling/facts.py).

Published figures come from the model cards / papers (cited per case); configs are in
tests/data/configs/<hub name>/config.json, copied from the public model repositories.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scaling.errors import RecipeError
from scaling.facts import facts_from_config, load_config, load_tokenizer_config, thinking_facts
from scaling.paramcount import GIB, count_params, kv_cache_bytes_per_token, lora_params, memory_gb, resolve_facts
from scaling.records import ModelFacts

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
TOL = 0.02


def _facts(name: str) -> ModelFacts:
    return facts_from_config(load_config(str(CONFIGS / name)), family="t", size="s", label=name, hf_id=name)


def _close(value: float, published: float, tol: float = TOL) -> bool:
    return abs(value - published) / published <= tol


# Qwen3 technical report (arXiv 2505.09388, Table 1) and the model cards:
# (config dir, total, non-embedding, active) in billions; None where not published.
QWEN3_LADDER = [
    ("Qwen3-0.6B", 0.6, 0.44, None),
    ("Qwen3-1.7B", 1.7, 1.4, None),
    ("Qwen3-4B", 4.0, 3.6, None),
    ("Qwen3-8B", 8.2, 6.95, None),
    ("Qwen3-14B", 14.8, 13.2, None),
    ("Qwen3-32B", 32.8, 31.2, None),
    ("Qwen3-30B-A3B", 30.5, 29.9, 3.3),
    ("Qwen3-4B-Instruct-2507", 4.0, 3.6, None),
    ("Qwen3-4B-Thinking-2507", 4.0, 3.6, None),
    ("Qwen3-30B-A3B-Instruct-2507", 30.5, 29.9, 3.3),
    ("Qwen3-30B-A3B-Thinking-2507", 30.5, 29.9, 3.3),
]


@pytest.mark.parametrize("name,total,non_embedding,active", QWEN3_LADDER, ids=[c[0] for c in QWEN3_LADDER])
def test_qwen3_counts_match_published_sizes_within_2pct(name, total, non_embedding, active):
    count = count_params(_facts(name))
    assert _close(count.total / 1e9, total), count
    assert _close(count.non_embedding / 1e9, non_embedding), count
    if active is None:
        assert count.active == count.total
    else:
        assert _close(count.active / 1e9, active), count


# Other families: published totals (and active for MoE) from their model cards / papers.
OTHER_FAMILIES = [
    ("Meta-Llama-3-8B", 8.03, None),  # Llama 3 model card
    ("Mistral-7B-v0.1", 7.24, None),  # arXiv 2310.06825
    ("Mixtral-8x7B-v0.1", 46.7, 12.9),  # arXiv 2401.04088
    ("OLMoE-1B-7B-0924", 6.9, 1.3),  # arXiv 2409.02060 (6.9B total, 1.3B active)
    ("gemma-2-2b", 2.61, None),  # arXiv 2408.00118, Table 2 (2.6B; 2,614M)
    ("DeepSeek-V2-Lite", 15.7, None),  # arXiv 2405.04434 (active: see the next test)
    ("Phi-3-mini-4k-instruct", 3.8, None),  # arXiv 2404.14219
]


@pytest.mark.parametrize("name,total,active", OTHER_FAMILIES, ids=[c[0] for c in OTHER_FAMILIES])
def test_other_families_match_published_totals_within_2pct(name, total, active):
    count = count_params(_facts(name))
    assert _close(count.total / 1e9, total), count
    if active is not None:
        assert _close(count.active / 1e9, active), count


def test_deepseek_v2_lite_active_matches_published_when_counted_like_deepseek():
    """DeepSeek quotes 2.4B activated: its figure leaves out the input embedding table (a lookup,
    no compute). Ours includes it (2.66B); without it we get 2.45B, which DeepSeek rounds to 2.4B.
    The same convention gives 21B for DeepSeek-V2 (236B total), checked below."""
    f = _facts("DeepSeek-V2-Lite")
    lookup = f.vocab_size * f.hidden_size
    assert _close((f.params_active - lookup) / 1e9, 2.4, tol=0.025)
    assert abs(f.params_active / 1e9 - 2.66) < 0.01
    v2 = resolve_facts(dataclasses.replace(f, hidden_size=5120, num_layers=60, num_heads=128, intermediate_size=12288,
                                           moe_intermediate_size=1536, num_experts=160, q_lora_rank=1536,
                                           params_total=None, params_active=None, params_embedding=None))
    assert _close(v2.params_total / 1e9, 236)
    assert _close((v2.params_active - v2.vocab_size * v2.hidden_size) / 1e9, 21)


def test_tied_embeddings_count_the_table_once():
    tied = _facts("Qwen3-4B")
    untied = resolve_facts(dataclasses.replace(tied, tie_embeddings=False, params_total=None, params_active=None,
                                               params_embedding=None))
    table = tied.vocab_size * tied.hidden_size
    assert tied.params_embedding == table
    assert untied.params_embedding == 2 * table
    assert untied.params_total - tied.params_total == table


def test_qk_norm_and_attention_bias_add_their_weights():
    base = dataclasses.replace(_facts("Qwen3-0.6B"), params_total=None, params_active=None, params_embedding=None)
    plain = count_params(dataclasses.replace(base, qk_norm=False)).total
    normed = count_params(base).total
    biased = count_params(dataclasses.replace(base, qk_norm=False, attention_bias=True)).total
    assert normed - plain == base.num_layers * 2 * base.head_dim
    assert biased - plain == base.num_layers * (base.num_heads + 2 * base.num_kv_heads) * base.head_dim


def test_moe_every_and_dense_layers_change_the_number_of_moe_layers():
    moe = dataclasses.replace(_facts("Qwen3-30B-A3B"), params_total=None, params_active=None, params_embedding=None)
    expert_block = moe.num_experts * 3 * moe.hidden_size * moe.moe_intermediate_size + moe.hidden_size * moe.num_experts
    dense_mlp = 3 * moe.hidden_size * moe.intermediate_size
    every = count_params(moe).total
    half = count_params(dataclasses.replace(moe, moe_every=2)).total
    lead = count_params(dataclasses.replace(moe, dense_layers=3)).total
    assert every - half == 24 * (expert_block - dense_mlp)
    assert every - lead == 3 * (expert_block - dense_mlp)


def test_shared_experts_count_as_always_active():
    f = _facts("DeepSeek-V2-Lite")
    no_shared = count_params(dataclasses.replace(f, shared_experts=0))
    shared = count_params(f)
    moe_layers = f.num_layers - f.dense_layers
    width = f.shared_experts * f.moe_intermediate_size
    assert shared.total - no_shared.total == moe_layers * 3 * f.hidden_size * width
    assert shared.active - no_shared.active == shared.total - no_shared.total


def test_resolve_fills_head_dim_kv_heads_and_params():
    f = resolve_facts(ModelFacts(size="x", hidden_size=256, num_layers=2, num_heads=4, intermediate_size=512,
                                 vocab_size=1000))
    assert f.head_dim == 64 and f.num_kv_heads == 4
    assert f.params_total == count_params(f).total and f.params_active == f.params_total


def test_resolve_keeps_a_declared_count_within_2pct_and_refuses_one_further_off():
    f = _facts("Qwen3-8B")
    declared = dataclasses.replace(f, params_total=8_190_000_000)
    assert resolve_facts(declared).params_total == 8_190_000_000
    with pytest.raises(RecipeError, match=r"model\.params_total: declared 9,000,000,000"):
        resolve_facts(dataclasses.replace(f, params_total=9_000_000_000))


BAD_FACTS = [
    (dict(num_heads=0), "model.num_heads"),
    (dict(hidden_size=-5), "model.hidden_size"),
    (dict(num_heads=24, head_dim=0), "model.num_heads"),
    (dict(num_kv_heads=6), "model.num_kv_heads"),
    (dict(num_experts=8, experts_per_token=10, moe_intermediate_size=128), "model.experts_per_token"),
    (dict(num_experts=8, experts_per_token=0, moe_intermediate_size=128), "model.experts_per_token"),
    (dict(num_experts=8, experts_per_token=2, moe_intermediate_size=0), "model.moe_intermediate_size"),
    (dict(experts_per_token=2), "model.num_experts"),
    (dict(intermediate_size=0), "model.intermediate_size"),
    (dict(moe_every=0), "model.moe_every"),
]


@pytest.mark.parametrize("change,key", BAD_FACTS, ids=[k + "-" + "-".join(c) for c, k in BAD_FACTS])
def test_resolve_refuses_inconsistent_facts_naming_the_key(change, key):
    good = ModelFacts(size="8b", label="8B", hidden_size=4096, num_layers=4, num_heads=32, num_kv_heads=8,
                      intermediate_size=1024, vocab_size=1000)
    with pytest.raises(RecipeError) as err:
        resolve_facts(dataclasses.replace(good, **change))
    assert key in str(err.value) and "\n" not in str(err.value) and "8B" in str(err.value)


def test_kv_cache_bytes_per_token_follow_the_formula():
    f = _facts("Qwen3-8B")
    assert kv_cache_bytes_per_token(f) == 2 * 36 * 8 * 128 * 2  # 147,456 bytes = 144 KiB
    mla = _facts("DeepSeek-V2-Lite")
    assert kv_cache_bytes_per_token(mla) == 27 * (512 + 64) * 2


def test_memory_full_finetune_is_16_bytes_per_param_and_zero_shards_it():
    f = _facts("Qwen3-8B")
    n = f.params_total
    ddp = memory_gb(f, finetune="full")
    assert ddp.weights_gb == pytest.approx(2 * n / GIB)
    assert ddp.total_gb == pytest.approx(16 * n / GIB)  # ~122 GiB: does not fit one 80 GB GPU
    z1 = memory_gb(f, finetune="full", zero_stage=1, num_gpus=8)
    z2 = memory_gb(f, finetune="full", zero_stage=2, num_gpus=8)
    z3 = memory_gb(f, finetune="full", zero_stage=3, num_gpus=8)
    assert z1.optimizer_gb == pytest.approx(ddp.optimizer_gb / 8) and z1.grads_gb == ddp.grads_gb
    assert z2.grads_gb == pytest.approx(ddp.grads_gb / 8) and z2.weights_gb == ddp.weights_gb
    assert z3.total_gb == pytest.approx(ddp.total_gb / 8)  # ~15 GiB per GPU
    assert ddp.total_gb > z1.total_gb > z2.total_gb > z3.total_gb


def test_memory_lora_trains_only_adapters():
    f = _facts("Qwen3-8B")
    mem = memory_gb(f, finetune="lora", lora_rank=64)
    adapters = lora_params(f, 64)
    # rank 64 on 7 projections of 36 layers: 64 * sum(in + out)
    per_layer = 64 * ((4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096) + 2 * (4096 + 12288) + (12288 + 4096))
    assert adapters == 36 * per_layer and mem.trainable_params == adapters
    assert 0.005 < adapters / f.params_total < 0.03
    assert mem.grads_gb == pytest.approx(2 * adapters / GIB)
    assert mem.optimizer_gb == pytest.approx(12 * adapters / GIB)
    assert mem.total_gb < memory_gb(f, finetune="full").total_gb / 5
    assert lora_params(f, 16, ["q_proj"]) == 36 * 16 * (4096 + 4096)


def test_memory_inference_splits_weights_over_tensor_parallel_gpus():
    f = _facts("Qwen3-32B")
    one = memory_gb(f, finetune="inference")
    four = memory_gb(f, finetune="inference", num_gpus=4)
    assert one.weights_gb == pytest.approx(2 * f.params_total / GIB)  # ~61 GiB
    assert four.weights_gb == pytest.approx(one.weights_gb / 4)
    assert one.grads_gb == one.optimizer_gb == 0


def test_memory_refuses_bad_settings():
    f = _facts("Qwen3-0.6B")
    with pytest.raises(RecipeError, match="zero_stage"):
        memory_gb(f, zero_stage=4)
    with pytest.raises(RecipeError, match="finetune"):
        memory_gb(f, finetune="qlora")
    with pytest.raises(RecipeError, match="lora_rank"):
        memory_gb(f, finetune="lora", lora_rank=0)


# ------------------------------------------------------------------- config recognition
def test_recognises_architecture_details_from_configs():
    gemma = _facts("gemma-2-2b")
    assert gemma.head_dim == 256 and gemma.tie_embeddings and gemma.vocab_size == 256000
    mixtral = _facts("Mixtral-8x7B-v0.1")
    assert (mixtral.num_experts, mixtral.experts_per_token, mixtral.moe_intermediate_size) == (8, 2, 14336)
    ds = _facts("DeepSeek-V2-Lite")
    assert (ds.kv_lora_rank, ds.q_lora_rank, ds.dense_layers, ds.shared_experts) == (512, 0, 1, 2)
    q = _facts("Qwen3-30B-A3B")
    assert q.qk_norm and q.model_type == "qwen3_moe" and q.num_kv_heads == 4 and not q.tie_embeddings
    phi = _facts("Phi-3-mini-4k-instruct")
    assert phi.num_kv_heads == 32 and phi.head_dim == 96


BAD_CONFIGS = [
    ("bad-t5-encoder-decoder", "model_type", "encoder-decoder"),
    ("bad-unknown-architecture", "model_type", "unknown architecture 'falcon_mamba'"),
    ("bad-heads-not-dividing", "num_attention_heads", "do not divide hidden_size"),
    ("bad-kv-heads-not-dividing", "num_key_value_heads", "do not divide"),
    ("bad-experts-per-token", "num_experts_per_tok", "exceed num_experts"),
    ("bad-missing-key", "num_hidden_layers", "missing key"),
]


@pytest.mark.parametrize("name,key,reason", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_refuses_unknown_or_inconsistent_configs_in_one_line(name, key, reason):
    with pytest.raises(RecipeError) as err:
        _facts(name)
    msg = str(err.value)
    assert f"config.json: {key}:" in msg and reason in msg and "\n" not in msg


def test_load_config_reads_a_directory_or_a_file_and_reports_bad_paths(tmp_path):
    assert load_config(str(CONFIGS / "Qwen3-8B"))["hidden_size"] == 4096
    assert load_config(str(CONFIGS / "Qwen3-8B" / "config.json"))["hidden_size"] == 4096
    with pytest.raises(RecipeError, match="no config.json"):
        load_config(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RecipeError, match="not valid JSON"):
        load_config(str(tmp_path))
    with pytest.raises(RecipeError, match="no such file or directory"):
        load_config(str(tmp_path / "missing" / "dir"))


def _fake_cache(cache: Path, repo: str, files: dict[str, str]) -> None:
    """The huggingface_hub cache layout: models--owner--name/{refs/main, snapshots/<sha>/...}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    sha = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)
    snap = root / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, text in files.items():
        (snap / name).write_text(text)


def test_load_config_uses_the_local_hub_cache_offline(tmp_path, monkeypatch):
    text = (CONFIGS / "Qwen3-1.7B" / "config.json").read_text()
    _fake_cache(tmp_path, "Qwen/Qwen3-1.7B", {"config.json": text})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    assert load_config("Qwen/Qwen3-1.7B") == json.loads(text)
    assert load_tokenizer_config("Qwen/Qwen3-1.7B") is None  # optional file, not cached: no error
    with pytest.raises(RecipeError, match="not in the local Hugging Face cache") as err:
        load_config("Qwen/Qwen3-999B")
    assert "\n" not in str(err.value)


def test_thinking_facts_read_the_chat_template():
    assert thinking_facts(load_tokenizer_config(str(CONFIGS / "Qwen3-8B")))["thinking"] == "hybrid"
    assert thinking_facts(load_tokenizer_config(str(CONFIGS / "Qwen3-4B-Thinking-2507")))["thinking"] == "always"
    # the instruct template strips </think> from past turns but never opens a thinking block
    assert thinking_facts(load_tokenizer_config(str(CONFIGS / "Qwen3-4B-Instruct-2507")))["thinking"] == "none"
    assert thinking_facts(None) == {"thinking": "none", "think_start": "<think>", "think_end": "</think>"}


# Config dialects without a fixture directory: the keys each family's config.json uses, with the
# published sizes (Qwen2.5 report arXiv 2412.15115; Qwen1.5-MoE-A2.7B card; DeepSeek-V3 arXiv 2412.19437).
DIALECTS = [
    ({"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
      "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064, "tie_word_embeddings": False},
     7.61, 7.61),
    ({"model_type": "qwen2_moe", "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
      "num_key_value_heads": 16, "intermediate_size": 5632, "moe_intermediate_size": 1408, "num_experts": 60,
      "num_experts_per_tok": 4, "shared_expert_intermediate_size": 5632, "decoder_sparse_step": 1,
      "mlp_only_layers": [], "vocab_size": 151936, "tie_word_embeddings": False}, 14.3, 2.7),
    ({"model_type": "deepseek_v3", "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128,
      "num_key_value_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
      "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
      "moe_layer_freq": 1, "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
      "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 129280, "tie_word_embeddings": False}, 671, 37),
]


@pytest.mark.parametrize("config,total,active", DIALECTS, ids=[d[0]["model_type"] for d in DIALECTS])
def test_other_config_dialects_match_published_sizes(config, total, active):
    f = facts_from_config(config, family="t", size="s", label="x", hf_id="x")
    assert _close(f.params_total / 1e9, total) and _close(f.params_active / 1e9, active), f
    if config["model_type"] == "qwen2":
        assert f.attention_bias  # Qwen2 always has q/k/v biases, without a config key


def test_refuses_moe_layouts_it_cannot_count_exactly():
    moe = dict(DIALECTS[1][0], mlp_only_layers=[3, 7])
    with pytest.raises(RecipeError, match="mlp_only_layers"):
        facts_from_config(moe, family="t", size="s", label="x", hf_id="x")
    ds = dict(DIALECTS[2][0], moe_layer_freq=2)
    with pytest.raises(RecipeError, match="moe_layer_freq"):
        facts_from_config(ds, family="t", size="s", label="x", hf_id="x")


def test_hub_failures_become_one_line_errors(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants as c

    def unreachable(repo_id, filename, **kw):
        raise OSError("Max retries exceeded with url: https://huggingface.co/...\nConnection refused")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(RecipeError) as err:
        load_config("someone/some-model")
    msg = str(err.value)
    assert "cannot fetch config.json from the hub (OSError" in msg and "\n" not in msg
    assert load_tokenizer_config("someone/some-model") is None  # optional files: absent, no error
