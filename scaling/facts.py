"""Model facts from a ``config.json``: reading it (a directory, a file, the local Hugging Face
cache, or the hub) and recognising the architecture.

What it does
    * ``load_config(id_or_path)`` reads a ``config.json`` (directory, file, the local Hugging
      Face cache, or the hub when reachable); ``load_tokenizer_config`` and
      ``load_generation_config`` read the other two files a family recipe draws on.
    * ``facts_from_config(...)`` turns a config into validated ``ModelFacts`` for the
      architectures we recognise and refuses the rest; ``thinking_facts(tokenizer_config)``
      reads the chat template's thinking mode.
    * The counting, the validation and the memory estimates of those facts (``count_params``,
      ``resolve_facts``, ``memory_gb``, ...) are ``paramcount.py``'s.

How to run it
    ``python -c "from scaling.facts import *; from scaling.paramcount import count_params;``
    ``c = load_config('tests/data/configs/Qwen3-8B');``
    ``print(count_params(facts_from_config(c, family='qwen3', size='8b', label='8B', hf_id='Qwen/Qwen3-8B')))"``
    or ``scaling recipe derive`` (``scaling/derive.py``), which uses this module.

This module imports the standard library only (huggingface_hub lazily, in ``load_config``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import RecipeError

from .paramcount import resolve_facts
from .records import ModelFacts


# ------------------------------------------------------------------------ config.json
def _hub_file(repo_id: str, filename: str, *, required: bool) -> Path | None:
    """A file of a hub repo: from the local HF cache, else the hub (unless HF_HUB_OFFLINE)."""
    try:
        import huggingface_hub as hf
    except ImportError:
        raise RecipeError(f"{repo_id!r} is not a local path and huggingface_hub is not installed; "
                          "pass a directory holding config.json") from None
    cached = hf.try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return Path(cached)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline:
        if required:
            raise RecipeError(f"{repo_id}: {filename} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                              "is set; download it on a machine with network (hf download "
                              f"{repo_id} {filename}) or pass a local directory")
        return None
    try:
        return Path(hf.hf_hub_download(repo_id, filename))
    except Exception as err:  # network, 404, gated repo: all reported in one line
        if not required:
            return None
        reason = " ".join(str(err).split())[:200]
        raise RecipeError(f"{repo_id}: cannot fetch {filename} from the hub ({type(err).__name__}: {reason}); "
                          "check the id, your network/token, or pass a local directory") from None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: cannot read {what} ({err.__class__.__name__}); check the path") from None
    except json.JSONDecodeError as err:
        raise RecipeError(f"{path}: {what} is not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: {what} must hold a JSON object")
    return data


def _locate(id_or_path: str, filename: str, *, required: bool) -> Path | None:
    p = Path(id_or_path).expanduser()
    if p.is_file():
        if filename == "config.json":
            return p
        p = p.parent
    if p.is_dir():
        f = p / filename
        if f.is_file():
            return f
        if required:
            raise RecipeError(f"{p}: no {filename} in this directory; point --model at a model directory")
        return None
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", id_or_path) and not id_or_path.startswith((".", "/")):
        return _hub_file(id_or_path, filename, required=required)
    if required:
        raise RecipeError(f"{id_or_path}: no such file or directory, and not a hub id (owner/name)")
    return None


def load_config(id_or_path: str) -> dict[str, Any]:
    """Read a model's ``config.json`` from a directory, a ``config.json`` path, the local HF
    hub cache, or the hub (when reachable and HF_HUB_OFFLINE is not set)."""
    path = _locate(str(id_or_path), "config.json", required=True)
    if path is None:  # _locate raises when required; kept for type checkers
        raise RecipeError(f"{id_or_path}: config.json not found")
    return _read_json(path, "config.json")


def load_tokenizer_config(id_or_path: str) -> dict[str, Any] | None:
    """The model's ``tokenizer_config.json`` (chat template, added tokens) or None if absent."""
    path = _locate(str(id_or_path), "tokenizer_config.json", required=False)
    return _read_json(path, "tokenizer_config.json") if path else None


def load_generation_config(id_or_path: str) -> dict[str, Any] | None:
    """The model's ``generation_config.json`` (recommended sampling) or None if absent."""
    path = _locate(str(id_or_path), "generation_config.json", required=False)
    return _read_json(path, "generation_config.json") if path else None


def thinking_facts(tokenizer_config: dict[str, Any] | None) -> dict[str, str]:
    """Chat-template facts the evaluation needs: ``thinking`` is ``hybrid`` when the template
    has an ``enable_thinking`` switch (Qwen3), ``always`` when it emits/expects a thinking block
    without a switch (Qwen3-Thinking-2507, R1 distills), else ``none`` (budgets then apply to
    the whole response). Think tokens are taken from the added tokens when present."""
    tc = tokenizer_config or {}
    template = tc.get("chat_template") or ""
    if isinstance(template, list):  # [{"name": ..., "template": ...}]
        template = "\n".join(str(t.get("template", "")) for t in template if isinstance(t, dict))
    added = [str(v.get("content", "")) for v in (tc.get("added_tokens_decoder") or {}).values() if isinstance(v, dict)]
    start = next((t for t in added if t in ("<think>", "<thinking>")), "<think>")
    end = next((t for t in added if t in ("</think>", "</thinking>")), "</think>")
    # what the template appends for a new assistant turn decides; earlier mentions of </think>
    # only strip reasoning from past turns (Qwen3-Instruct-2507 has those and never thinks)
    mark = template.rfind("add_generation_prompt")
    generation = template[mark:] if mark >= 0 else template
    if "enable_thinking" in template:
        mode = "hybrid"
    elif start in generation:
        mode = "always"
    else:
        mode = "none"
    return {"thinking": mode, "think_start": start, "think_end": end}


ENCODER_DECODER_TYPES = {"t5", "mt5", "umt5", "bart", "mbart", "pegasus", "marian", "whisper", "longt5",
                         "switch_transformers", "led", "prophetnet", "bigbird_pegasus", "m2m_100", "nllb_moe"}
# model_type -> how its config names things. Every listed family is a decoder-only transformer
# with RMSNorm and gated MLPs, so count_params applies unchanged.
DENSE_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo2"}
MOE_TYPES = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"}
KNOWN_TYPES = DENSE_TYPES | MOE_TYPES
_TIED_DEFAULT = {"gemma", "gemma2"}  # their config classes default tie_word_embeddings=True
_QK_NORM = {"qwen3", "qwen3_moe", "olmoe", "olmo2"}
_QKV_BIAS = {"qwen2", "qwen2_moe"}  # always have q/k/v biases (no config key)


def _cfg_int(config: dict[str, Any], key: str, src: str, *, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        raise RecipeError(f"missing key {key!r}; the config.json is incomplete (re-download it)", path=src, key=key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecipeError(f"must be an integer, got {value!r}", path=src, key=key)
    return value


def facts_from_config(
    config: dict[str, Any], *, family: str, size: str, label: str, hf_id: str, source: str | None = None
) -> ModelFacts:
    """Recognise a decoder-only transformer ``config.json`` and return validated ``ModelFacts``.

    Refuses encoder-decoder and unknown architectures (one-line ``RecipeError``) rather than
    guessing, and inconsistent configs (missing keys, heads not dividing hidden size,
    experts per token > experts). ``source`` names the file in messages (default: hf_id).
    """
    src = source or f"{hf_id or 'config'}/config.json"
    model_type = str(config.get("model_type", "")).lower()
    if config.get("is_encoder_decoder") or model_type in ENCODER_DECODER_TYPES:
        raise RecipeError(f"model_type {model_type or '?'!r} is an encoder-decoder model; scaling studies "
                          "decoder-only reasoning models (use a causal LM)", path=src, key="model_type")
    if model_type not in KNOWN_TYPES:
        known = ", ".join(sorted(KNOWN_TYPES))
        raise RecipeError(f"unknown architecture {model_type or '(none)'!r}; recognised: {known}. Write the "
                          "facts by hand in recipes/families/<family>/<size>.yaml", path=src, key="model_type")
    g = lambda key, **kw: _cfg_int(config, key, src, **kw)  # noqa: E731
    heads = g("num_attention_heads")
    kv = config.get("num_key_value_heads")
    fields: dict[str, Any] = dict(
        family=family, size=size, label=label, hf_id=hf_id, model_type=model_type,
        hidden_size=g("hidden_size"), num_layers=g("num_hidden_layers"), num_heads=heads,
        num_kv_heads=heads if kv is None else g("num_key_value_heads"),
        head_dim=int(config.get("head_dim") or 0), vocab_size=g("vocab_size"),
        tie_embeddings=bool(config.get("tie_word_embeddings", model_type in _TIED_DEFAULT)),
        qk_norm=model_type in _QK_NORM,
        attention_bias=model_type in _QKV_BIAS or bool(config.get("attention_bias", False)),
        max_position=int(config.get("max_position_embeddings") or 32768),
        thinking="none",
    )
    if model_type in DENSE_TYPES:
        fields["intermediate_size"] = g("intermediate_size")
    elif model_type in ("mixtral", "olmoe"):
        width = g("intermediate_size")  # the expert width; every layer is MoE
        experts_key = "num_local_experts" if model_type == "mixtral" else "num_experts"
        fields.update(intermediate_size=width, moe_intermediate_size=width, num_experts=g(experts_key),
                      experts_per_token=g("num_experts_per_tok"))
    elif model_type in ("qwen2_moe", "qwen3_moe"):
        only = sorted(config.get("mlp_only_layers") or [])
        if only != list(range(len(only))):
            raise RecipeError(f"mlp_only_layers {only} is not a leading prefix of layers; scaling counts "
                              "leading dense layers only (write the facts by hand)", path=src, key="mlp_only_layers")
        fields.update(intermediate_size=int(config.get("intermediate_size") or 0),
                      moe_intermediate_size=g("moe_intermediate_size"), num_experts=g("num_experts"),
                      experts_per_token=g("num_experts_per_tok"), dense_layers=len(only),
                      moe_every=g("decoder_sparse_step", default=1))
        shared = int(config.get("shared_expert_intermediate_size") or 0)
        if shared:
            fields.update(shared_experts=1, shared_intermediate_size=shared)
    else:  # deepseek_v2 / deepseek_v3: MLA attention + shared experts + leading dense layers
        if g("moe_layer_freq", default=1) != 1:
            raise RecipeError("moe_layer_freq != 1 is not supported (every layer after "
                              "first_k_dense_replace must be MoE); write the facts by hand",
                              path=src, key="moe_layer_freq")
        fields.update(
            intermediate_size=g("intermediate_size"), moe_intermediate_size=g("moe_intermediate_size"),
            num_experts=g("n_routed_experts"), experts_per_token=g("num_experts_per_tok"),
            shared_experts=int(config.get("n_shared_experts") or 0),
            dense_layers=int(config.get("first_k_dense_replace") or 0),
            kv_lora_rank=g("kv_lora_rank"), q_lora_rank=int(config.get("q_lora_rank") or 0),
            qk_rope_head_dim=g("qk_rope_head_dim"), qk_nope_head_dim=g("qk_nope_head_dim"),
            v_head_dim=g("v_head_dim"), head_dim=0, num_kv_heads=0,
        )
    try:
        return resolve_facts(ModelFacts(**fields))
    except RecipeError as err:
        key = (err.key or "").removeprefix("model.")
        names = dict(_CONFIG_NAMES, num_experts="num_local_experts" if model_type == "mixtral" else
                     "n_routed_experts" if model_type.startswith("deepseek") else "num_experts")
        raise RecipeError(f"inconsistent config: {err.reason}", path=src, key=names.get(key, key) or None) from None


# ModelFacts field -> config.json key, for error messages about a config
_CONFIG_NAMES = {"num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
                 "num_layers": "num_hidden_layers", "experts_per_token": "num_experts_per_tok",
                 "dense_layers": "first_k_dense_replace", "moe_every": "decoder_sparse_step",
                 "shared_experts": "n_shared_experts"}
