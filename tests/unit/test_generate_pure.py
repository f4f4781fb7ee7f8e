"""jobs/generate.py pure logic, without vLLM or a model: seeds, requests, SamplingParams,
stop handling, budget slicing."""

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
                             extra_args={"k": 1})
    assert d == {"n": 1, "max_tokens": 32768, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "seed": 3,
                 "skip_special_tokens": False, "detokenize": False, "stop_token_ids": [7], "extra_args": {"k": 1}}
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
