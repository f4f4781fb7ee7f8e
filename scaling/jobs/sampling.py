"""The ``Generator`` protocol and the pure parts of sampling (no torch, no vLLM, no model):
``Sample``, seeds per (prompt, sample), request expansion, ``vllm.SamplingParams`` keywords, stop
handling, budget slices and thinking-token counts. Both backends (jobs/generate.py: transformers;
jobs/vllm_generate.py: vLLM) build on them; why the seeds look like this (one seed per (prompt,
sample), the prefix property) is in jobs/generate.py's docstring. Tested without a model in
tests/unit/test_generate_pure.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, Union

Prompt = Union[str, Sequence[int]]
_SEED_MOD = 2**63 - 1


@dataclass(frozen=True)
class Sample:
    """One completion. ``token_ids`` include the stop token when ``finished``."""

    token_ids: list[int]
    text: str
    finished: bool


class Generator(Protocol):
    """What curation and evaluation need from a sampling backend."""

    tokenizer: Any

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        seed: int | Sequence[int],
    ) -> list[list[Sample]]:
        """``out[i][j]`` is sample j of prompt i; sample j is drawn with ``sample_seed(seed_i, j)``."""

    def close(self) -> None:
        """Release the model (and any replica processes)."""


# ----------------------------------------------------------------------------- pure parts
def sample_seed(base: int, *parts: object) -> int:
    """A stable 63-bit seed from a base seed and any parts (sha256; never Python's hash)."""
    h = hashlib.sha256(repr((int(base), *parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") % _SEED_MOD


def prompt_seeds(prompts: Sequence[Prompt], seed: int | Sequence[int]) -> list[int]:
    """Per-prompt seeds: given as a list, or derived from one int and the prompt's content."""
    if isinstance(seed, int):
        return [sample_seed(seed, _prompt_key(p)) for p in prompts]
    seeds = [int(s) for s in seed]
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    return seeds


def _prompt_key(p: Prompt) -> str:
    data = p.encode() if isinstance(p, str) else ",".join(map(str, p)).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Request:
    """One (prompt, sample) generation request."""

    prompt_index: int
    sample_index: int
    prompt: Prompt
    seed: int


def build_requests(prompts: Sequence[Prompt], *, n: int, seed: int | Sequence[int]) -> list[Request]:
    """Expand prompts x samples into requests, each with its own seed, prompt-major order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seeds = prompt_seeds(prompts, seed)
    return [Request(i, j, p, sample_seed(seeds[i], j)) for i, p in enumerate(prompts) for j in range(n)]


def sampling_params_dict(
    *,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int,
    stop_token_ids: Sequence[int] = (),
    logit_bias: dict[int, float] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one request (n=1, its own seed).

    ``top_k <= 0`` disables top-k (vLLM: -1); temperature 0 is greedy. Special tokens are kept
    in the text and detokenisation is ours (``finish_sample``)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    d: dict[str, Any] = {
        "n": 1,
        "max_tokens": int(max_tokens),
        "temperature": float(temperature),
        "top_p": float(top_p) if temperature > 0 else 1.0,
        "top_k": int(top_k) if (top_k and top_k > 0 and temperature > 0) else -1,
        "seed": int(seed),
        "skip_special_tokens": False,
        "detokenize": False,
    }
    if stop_token_ids:
        d["stop_token_ids"] = [int(t) for t in stop_token_ids]
    if logit_bias:
        d["logit_bias"] = {int(t): float(v) for t, v in logit_bias.items()}
    return d


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Tokens that end a completion: eos, ``<|im_end|>``, ``<|endoftext|>``, and the model's
    generation_config eos ids (Qwen3 lists two)."""
    ids: list[int] = []

    def add(x: Any) -> None:
        for t in x if isinstance(x, (list, tuple)) else [x]:
            if isinstance(t, int) and t >= 0 and t not in ids:
                ids.append(t)

    add(getattr(tokenizer, "eos_token_id", None))
    if generation_config is not None:
        add(getattr(generation_config, "eos_token_id", None))
    unk = getattr(tokenizer, "unk_token_id", None)
    for tok in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != unk:
            add(tid)
    return ids


def finish_sample(token_ids: Sequence[int], stop_ids: Sequence[int], decode: Any) -> Sample:
    """Cut at the first stop token (kept in ``token_ids``, left out of ``text``) and decode."""
    ids = [int(t) for t in token_ids]
    stops = set(stop_ids)
    for k, t in enumerate(ids):
        if t in stops:
            return Sample(ids[: k + 1], decode(ids[:k]), True)
    return Sample(ids, decode(ids), False)


@dataclass(frozen=True)
class BudgetSlice:
    """A sample seen at one budget B (the first B tokens of the one-pass generation)."""

    budget_tokens: int
    finished: bool  # ended on its own within B tokens (stop token included in the count)
    scored_tokens: int  # min(len, B)
    decoded_tokens: int  # tokens first decoded for this budget: min(len, B) - min(len, B_prev)


def slice_budgets(n_tokens: int, finished: bool, budgets: Sequence[int]) -> list[BudgetSlice]:
    """Views of one sample of ``n_tokens`` tokens (generated with ``max_tokens=max(budgets)``)
    at each budget. ``decoded_tokens`` sum to ``n_tokens`` over all budgets, and their running
    sum up to B is what a separate run at budget B alone would decode."""
    bs = [int(b) for b in budgets]
    if not bs or any(b <= 0 for b in bs) or any(b2 <= b1 for b1, b2 in zip(bs, bs[1:])):
        raise ValueError(f"budgets must be positive and strictly increasing, got {bs}")
    if n_tokens > bs[-1]:
        raise ValueError(f"a sample of {n_tokens} tokens exceeds the largest budget {bs[-1]}")
    out, prev = [], 0
    for b in bs:
        scored = min(n_tokens, b)
        out.append(BudgetSlice(b, bool(finished and n_tokens <= b), scored, scored - prev))
        prev = scored
    return out


def count_thinking_tokens(token_ids: Sequence[int], think_end_id: int | None, *, open_at_start: bool = True) -> int:
    """Tokens spent thinking: up to and including the first ``</think>``; all of them when the
    block never closed; 0 when the prompt had already closed it (non-thinking mode)."""
    if not open_at_start:
        return 0
    if think_end_id is not None:
        for k, t in enumerate(token_ids):
            if t == think_end_id:
                return k + 1
    return len(token_ids)


def decoder(tokenizer: Any) -> Any:
    """Token ids -> text, special tokens kept (so ``</think>`` survives), no clean-up."""
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def group_samples(requests: list[Request], samples: list[Sample], n_prompts: int, n: int) -> list[list[Sample]]:
    """Samples in request order -> ``out[i][j]`` (prompt i, sample j)."""
    out: list[list[Sample | None]] = [[None] * n for _ in range(n_prompts)]
    for req, s in zip(requests, samples):
        out[req.prompt_index][req.sample_index] = s
    return [[s for s in row if s is not None] for row in out]
