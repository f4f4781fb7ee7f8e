"""jobs/generate.py (with jobs/sampling.py and jobs/vllm_generate.py) pure logic, without vLLM or
a model: seeds, requests, SamplingParams, stop handling, budget slicing."""

from __future__ import annotations

import pytest

from scaling.errors import JobError
from scaling.jobs.generate import (
    BudgetSlice,
    build_requests,
    count_thinking_tokens,
    finish_sample,
    prompt_seeds,
    resolve_backend,
    sample_seed,
    sampling_params_dict,
    slice_budgets,
    stop_token_ids,
)


def test_sample_seeds_are_stable_distinct_and_in_range():
    assert sample_seed(0, "p1", 0) == sample_seed(0, "p1", 0)
    seeds = {sample_seed(0, "p1", j) for j in range(100)} | {sample_seed(1, "p1", 0)}
    assert len(seeds) == 101 and all(0 <= s < 2**63 for s in seeds)


def test_requests_have_one_seed_per_prompt_and_sample_independent_of_order_and_k():
    reqs = build_requests(["a", "b"], n=3, seed=[11, 22])
    assert [(r.prompt_index, r.sample_index) for r in reqs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert len({r.seed for r in reqs}) == 6
    # sample j of a prompt keeps its seed when the batch or k changes
    alone = build_requests(["b"], n=5, seed=[22])
    assert [r.seed for r in alone[:3]] == [r.seed for r in reqs[3:]]


def test_int_seed_derives_per_prompt_seeds_from_content():
    a = prompt_seeds(["x", "y"], 5)
    assert a == prompt_seeds(["y", "x"], 5)[::-1]  # order-free
    assert prompt_seeds([[1, 2, 3]], 5) != prompt_seeds([[1, 2, 4]], 5)
    with pytest.raises(ValueError):
        prompt_seeds(["x"], [1, 2])
    with pytest.raises(ValueError):
        build_requests(["x"], n=0, seed=1)


def test_sampling_params_dict_matches_vllm_keywords():
    d = sampling_params_dict(max_tokens=32768, temperature=0.6, top_p=0.95, top_k=20, seed=3, stop_token_ids=[7],
                             logit_bias={9: 2.5})
    assert d == {"n": 1, "max_tokens": 32768, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "seed": 3,
                 "skip_special_tokens": False, "detokenize": False, "stop_token_ids": [7], "logit_bias": {9: 2.5}}
    greedy = sampling_params_dict(max_tokens=8, temperature=0.0, top_p=0.9, top_k=20, seed=0)
    assert greedy["top_k"] == -1 and greedy["top_p"] == 1.0
    assert sampling_params_dict(max_tokens=8, temperature=1.0, top_p=1.0, top_k=0, seed=0)["top_k"] == -1
    with pytest.raises(ValueError):
        sampling_params_dict(max_tokens=0, temperature=1.0, top_p=1.0, top_k=0, seed=0)


def test_finish_sample_cuts_at_the_first_stop_and_keeps_it_in_the_count():
    dec = lambda ids: ",".join(map(str, ids))  # noqa: E731
    s = finish_sample([5, 6, 2, 9, 9], [2, 3], dec)
    assert (s.token_ids, s.text, s.finished) == ([5, 6, 2], "5,6", True)
    s = finish_sample([5, 6], [2], dec)
    assert (s.token_ids, s.text, s.finished) == ([5, 6], "5,6", False)


def test_slice_budgets_finished_within_and_incremental_cost():
    sl = slice_budgets(5000, True, [2048, 4096, 8192])
    assert sl == [BudgetSlice(2048, False, 2048, 2048), BudgetSlice(4096, False, 4096, 2048),
                  BudgetSlice(8192, True, 5000, 904)]
    assert sum(s.decoded_tokens for s in sl) == 5000
    # a sample that hit the largest budget never finished anywhere
    assert not any(s.finished for s in slice_budgets(8192, False, [2048, 8192]))
    # the stop token counts: exactly B tokens including it is finished within B
    assert slice_budgets(2048, True, [2048])[0].finished


@pytest.mark.parametrize("budgets", [[], [0, 8], [8, 8], [16, 8]])
def test_slice_budgets_refuses_bad_budgets(budgets):
    with pytest.raises(ValueError):
        slice_budgets(4, True, budgets)


def test_slice_budgets_refuses_a_sample_longer_than_the_largest_budget():
    with pytest.raises(ValueError):
        slice_budgets(9, False, [8])


def test_thinking_tokens_count_up_to_the_end_marker():
    assert count_thinking_tokens([1, 2, 9, 3], 9) == 3
    assert count_thinking_tokens([1, 2, 3], 9) == 3  # never closed: all thinking
    assert count_thinking_tokens([1, 2, 3], 9, open_at_start=False) == 0


class FakeTok:
    eos_token_id = 4
    unk_token_id = None

    def convert_tokens_to_ids(self, t):
        return {"<|im_end|>": 4, "<|endoftext|>": 3}.get(t)


class GenCfg:
    eos_token_id = [4, 8]


def test_stop_tokens_merge_tokenizer_and_generation_config():
    assert stop_token_ids(FakeTok(), GenCfg()) == [4, 8, 3]


def test_backend_resolution():
    assert resolve_backend("transformers") == "transformers"
    assert resolve_backend("vllm") == "vllm"
    assert resolve_backend("auto") in ("vllm", "transformers")
    with pytest.raises(JobError, match="unknown backend"):
        resolve_backend("tgi")


def test_vllm_backend_without_vllm_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    from scaling.jobs.generate import VllmGenerator

    with pytest.raises(JobError, match="vLLM is not installed"):
        VllmGenerator("/nonexistent", seed=0)


# ------------------------------------------- the vLLM contract (what CPU tests cannot show)
class _SP:
    """Records SamplingParams keywords; the real class is exercised in the vllm tier."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Out:
    def __init__(self, ids, reason, stop_reason=None):
        import types

        self.outputs = [types.SimpleNamespace(token_ids=ids, finish_reason=reason, stop_reason=stop_reason)]


class _LLM:
    """Scripted engine: completion position t samples SCRIPT[t]; honours max_tokens and stops,
    and reports a stop_token_ids hit as vLLM does (stop_reason = the token id)."""

    SCRIPT = [11, 12, 9, 13, 4, 14, 15]
    last: "_LLM | None" = None

    def __init__(self, **kw):
        self.kwargs, self.calls = kw, []
        _LLM.last = self

    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append((prompts, params))
        outs = []
        for p, sp in zip(prompts, params):
            pos, ids = len(p["prompt_token_ids"]) - 2, []
            while len(ids) < sp.max_tokens and pos + len(ids) < len(self.SCRIPT):
                ids.append(self.SCRIPT[pos + len(ids)])
                if ids[-1] in sp.stop_token_ids:
                    outs.append(_Out(ids, "stop", ids[-1]))
                    break
            else:
                outs.append(_Out(ids, "length"))
        return outs


class _Tok:
    def encode(self, text, add_special_tokens=False):
        return [1, 2]

    def convert_tokens_to_ids(self, t):
        return {"<think>": 8}.get(t)


@pytest.fixture
def fake_vllm(monkeypatch):
    import sys
    import types

    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = _LLM, _SP
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def test_vllm_engine_gets_no_logits_processor(fake_vllm):
    """vLLM's CUDA Model Runner V2 rejects V1 logits processors at start-up
    (v1/worker/gpu/sample/logits_processor/loader.py): LLM() must get none, with or without
    an intervention; interventions travel as SamplingParams only."""
    from scaling.jobs.vllm_generate import _vllm_llm

    _vllm_llm("/m", seed=3, tensor_parallel=2, max_model_len=64, dtype="auto")
    assert _LLM.last.kwargs == dict(model="/m", tensor_parallel_size=2, seed=3, enable_prefix_caching=True,
                                    dtype="auto", max_model_len=64)


def test_vllm_interventions_reach_sampling_params_as_logit_bias_and_stops(fake_vllm):
    import math

    from scaling.jobs.sampling import Request
    from scaling.jobs.vllm_generate import _vllm_run, phase_seed
    from scaling.jobs.interventions import InterventionConfig

    params = dict(max_tokens=6, temperature=0.6, top_p=0.95, top_k=20, stop_token_ids=[4])
    llm = _LLM()
    config = InterventionConfig(mode="stop_temperature", think_end_id=9, stop_gamma=4.0)
    (ids, stopped), = _vllm_run(llm, _Tok(), [Request(0, 0, "p", 77)], params, config)
    assert ids == [11, 12, 9, 13, 4] and stopped
    (p0,), (p1,) = (c[1] for c in llm.calls)
    assert p0.logit_bias == {9: pytest.approx(math.log(4.0))} and p0.stop_token_ids == [4, 9] and p0.seed == 77
    assert not hasattr(p1, "logit_bias") and p1.stop_token_ids == [4] and p1.seed == phase_seed(77, 1) != 77
    assert llm.calls[1][0] == [{"prompt_token_ids": [1, 2, 11, 12, 9]}] and p1.max_tokens == 3
    assert all(not hasattr(p, "extra_args") and p.n == 1 for c in llm.calls for p in c[1])
    # no intervention: one call per request, the request's own seed, nothing extra
    llm = _LLM()
    (ids, stopped), = _vllm_run(llm, _Tok(), [Request(0, 0, "p", 77)], params, None)
    assert ids == [11, 12, 9, 13, 4] and stopped and len(llm.calls) == 1 and llm.calls[0][1][0].seed == 77


def test_vllm_budget_forcing_appends_wait_and_forces_the_end(fake_vllm):
    from scaling.jobs.sampling import Request
    from scaling.jobs.vllm_generate import _vllm_run
    from scaling.jobs.interventions import InterventionConfig

    params = dict(max_tokens=9, temperature=0.6, top_p=0.95, top_k=20, stop_token_ids=[4])
    config = InterventionConfig(mode="budget_forcing", think_end_id=9, eos_id=4, min_thinking_tokens=5, max_waits=1,
                                max_thinking_tokens=6, wait_ids=(30, 31), answer_ids=(40,), answer_tokens=3)
    (ids, stopped), = _vllm_run(_LLM(), _Tok(), [Request(0, 0, "p", 5)], params, config)
    # 11 12 [</think> sampled below 5: dropped, "Wait" appended] then the script from position 4:
    # 4 = eos, but the one wait is used: eos ends it
    assert ids == [11, 12, 30, 31, 4] and stopped


def test_vllm_stop_tau_is_refused_with_a_clear_error(fake_vllm, monkeypatch):
    from scaling.jobs import generate
    from scaling.jobs.interventions import InterventionConfig

    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", lambda *a, **k: _Tok(), raising=False)
    config = InterventionConfig(mode="stop_temperature", think_end_id=9, stop_tau=2.0)
    with pytest.raises(JobError, match="stop_tau"):
        generate.VllmGenerator("/m", seed=0, intervention=config)
