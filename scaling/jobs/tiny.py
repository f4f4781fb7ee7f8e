"""Tiny Qwen3 models and their tokenizer, built locally (no model hub) with random weights.

What it does: ``build_tokenizer`` trains a small byte-level BPE (the same kind of tokenizer
Qwen3 uses) on text from :mod:`scaling.task`, with digits always split into single tokens, the
Qwen special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``; ``<think>`` and
``</think>`` as added, non-special tokens exactly as in Qwen3) and a Qwen3-style chat template
(``enable_thinking``, ``add_generation_prompt``).
``build_model`` makes a ``Qwen3ForCausalLM`` / ``Qwen3MoeForCausalLM`` from ``ModelFacts`` with a
seeded random init and saves model + tokenizer so that everything downstream loads it with
the same ``from_pretrained(path)`` code as a real checkpoint. ``tiny_facts`` names the ladder.

Run it:  ``python -m scaling.jobs.tiny OUT_DIR --size 1m`` (builds and saves one model).

Departs from Qwen3: the vocabulary has ``TINY_VOCAB`` entries instead of 151k, so a 2-layer model
is mostly transformer, not embedding; the chat template keeps only the single-turn parts the
method uses (system, user, assistant, thinking block), without tool calls.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..records import ModelFacts
from ..task import corpus

# Total entries incl. special tokens; the model's vocab_size (see tiny_facts). 474 is every merge the
# corpus allows: each pre-token of the task's text (a word, " +", a digit) is one token, so the
# method's prompt suffix is 16 tokens instead of 35 and a training example 153 instead of 186
# (docs/tiny-ladder.md, "Where the time goes"). Digits stay single tokens (the pre-tokenizer).
TINY_VOCAB = 474
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Like Qwen3 (tokenizer_config.json: "special": false), the thinking markers are added tokens
# that are NOT special: decoding with skip_special_tokens=True (as TRL does) keeps them.
THINK_TOKENS = ("<think>", "</think>")
MAX_POSITION = 1024  # prompt (~60 tokens) + the largest tiny budget (512) fit with room to spare

_SPLIT = r" ?\p{N}| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# The same layout as Qwen3's tokenizer_config chat template, reduced to what the method uses.
# enable_thinking=False inserts an empty thinking block after the generation prompt (Qwen3's
# switch); a final assistant turn with "<think>...</think>" keeps its block (Qwen3 does too).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{- '<|im_start|>system\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'user' -%}"
    "{{- '<|im_start|>user\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- set content = message['content'] -%}"
    "{%- if message.get('reasoning_content') -%}"
    "{%- set content = '<think>\\n' + message['reasoning_content'].strip('\\n') + '\\n</think>\\n\\n'"
    " + content.lstrip('\\n') -%}"
    "{%- elif not loop.last and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# The ladder: (hidden, layers, heads, kv_heads, intermediate). head_dim = hidden // heads.
# Parameter counts (tied embeddings, TINY_VOCAB) are filled by scaling.paramcount / the model itself.
_DENSE = {
    "0_1m": (48, 2, 4, 2, 128),
    "0_3m": (64, 4, 4, 2, 192),
    "1m": (128, 4, 4, 2, 384),
    "3m": (192, 6, 6, 2, 576),
}
# MoE: (hidden, layers, heads, kv_heads, experts, experts_per_token, moe_intermediate)
_MOE = {"1_3m_a0_4m": (96, 4, 4, 2, 8, 2, 128)}
TINY_SIZES = (*_DENSE, *_MOE)


def tiny_facts(size: str) -> ModelFacts:
    """Architecture facts of one tiny size (``0_1m`` .. ``3m`` dense, ``1_3m_a0_4m`` MoE).

    ``recipes/families/tiny/<size>.yaml`` carries the same numbers (a unit test checks that).
    """
    common: dict[str, Any] = dict(
        family="tiny",
        size=size,
        hf_id=f"tiny://{size}",
        vocab_size=TINY_VOCAB,
        tie_embeddings=True,
        qk_norm=True,
        attention_bias=False,
        max_position=MAX_POSITION,
        thinking="hybrid",
    )
    label = size.upper().replace("_", ".").replace("M.A", "M-A")
    if size in _DENSE:
        h, layers, heads, kv, inter = _DENSE[size]
        return ModelFacts(
            **common, label=label, model_type="qwen3", hidden_size=h, num_layers=layers, num_heads=heads,
            num_kv_heads=kv, head_dim=h // heads, intermediate_size=inter,
        )
    if size in _MOE:
        h, layers, heads, kv, experts, topk, moe_inter = _MOE[size]
        return ModelFacts(
            **common, label=label, model_type="qwen3_moe", hidden_size=h, num_layers=layers, num_heads=heads,
            num_kv_heads=kv, head_dim=h // heads, intermediate_size=moe_inter * topk, num_experts=experts,
            experts_per_token=topk, moe_intermediate_size=moe_inter,
        )
    raise RecipeError(f"unknown tiny size {size!r}; known: {', '.join(TINY_SIZES)}", key="size")


def build_tokenizer(out_dir: str | Path | None = None) -> Any:
    """Train the tiny byte-level BPE and wrap it as a ``PreTrainedTokenizerFast``.

    Deterministic: the merges are learned from a fixed, seeded sample of the task's text.
    ``eos`` is ``<|im_end|>`` and ``pad`` is ``<|endoftext|>`` (as in Qwen3's chat models).
    Saved with ``save_pretrained(out_dir)`` when ``out_dir`` is given.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # GPT-2's split, except that a number is cut into single digits (each may keep its leading
    # space, as Qwen's pre-tokenizer does with \p{N}): arithmetic stays digit by digit.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB - len(THINK_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    extra = [
        "Let's think step by step and output the final answer within \\boxed{}.",
        "Please reason step by step, and put your final answer within \\boxed{}.",
        "Think briefly. Think moderately. Think thoroughly. Final answer: Wait",
    ]
    tok.train_from_iterator(corpus() + extra * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=MAX_POSITION,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast.chat_template = CHAT_TEMPLATE
    if len(fast) != TINY_VOCAB:
        raise RuntimeError(f"tiny tokenizer has {len(fast)} entries, expected {TINY_VOCAB}: corpus too small")
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def _config(facts: ModelFacts, tokenizer: Any) -> Any:
    """Qwen3Config / Qwen3MoeConfig from the facts (only the fields a tiny model needs)."""
    from transformers import Qwen3Config, Qwen3MoeConfig

    if facts.vocab_size < len(tokenizer):
        raise ValueError(f"{facts.size}: vocab_size {facts.vocab_size} < tokenizer size {len(tokenizer)}")
    common = dict(
        vocab_size=facts.vocab_size,
        hidden_size=facts.hidden_size,
        num_hidden_layers=facts.num_layers,
        num_attention_heads=facts.num_heads,
        num_key_value_heads=facts.num_kv_heads or facts.num_heads,
        head_dim=facts.head_dim or facts.hidden_size // facts.num_heads,
        max_position_embeddings=facts.max_position,
        tie_word_embeddings=facts.tie_embeddings,
        attention_bias=facts.attention_bias,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    if facts.model_type == "qwen3_moe" or facts.num_experts > 0:
        return Qwen3MoeConfig(
            **common,
            intermediate_size=facts.intermediate_size or facts.moe_intermediate_size,
            moe_intermediate_size=facts.moe_intermediate_size,
            num_experts=facts.num_experts,
            num_experts_per_tok=facts.experts_per_token,
            decoder_sparse_step=max(1, facts.moe_every),
            mlp_only_layers=list(range(facts.dense_layers)),
            norm_topk_prob=True,
            router_aux_loss_coef=0.001,
        )
    return Qwen3Config(**common, intermediate_size=facts.intermediate_size)


def build_model(facts: ModelFacts, out_dir: str | Path, seed: int = 0) -> str:
    """Build a randomly initialised tiny Qwen3 (or Qwen3-MoE) from ``facts``; save model +
    tokenizer + generation config into ``out_dir``; return ``str(out_dir)``.

    The same ``seed`` gives bit-identical weights. The model is saved in float32 (CPU).
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    config = _config(facts, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=True,
        temperature=0.6,
        top_p=0.95,
        top_k=20,
    )
    model.save_pretrained(str(out))
    return str(out)


def main(argv: list[str] | None = None) -> int:
    """CLI: build one tiny model (``--size``) or only the tokenizer (``--tokenizer-only``)."""
    ap = argparse.ArgumentParser(prog="python -m scaling.jobs.tiny", description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--size", default="1m", choices=TINY_SIZES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-only", action="store_true")
    args = ap.parse_args(argv)
    if args.tokenizer_only:
        build_tokenizer(args.out_dir)
    else:
        build_model(replace(tiny_facts(args.size)), args.out_dir, seed=args.seed)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
