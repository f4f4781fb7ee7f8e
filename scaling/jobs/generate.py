"""Sampling backends behind one ``Generator`` protocol: vLLM (GPU) and transformers (CPU, tests).

    gen = make_generator("auto", model_path, seed=0, tensor_parallel=1, data_parallel=1)
    out = gen.generate(prompts, n=8, max_tokens=32768, temperature=0.6, top_p=0.95, top_k=20,
                       seed=[seed_of(problem) for problem in problems])
    out[i][j]  # Sample(token_ids, text, finished) of prompt i, sample j

Design (what and why):

* **One seed per (prompt, sample).** ``seed`` is a per-prompt seed list (or one int, from which
  per-prompt seeds are derived from the prompt text); sample j of prompt i is drawn with
  ``sample_seed(seed_i, j)``. vLLM gets one request per sample with its own ``seed`` (``n=1``,
  prefix caching shares the prompt), so sample j does not depend on k, on batching or on the
  order of requests. The transformers backend samples with the Gumbel-max trick from a
  per-row ``torch.Generator``: one draw per row per step, so row r's tokens depend only on its
  seed and its logits (batch composition changes only the padded numerics).
* **Prefix property.** With these seeds, a run with ``max_tokens=B`` yields exactly the first B
  tokens of a run with a larger limit: the evaluation derives every budget from one generation.
* ``Sample.token_ids`` are the completion's tokens including the stop token when one was
  emitted (the cost actually decoded); ``text`` is decoded without the stop token and *with*
  special tokens, so ``</think>`` survives even where a tokenizer marks it special.
* Prompts are chat-template strings or token-id lists (continuations reuse a prefix as ids).

Here: the choice of backend (``make_generator``) and the transformers backend. The protocol and
the pure helpers (seeds, request building, SamplingParams dicts, stop handling) are in
jobs/sampling.py, tested without vLLM in ``tests/unit/test_generate_pure.py``; the vLLM backend is
jobs/vllm_generate.py. torch, transformers and vLLM are imported inside functions only.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from ..errors import JobError
from ..records import Backend
from .interventions import HFInterventionProcessor
from .models import without_router_logits

# the protocol and the pure helpers, importable from here as before (callers use this module)
from .sampling import (
    BudgetSlice,
    Generator,
    Prompt,
    Sample,
    build_requests,
    count_thinking_tokens,
    decoder,
    finish_sample,
    group_samples,
    prompt_seeds,
    sample_seed,
    sampling_params_dict,
    slice_budgets,
    stop_token_ids,
)
from .vllm_generate import VllmGenerator

__all__ = [
    "Sample",
    "Generator",
    "Prompt",
    "make_generator",
    "resolve_backend",
    "sample_seed",
    "prompt_seeds",
    "build_requests",
    "sampling_params_dict",
    "finish_sample",
    "stop_token_ids",
    "BudgetSlice",
    "slice_budgets",
    "count_thinking_tokens",
    "TransformersGenerator",
    "VllmGenerator",
]


# ---------------------------------------------------------------------------- backend choice
def resolve_backend(backend: Backend | str | None) -> str:
    """``auto`` -> ``vllm`` when vLLM imports and CUDA is available, else ``transformers``.

    ``backend`` is ``eval.backend`` (a ``records.Backend``, which compares equal to its name) or
    a name; None means ``auto``."""
    name = backend or "auto"
    if name not in ("auto", "vllm", "transformers"):
        raise JobError(f"eval.backend: unknown backend {name!r}; use auto, vllm or transformers")
    if name != "auto":
        return Backend(name).value
    try:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            return "transformers"
        import torch

        return "vllm" if torch.cuda.is_available() else "transformers"
    except Exception:  # a broken CUDA/vLLM install: fall back to the backend that always works
        return "transformers"


def make_generator(
    backend: Backend | str | None,
    model_path: str,
    *,
    seed: int,
    tensor_parallel: int = 1,
    data_parallel: int = 1,
    logits_processors: Any = None,
    intervention: Any = None,
    batch_size: int = 64,
    max_model_len: int | None = None,
    dtype: str = "auto",
) -> Generator:
    """Pick and build a backend. ``intervention`` (alias ``logits_processors``) is an
    ``interventions.InterventionConfig`` applied to every request, or None."""
    config = intervention if intervention is not None else logits_processors
    name = resolve_backend(backend)
    if name == "vllm":
        return VllmGenerator(
            model_path,
            seed=seed,
            tensor_parallel=tensor_parallel,
            data_parallel=data_parallel,
            intervention=config,
            max_model_len=max_model_len,
            dtype=dtype,
        )
    return TransformersGenerator(model_path, seed=seed, intervention=config, batch_size=batch_size, dtype=dtype)


# ---------------------------------------------------------------------- transformers backend
def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for k in range(0, len(items), max(1, size)):
        yield items[k : k + size]


class _SeededGumbelSampler:
    """Last logits processor of a greedy ``generate``: temperature / top-k / top-p, then adds
    Gumbel noise drawn from each row's own ``torch.Generator``; the argmax is then a sample
    from the filtered softmax, reproducible per row whatever the batch."""

    def __init__(self, seeds: list[int], *, temperature: float, top_p: float, top_k: int, device: Any) -> None:
        import torch

        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.generators = []
        for s in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(int(s))
            self.generators.append(g)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.temperature <= 0:
            return scores
        scores = scores.float() / self.temperature
        vocab = scores.shape[-1]
        if self.top_k and 0 < self.top_k < vocab:
            kth = torch.topk(scores, self.top_k, dim=-1).values[..., -1, None]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if 0 < self.top_p < 1.0:
            sorted_scores, idx = torch.sort(scores, descending=True, dim=-1)
            probs = sorted_scores.softmax(dim=-1)
            cum = probs.cumsum(dim=-1)
            remove = (cum - probs) >= self.top_p  # keep the smallest prefix reaching top_p
            remove[..., 0] = False
            scores = scores.scatter(-1, idx, sorted_scores.masked_fill(remove, float("-inf")))
        noise = torch.stack(
            [torch.rand(vocab, generator=g, device=scores.device, dtype=torch.float64) for g in self.generators]
        )
        gumbel = -torch.log(-torch.log(noise.clamp(min=1e-300, max=1.0 - 1e-16)))
        return scores.double() + gumbel


class TransformersGenerator:
    """``model.generate`` on CPU (or one GPU): greedy decoding over seeded-Gumbel-perturbed
    logits, which is exact sampling with per-row seeds (see module docstring)."""

    def __init__(self, model_path: str, *, seed: int, intervention: Any = None, batch_size: int = 64, dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.seed = seed
        self.batch_size = batch_size
        self.intervention = intervention
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(self.device)
        self.model.eval()
        without_router_logits(self.model)
        self.stop_ids = stop_token_ids(self.tokenizer, getattr(self.model, "generation_config", None))
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        self._decode = decoder(self.tokenizer)

    def _encode(self, p: Prompt) -> list[int]:
        return self.tokenizer.encode(p, add_special_tokens=False) if isinstance(p, str) else [int(t) for t in p]

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
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        requests = build_requests(prompts, n=n, seed=seed)
        encoded = {i: self._encode(p) for i, p in enumerate(prompts)}
        think_start = self.tokenizer.convert_tokens_to_ids("<think>")
        samples: list[Sample] = []
        for batch in _batches(requests, self.batch_size):
            rows = [encoded[r.prompt_index] for r in batch]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                ids[k, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                mask[k, width - len(r) :] = 1
            procs: list[Any] = []
            if self.intervention is not None:
                procs.append(HFInterventionProcessor(self.intervention, think_start_id=think_start))
            procs.append(
                _SeededGumbelSampler(
                    [r.seed for r in batch], temperature=temperature, top_p=top_p, top_k=top_k, device=self.device
                )
            )
            config = GenerationConfig(
                do_sample=False,
                max_new_tokens=int(max_tokens),
                eos_token_id=self.stop_ids,
                pad_token_id=self.pad_id,
                num_beams=1,
            )
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=config,
                    logits_processor=LogitsProcessorList(procs),
                )
            for k in range(len(rows)):
                samples.append(finish_sample(out[k, width:].tolist(), self.stop_ids, self._decode))
        return group_samples(requests, samples, len(prompts), n)

    def close(self) -> None:
        self.model = None

