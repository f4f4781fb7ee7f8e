"""The vLLM backend's wiring, against a fake ``vllm`` module (vLLM cannot be installed here):
one request per (prompt, sample) with its own seed, token-id prompts, stop handling, the
per-request intervention processor built from ``extra_args``, and a full evaluation job
through it. The real engine is exercised only on a GPU machine."""

from __future__ import annotations

import random
import sys
import types
from dataclasses import dataclass, field

import pytest

pytestmark = pytest.mark.integration

EOS_TEXT = "<|im_end|>"


@dataclass
class FakeSamplingParams:
    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None
    skip_special_tokens: bool = True
    detokenize: bool = True
    stop_token_ids: list = field(default_factory=list)
    extra_args: dict | None = None


class FakeLLM:
    """Deterministic 'sampling': token t of a request is drawn from random.Random(seed, t)."""

    instances: list["FakeLLM"] = []

    def __init__(self, model, **kwargs):
        from transformers import AutoTokenizer

        self.kwargs = kwargs
        self.tok = AutoTokenizer.from_pretrained(model)
        self.calls: list[tuple[list, list]] = []
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self.tok

    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append((prompts, params))
        eos = self.tok.convert_tokens_to_ids(EOS_TEXT)
        outs = []
        for p, sp in zip(prompts, params):
            rng = random.Random(sp.seed)
            ids, reason = [], "length"
            for _ in range(sp.max_tokens):
                t = eos if rng.random() < 0.08 else rng.randrange(10, 300)
                ids.append(t)
                if t == eos:
                    reason = "stop"
                    break
            outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=ids, finish_reason=reason)]))
        return outs


class FakeAdapter:
    def __init__(self, vllm_config=None, device=None, is_pin_memory=False):
        self.device = device


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = FakeLLM, FakeSamplingParams
    lp = types.ModuleType("vllm.v1.sample.logits_processor")
    lp.AdapterLogitsProcessor = FakeAdapter
    for name, mod in {"vllm": vllm, "vllm.v1": types.ModuleType("vllm.v1"),
                      "vllm.v1.sample": types.ModuleType("vllm.v1.sample"),
                      "vllm.v1.sample.logits_processor": lp}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    import scaling.jobs.interventions as inter

    monkeypatch.delitem(inter.__dict__, "VllmInterventionProcessor", raising=False)
    FakeLLM.instances.clear()
    yield vllm
    inter.__dict__.pop("VllmInterventionProcessor", None)


def test_vllm_generator_sends_one_seeded_request_per_sample(fake_vllm, tiny_qwen3_dir):
    from scaling.jobs.generate import VllmGenerator, make_generator

    gen = make_generator("vllm", tiny_qwen3_dir, seed=3, tensor_parallel=2)
    assert isinstance(gen, VllmGenerator)
    llm = FakeLLM.instances[-1]
    assert llm.kwargs["tensor_parallel_size"] == 2 and llm.kwargs["enable_prefix_caching"] is True
    out = gen.generate(["a prompt", [5, 6, 7]], n=3, max_tokens=40, temperature=0.6, top_p=0.95, top_k=20, seed=[1, 2])
    prompts, params = llm.calls[-1]
    assert len(params) == 6 and len({p.seed for p in params}) == 6
    assert all(p.n == 1 and p.max_tokens == 40 and p.top_k == 20 for p in params)
    assert prompts[3] == {"prompt_token_ids": [5, 6, 7]}
    assert [len(r) for r in out] == [3, 3]
    eos = gen.tokenizer.convert_tokens_to_ids(EOS_TEXT)
    for row in out:
        for s in row:
            assert s.finished == (s.token_ids[-1] == eos) and EOS_TEXT not in s.text
    # prefix property holds for the fake too: a shorter limit gives the same first tokens
    short = gen.generate(["a prompt"], n=3, max_tokens=10, temperature=0.6, top_p=0.95, top_k=20, seed=[1])
    assert [s.token_ids for s in short[0]] == [s.token_ids[:10] for s in out[0]]


def test_vllm_intervention_processor_acts_per_request(fake_vllm, tiny_qwen3_dir):
    torch = pytest.importorskip("torch")
    from scaling.jobs.generate import make_generator
    from scaling.jobs.interventions import EXTRA_ARGS_KEY, InterventionConfig

    config = InterventionConfig(mode="stop_temperature", think_end_id=7, stop_gamma=2.0)
    gen = make_generator("vllm", tiny_qwen3_dir, seed=0, intervention=config)
    llm = FakeLLM.instances[-1]
    (cls,) = llm.kwargs["logits_processors"]
    assert cls.__name__ == "VllmInterventionProcessor" and cls.__module__ == "scaling.jobs.interventions"
    gen.generate(["x"], n=1, max_tokens=4, temperature=0.6, top_p=0.95, top_k=20, seed=0)
    sp = llm.calls[-1][1][0]
    assert sp.extra_args[EXTRA_ARGS_KEY]["stop_gamma"] == 2.0 and sp.extra_args[EXTRA_ARGS_KEY]["thinking_open"]
    proc = cls().new_req_logits_processor(sp)
    row = proc([1, 2], torch.zeros(10))
    assert row[7].item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    row = proc([1, 2, 7], torch.zeros(10))  # </think> emitted: no more effect
    assert row[7].item() == 0.0
    assert cls().new_req_logits_processor(FakeSamplingParams()) is None  # requests without the key opt out


def test_evaluation_job_runs_on_the_vllm_backend(fake_vllm, tiny_qwen3_dir, tmp_path):
    import json

    import pyarrow.parquet as pq

    from scaling.benchmarks import load_benchmark
    from scaling.jobs.evaluate import evaluate_benchmark
    from scaling.jobs.tiny import tiny_facts
    from scaling.records import Backend, EvalSettings, RunSpec, Stage

    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps({"problem": f"{i}+1", "answer": str(i + 1)}) + "\n" for i in range(4)))
    run = RunSpec(study="t", run_id="x/eval-base", size="x", stage=Stage.eval, model=tiny_facts("0_1m"),
                  model_source=tiny_qwen3_dir, checkpoint="base", seed=1,
                  eval=EvalSettings(benchmarks=[str(bench)], budgets=[8, 32], samples_per_problem=2,
                                    backend=Backend.vllm))
    info = evaluate_benchmark(run, load_benchmark(str(bench)), tmp_path / "out", model_path=tiny_qwen3_dir)
    rows = pq.read_table(tmp_path / "out" / "records.parquet").to_pylist()
    assert info["records"] == len(rows) == 4 * 2 * 2
    assert info["decoded_tokens"] == sum(r["response_tokens"] for r in rows if r["budget_tokens"] == 32)
    llm = FakeLLM.instances[-1]
    assert all(p.max_tokens == 32 for p in llm.calls[0][1])  # one generation, at the largest budget
