"""Parameter counts and memory of a decoder-only transformer, from its ``ModelFacts``.

* ``count_params(facts) -> ParamCount(total, active, embedding)`` counts every weight from the
  architecture facts: GQA or MLA attention (DeepSeek-V2), dense gated MLPs or MoE layers (routed
  experts, experts per token, shared experts, leading dense layers, a MoE layer every N layers),
  tied or untied embeddings, q/k norms, attention biases and RMSNorm weights;
  ``lora_params(facts, rank)`` counts LoRA adapters.
* ``resolve_facts(facts)`` fills ``head_dim``/``num_kv_heads``/``params_*``, validates the
  facts and raises a one-line ``RecipeError`` naming the key and the fix.
* ``memory_gb(facts, ...)`` estimates per-GPU training memory (weights, gradients, AdamW
  states) under full fine-tuning, LoRA and ZeRO stages, and inference weights under tensor
  parallelism; ``kv_cache_bytes_per_token(facts)`` sizes the KV cache.

Where the facts come from (a recipe, or a ``config.json`` through ``facts.facts_from_config``)
is not this module's business.

Conventions (where the papers are silent these are ours, stated here)
    * ``embedding`` is the input embedding plus the output head when untied (what model cards
      subtract to report "non-embedding" parameters; Qwen3-8B: 8.19B total, 6.95B non-embedding).
    * ``active`` counts the weights one token touches: everything except the routed experts it
      is not sent to. Embeddings are included (Mixtral 12.9B, Qwen3-30B-A3B 3.3B, OLMoE 1.3B
      are quoted that way).
    * Every MLP is gated (SwiGLU/GeGLU: gate, up, down projections), as in every family we
      recognise. Norms are RMSNorm with a weight vector and no bias.

This module imports the standard library only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import RecipeError
from .records import Finetune, ModelFacts


# ------------------------------------------------------------------------------ constants
PARAMS_TOLERANCE_FRAC = 0.02  # a declared params_* value must agree with the count within 2%
GIB = 2**30  # every *_gb below is GiB (2**30 bytes), the unit of nvidia-smi and torch.cuda

WEIGHT_BYTES = 2  # bf16 weights, for training and for inference
GRAD_BYTES = 2  # bf16 gradients (mixed precision, ZeRO paper arXiv 1910.02054, Sec. 3.1: 2 bytes)
# AdamW in mixed precision keeps an fp32 master copy (4 bytes), first moment (4) and second
# moment (4) per trainable parameter: K = 12 in the ZeRO paper (arXiv 1910.02054, Sec. 3.1).
OPTIMIZER_BYTES = 12
KV_BYTES = 2  # bf16 KV cache (vLLM's default kv_cache_dtype "auto" = the model dtype)

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ------------------------------------------------------------------------------- counting
@dataclass(frozen=True, kw_only=True)
class ParamCount:
    """Parameter counts of one model (see the module docstring for the conventions)."""

    total: int
    active: int  # == total for a dense model
    embedding: int  # input embedding + untied output head

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding

    @property
    def active_non_embedding(self) -> int:
        return self.active - self.embedding


def _is_mla(f: ModelFacts) -> bool:
    return f.kv_lora_rank > 0


def _head_dim(f: ModelFacts) -> int:
    if f.head_dim:
        return f.head_dim
    if _is_mla(f):
        return f.qk_nope_head_dim + f.qk_rope_head_dim
    return f.hidden_size // max(f.num_heads, 1)


def _kv_heads(f: ModelFacts) -> int:
    return f.num_kv_heads or f.num_heads  # HF convention: num_key_value_heads None -> MHA


def is_moe_layer(f: ModelFacts, layer: int) -> bool:
    """Whether decoder layer ``layer`` (0-based) has a MoE block.

    Leading ``dense_layers`` are dense (DeepSeek ``first_k_dense_replace``, Qwen
    ``mlp_only_layers`` as a prefix); after that a layer is MoE when ``(layer + 1) % moe_every
    == 0`` (Qwen2/3-MoE ``decoder_sparse_step``; every layer when ``moe_every`` is 1).
    """
    if f.num_experts <= 0 or layer < f.dense_layers:
        return False
    return (layer + 1) % max(f.moe_every, 1) == 0


def _mlp(hidden: int, inter: int) -> list[tuple[str, int, int]]:
    """A gated MLP's projections (SwiGLU/GeGLU), named as in the HF modeling files."""
    return [("gate_proj", hidden, inter), ("up_proj", hidden, inter), ("down_proj", inter, hidden)]


def _attention_linears(f: ModelFacts) -> list[tuple[str, int, int]]:
    """(module name, in features, out features) of one layer's attention projections."""
    h, heads = f.hidden_size, f.num_heads
    if _is_mla(f):
        qk = f.qk_nope_head_dim + f.qk_rope_head_dim
        q = (
            [("q_a_proj", h, f.q_lora_rank), ("q_b_proj", f.q_lora_rank, heads * qk)]
            if f.q_lora_rank
            else [("q_proj", h, heads * qk)]
        )
        return q + [
            ("kv_a_proj_with_mqa", h, f.kv_lora_rank + f.qk_rope_head_dim),
            ("kv_b_proj", f.kv_lora_rank, heads * (f.qk_nope_head_dim + f.v_head_dim)),
            ("o_proj", heads * f.v_head_dim, h),
        ]
    hd, kv = _head_dim(f), _kv_heads(f)
    return [("q_proj", h, heads * hd), ("k_proj", h, kv * hd), ("v_proj", h, kv * hd), ("o_proj", heads * hd, h)]


def _attention_extra(f: ModelFacts) -> int:
    """Non-linear attention weights: q/k/v biases, q/k norms, MLA latent norms."""
    n = 0
    if _is_mla(f):
        n += f.kv_lora_rank + f.q_lora_rank  # kv_a_layernorm, q_a_layernorm
    else:
        hd, kv = _head_dim(f), _kv_heads(f)
        if f.attention_bias:
            n += (f.num_heads + 2 * kv) * hd  # q, k, v biases (Qwen2 style; o_proj has none)
        if f.qk_norm:
            n += 2 * hd  # RMSNorm over head_dim on q and k (Qwen3)
    return n


def _shared_width(f: ModelFacts) -> int:
    if f.shared_experts <= 0:
        return 0
    return f.shared_intermediate_size or f.shared_experts * f.moe_intermediate_size


def _layer_linears(f: ModelFacts, layer: int) -> list[tuple[str, int, int, int]]:
    """(module name, in, out, copies) of one layer's linears; ``copies`` counts routed experts."""
    out = [(n, i, o, 1) for n, i, o in _attention_linears(f)]
    if is_moe_layer(f, layer):
        out += [(n, i, o, f.num_experts) for n, i, o in _mlp(f.hidden_size, f.moe_intermediate_size)]
        width = _shared_width(f)
        if width:
            out += [(n, i, o, 1) for n, i, o in _mlp(f.hidden_size, width)]
    else:
        out += [(n, i, o, 1) for n, i, o in _mlp(f.hidden_size, f.intermediate_size)]
    return out


def count_params(facts: ModelFacts) -> ParamCount:
    """Count total, active and embedding parameters from architecture facts (no validation;
    ``resolve_facts`` validates first)."""
    f = facts
    h = f.hidden_size
    embed = f.vocab_size * h
    embedding = embed if f.tie_embeddings else 2 * embed
    total = active = embedding + h  # + final norm
    for layer in range(f.num_layers):
        base = 2 * h + _attention_extra(f)  # input and post-attention RMSNorm
        base += sum(i * o for _, i, o in _attention_linears(f))
        if is_moe_layer(f, layer):
            expert = 3 * h * f.moe_intermediate_size
            shared = 3 * h * _shared_width(f)
            router = h * f.num_experts
            total += base + router + shared + f.num_experts * expert
            active += base + router + shared + f.experts_per_token * expert
        else:
            mlp = 3 * h * f.intermediate_size
            total += base + mlp
            active += base + mlp
    return ParamCount(total=total, active=active, embedding=embedding)


def lora_params(facts: ModelFacts, rank: int, targets: list[str] | tuple[str, ...] = DEFAULT_LORA_TARGETS) -> int:
    """Adapter parameters of LoRA rank ``rank`` on the named linear modules: rank*(in+out) per
    module, every routed expert included (PEFT wraps each expert's projections)."""
    wanted = set(targets)
    n = 0
    for layer in range(facts.num_layers):
        for name, i, o, copies in _layer_linears(facts, layer):
            if name in wanted:
                n += copies * rank * (i + o)
    return n


# ----------------------------------------------------------------------------- resolving
def _fail(f: ModelFacts, key: str, message: str) -> RecipeError:
    who = f.label or f.size or f.hf_id or "model"
    return RecipeError(f"{message} (model {who})", key=f"model.{key}")


def resolve_facts(facts: ModelFacts) -> ModelFacts:
    """Validate architecture facts and return a copy with ``num_kv_heads``, ``head_dim`` and
    ``params_total/active/embedding`` filled in. A ``params_*`` value already given must agree
    with the count within 2% (it is kept: it is the published figure)."""
    f = facts
    for key in ("hidden_size", "num_layers", "num_heads", "vocab_size"):
        if getattr(f, key) <= 0:
            raise _fail(f, key, f"must be a positive integer, got {getattr(f, key)}; "
                        "copy it from the model's config.json")
    for key in ("num_kv_heads", "head_dim", "intermediate_size", "num_experts", "experts_per_token",
                "moe_intermediate_size", "shared_experts", "shared_intermediate_size", "dense_layers",
                "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
        if getattr(f, key) < 0:
            raise _fail(f, key, f"must not be negative, got {getattr(f, key)}")
    if f.moe_every < 1:
        raise _fail(f, "moe_every", f"must be >= 1 (a MoE layer every N layers), got {f.moe_every}")
    if _is_mla(f):
        for key in ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
            if getattr(f, key) <= 0:
                raise _fail(f, key, "must be positive for multi-head latent attention (kv_lora_rank > 0)")
    else:
        if not f.head_dim and f.hidden_size % f.num_heads:
            raise _fail(f, "num_heads", f"{f.num_heads} heads do not divide hidden_size {f.hidden_size}; "
                        "give model.head_dim explicitly or fix num_heads")
        kv = _kv_heads(f)
        if f.num_heads % kv:
            raise _fail(f, "num_kv_heads", f"{kv} KV heads do not divide {f.num_heads} attention heads; "
                        "set num_kv_heads to a divisor of num_heads")
    moe = f.num_experts > 0
    if moe:
        if f.experts_per_token <= 0 or f.moe_intermediate_size <= 0:
            bad = "experts_per_token" if f.experts_per_token <= 0 else "moe_intermediate_size"
            raise _fail(f, bad, f"a MoE model (num_experts={f.num_experts}) needs a positive {bad}")
        if f.experts_per_token > f.num_experts:
            raise _fail(f, "experts_per_token", f"{f.experts_per_token} experts per token exceed "
                        f"num_experts {f.num_experts}; it must be <= num_experts")
        if f.dense_layers >= f.num_layers:
            raise _fail(f, "dense_layers", f"{f.dense_layers} leading dense layers leave no MoE layer "
                        f"in {f.num_layers}; set dense_layers < num_layers")
    elif f.experts_per_token or f.moe_intermediate_size or f.shared_experts:
        raise _fail(f, "num_experts", "expert facts are given but num_experts is 0; set num_experts "
                    "(MoE) or drop experts_per_token/moe_intermediate_size/shared_experts (dense)")
    needs_dense = any(not is_moe_layer(f, i) for i in range(f.num_layers))
    if needs_dense and f.intermediate_size <= 0:
        raise _fail(f, "intermediate_size", "must be positive (the dense MLP width)")
    f = dataclasses.replace(f, head_dim=_head_dim(f), num_kv_heads=0 if _is_mla(f) else _kv_heads(f))
    count = count_params(f)
    given = {"params_total": count.total, "params_active": count.active, "params_embedding": count.embedding}
    for key, counted in given.items():
        declared = getattr(f, key)
        if declared is None:
            continue
        if counted == 0 or abs(declared - counted) / counted > PARAMS_TOLERANCE_FRAC:
            raise _fail(f, key, f"declared {declared:,} but the architecture facts give {counted:,} "
                        f"(more than {PARAMS_TOLERANCE_FRAC:.0%} apart); fix the facts or drop {key}")
        given[key] = declared
    return dataclasses.replace(f, **given)


# -------------------------------------------------------------------------------- memory
@dataclass(frozen=True, kw_only=True)
class MemoryEstimate:
    """Per-GPU memory of the model states (GiB). Activations, the CUDA context and allocator
    fragmentation are NOT included: the resource rules keep headroom for them."""

    weights_gb: float
    grads_gb: float
    optimizer_gb: float
    trainable_params: int
    kv_bytes_per_token: int  # whole model, unsharded

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.grads_gb + self.optimizer_gb


def kv_cache_bytes_per_token(facts: ModelFacts, dtype_bytes: int = KV_BYTES) -> int:
    """KV cache bytes per token: 2 (K and V) x layers x kv_heads x head_dim x dtype bytes.

    MLA (DeepSeek-V2) caches the compressed latent instead: layers x (kv_lora_rank +
    qk_rope_head_dim) x dtype bytes (arXiv 2405.04434, Sec. 2.1; what vLLM stores)."""
    if _is_mla(facts):
        return facts.num_layers * (facts.kv_lora_rank + facts.qk_rope_head_dim) * dtype_bytes
    return 2 * facts.num_layers * _kv_heads(facts) * _head_dim(facts) * dtype_bytes


def memory_gb(
    facts: ModelFacts,
    *,
    finetune: Finetune | str = Finetune.full,
    zero_stage: int = 0,
    num_gpus: int = 1,
    lora_rank: int = 64,
    lora_targets: list[str] | tuple[str, ...] = DEFAULT_LORA_TARGETS,
) -> MemoryEstimate:
    """Estimate per-GPU memory of the model states.

    ``finetune``: ``full`` (every weight trains), ``lora`` (frozen bf16 base + trainable
    adapters), or ``inference`` (weights only, split over ``num_gpus`` by tensor parallelism).
    Training bytes per trainable parameter: WEIGHT_BYTES + GRAD_BYTES + OPTIMIZER_BYTES = 16
    (ZeRO paper, arXiv 1910.02054). ``zero_stage`` shards over ``num_gpus``: stage 1 the
    optimizer states, stage 2 also the gradients, stage 3 also the weights; stage 0 is plain
    DDP (everything replicated).
    """
    mode = finetune.value if isinstance(finetune, Finetune) else str(finetune)
    if zero_stage not in (0, 1, 2, 3):
        raise RecipeError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero_stage}", key="train.zero_stage")
    if num_gpus < 1:
        raise RecipeError(f"num_gpus must be >= 1, got {num_gpus}", key="resources")
    f = resolve_facts(facts) if facts.params_total is None else facts
    total = count_params(f).total
    kv = kv_cache_bytes_per_token(f)
    if mode == "inference":
        return MemoryEstimate(weights_gb=total * WEIGHT_BYTES / num_gpus / GIB, grads_gb=0.0,
                              optimizer_gb=0.0, trainable_params=0, kv_bytes_per_token=kv)
    if mode == Finetune.full.value:
        trainable, frozen = total, 0
    elif mode == Finetune.lora.value:
        if lora_rank <= 0:
            raise RecipeError(f"LoRA rank must be positive, got {lora_rank}", key="train.lora_rank")
        trainable, frozen = lora_params(f, lora_rank, lora_targets), total
    else:
        raise RecipeError(f"unknown finetune mode {mode!r}; use full, lora or inference", key="train.finetune")
    shard_w = num_gpus if zero_stage >= 3 else 1
    shard_g = num_gpus if zero_stage >= 2 else 1
    shard_o = num_gpus if zero_stage >= 1 else 1
    return MemoryEstimate(
        weights_gb=(frozen + trainable) * WEIGHT_BYTES / shard_w / GIB,
        grads_gb=trainable * GRAD_BYTES / shard_g / GIB,
        optimizer_gb=trainable * OPTIMIZER_BYTES / shard_o / GIB,
        trainable_params=trainable,
        kv_bytes_per_token=kv,
    )
