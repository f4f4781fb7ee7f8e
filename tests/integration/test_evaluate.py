"""The evaluation job on CPU with a tiny Qwen3: one generation -> every budget, equality with
separate per-budget runs, resume after a crash, the budget-forcing protocol, interventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BUDGETS = [16, 32, 64, 128]


@pytest.fixture(scope="module")
def chatty_model_dir(tiny_qwen3_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny Qwen3 with its </think> and <|im_end|> output rows aligned with the mean final
    hidden state, so random-weight samples close thinking and stop at varied lengths (a random
    tiny model almost never stops, which would leave every budget truncated)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    enc = tok(["What is 2+3? Let's think", "Tom has 5 apples and buys 7 more"], return_tensors="pt", padding=True)
    with torch.no_grad():
        h = model(**enc, output_hidden_states=True).hidden_states[-1].reshape(-1, model.config.hidden_size).mean(0)
        w = model.get_output_embeddings().weight
        for token, logit in (("</think>", 1.0), ("<|im_end|>", 0.6)):
            w[tok.convert_tokens_to_ids(token)] = h * (logit / h.dot(h))
    out = tmp_path_factory.mktemp("chatty")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    f = tmp_path_factory.mktemp("bench") / "arith.jsonl"
    rows = [{"id": f"p{i}", "problem": f"What is {i} + {2 * i}?", "answer": str(3 * i)} for i in range(6)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(f)


def make_run(model_dir: str, bench: str, **eval_kw):
    from scaling.jobs.tiny import tiny_facts
    from scaling.records import Backend, EvalSettings, RunSpec, Stage

    settings = dict(benchmarks=[bench], budgets=BUDGETS, samples_per_problem=3, backend=Backend.transformers)
    settings.update(eval_kw)
    return RunSpec(
        study="t",
        run_id="0_1m/eval-base",
        size="0_1m",
        stage=Stage.eval,
        model=tiny_facts("0_1m"),
        model_source=model_dir,
        checkpoint="base",
        eval=EvalSettings(**settings),
        seed=7,
    )


def write_run_yaml(study: Path, run) -> Path:
    import yaml

    from scaling.records import to_dict

    path = study / run.run_id / "run.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(run)))
    return path


def read(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def generator(chatty_model_dir: str):
    from scaling.jobs.generate import make_generator

    return make_generator("transformers", chatty_model_dir, seed=7, batch_size=64)


def run_bench(tmp: Path, generator, chatty_model_dir, bench_file, name="out", chunk=16, **kw):
    from scaling.benchmarks import load_benchmark
    from scaling.jobs.evaluate import evaluate_benchmark

    run = make_run(chatty_model_dir, bench_file, **kw)
    out = tmp / name
    evaluate_benchmark(run, load_benchmark(bench_file), out, model_path=chatty_model_dir, generator=generator,
                       chunk_problems=chunk)
    return out


def test_job_writes_records_for_every_budget_from_one_generation(tmp_path, chatty_model_dir, bench_file):
    from scaling.records import SCHEMA_VERSION
    from scaling.durable import read_done

    run_yaml = write_run_yaml(tmp_path / "study", make_run(chatty_model_dir, bench_file))
    from scaling.jobs.evaluate import main

    main(str(run_yaml), bench_file)
    out = run_yaml.parent / "arith"
    recs = read(out / "records.parquet")
    assert len(recs) == 6 * 3 * len(BUDGETS)
    assert {r["budget_tokens"] for r in recs} == set(BUDGETS)
    texts = read(out / "texts.parquet")
    assert len([t for t in texts if t["budget_tokens"] == 0]) == 6 * 3  # one generation per (problem, sample)
    done = read_done(out)
    assert done["records"] == len(recs) and done["rows"]["records.parquet"] == len(recs)
    # decoded tokens: the one-pass cost equals the generation's length, never one run per budget
    lengths = {}
    for r in recs:
        lengths.setdefault((r["problem_id"], r["sample"]), 0)
        lengths[(r["problem_id"], r["sample"])] += r["decoded_tokens"]
    largest = {(r["problem_id"], r["sample"]): r["response_tokens"] for r in recs if r["budget_tokens"] == BUDGETS[-1]}
    assert lengths == largest
    # monotone: finishing within B implies finishing within every larger budget
    for key in largest:
        rows = sorted((r for r in recs if (r["problem_id"], r["sample"]) == key), key=lambda r: r["budget_tokens"])
        flags = [r["finished"] for r in rows]
        assert flags == sorted(flags)
        assert all(r["grade"] == "truncated" and not r["correct"] for r in rows if not r["finished"])
    assert any(r["finished"] for r in recs) and not all(r["finished"] for r in recs)  # a real spectrum
    import pyarrow.parquet as pq

    assert pq.read_schema(out / "records.parquet").metadata[b"schema_version"] == SCHEMA_VERSION.encode()
    # a second call is a no-op (DONE)
    assert main(str(run_yaml), bench_file)["records"] == len(recs)


def test_truncation_results_equal_separate_per_budget_runs(tmp_path, generator, chatty_model_dir, bench_file):
    one = read(run_bench(tmp_path, generator, chatty_model_dir, bench_file, "spectrum") / "records.parquet")
    keys = ("finished", "correct", "grade", "response_tokens", "thinking_tokens", "answer")
    for b in BUDGETS:
        sep = read(run_bench(tmp_path, generator, chatty_model_dir, bench_file, f"b{b}", budgets=[b]) / "records.parquet")
        mine = {(r["problem_id"], r["sample"]): tuple(r[k] for k in keys) for r in one if r["budget_tokens"] == b}
        theirs = {(r["problem_id"], r["sample"]): tuple(r[k] for k in keys) for r in sep}
        assert mine == theirs, f"budget {b} differs"


def test_requeued_job_continues_from_unfinished_problems(tmp_path, generator, chatty_model_dir, bench_file, monkeypatch):
    import scaling.jobs.evaluate as ev

    calls = []
    real = ev._evaluate_chunk

    def crash_on_third(ctx, chunk):
        calls.append([p.id for p in chunk])
        if len(calls) == 3:
            raise KeyboardInterrupt("preempted")
        return real(ctx, chunk)

    monkeypatch.setattr(ev, "_evaluate_chunk", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_bench(tmp_path, generator, chatty_model_dir, bench_file, "resumed", chunk=2)
    assert not (tmp_path / "resumed" / "DONE").exists()
    calls.clear()
    monkeypatch.setattr(ev, "_evaluate_chunk", lambda ctx, chunk: calls.append([p.id for p in chunk]) or real(ctx, chunk))
    run_bench(tmp_path, generator, chatty_model_dir, bench_file, "resumed", chunk=2)
    assert calls == [["p4", "p5"]]  # only the chunk that never finished
    monkeypatch.setattr(ev, "_evaluate_chunk", real)
    fresh = read(run_bench(tmp_path, generator, chatty_model_dir, bench_file, "fresh", chunk=2) / "records.parquet")
    assert read(tmp_path / "resumed" / "records.parquet") == fresh
    assert not (tmp_path / "resumed" / ".progress").exists()


def test_budget_forcing_protocol_answers_at_each_budget(tmp_path, generator, chatty_model_dir, bench_file):
    recs = read(run_bench(tmp_path, generator, chatty_model_dir, bench_file, "bf", protocol="budget_forcing",
                          answer_tokens=8) / "records.parquet")
    trunc = read(run_bench(tmp_path, generator, chatty_model_dir, bench_file, "tr") / "records.parquet")
    forced = [r for r in recs if not r["finished"]]
    assert forced
    for r in forced:
        assert r["budget_tokens"] < r["response_tokens"] <= r["budget_tokens"] + 8 + 16  # prefix + close + answer
        assert r["grade"] != "truncated"  # the forced answer closed the thinking block
    same = [(a, b) for a, b in zip(recs, trunc) if a["finished"]]
    assert same and all(a == b for a, b in same)  # finished samples are graded exactly as in truncation
    texts = read(tmp_path / "bf" / "texts.parquet")
    assert any(t["budget_tokens"] > 0 and "</think>" in t["text"] for t in texts)


# ----------------------------------------------------------------------------- interventions
def thinking_lengths(model_dir: str, **settings) -> tuple[list[int], list[int]]:
    """(thinking tokens, total tokens) of 8 prompts x 4 samples under an intervention."""
    from transformers import AutoTokenizer

    from scaling.jobs.data import build_prompt
    from scaling.jobs.generate import count_thinking_tokens, make_generator
    from scaling.jobs.interventions import make_intervention_config
    from scaling.records import EvalSettings

    tok = AutoTokenizer.from_pretrained(model_dir)
    config = make_intervention_config(EvalSettings(**settings), tok)
    gen = make_generator("transformers", model_dir, seed=0, intervention=config)
    prompts = [build_prompt(tok, f"What is {i} + {i}?", suffix="", enable_thinking=True) for i in range(8)]
    out = gen.generate(prompts, n=4, max_tokens=160, temperature=0.6, top_p=0.95, top_k=20, seed=list(range(8)))
    end = tok.convert_tokens_to_ids("</think>")
    samples = [s for row in out for s in row]
    return [count_thinking_tokens(s.token_ids, end) for s in samples], [len(s.token_ids) for s in samples]


def mean(xs):
    return sum(xs) / len(xs)


def test_stop_temperature_moves_the_end_of_thinking(chatty_model_dir):
    base, _ = thinking_lengths(chatty_model_dir)
    early, _ = thinking_lengths(chatty_model_dir, intervention="stop_temperature", stop_gamma=8.0)
    late, _ = thinking_lengths(chatty_model_dir, intervention="stop_temperature", stop_gamma=0.125)
    tau_early, _ = thinking_lengths(chatty_model_dir, intervention="stop_temperature", stop_tau=2.0)
    assert mean(early) < mean(base) < mean(late)
    assert mean(tau_early) < mean(base)


def test_budget_forcing_keeps_thinking_between_its_minimum_and_maximum(chatty_model_dir):
    base, _ = thinking_lengths(chatty_model_dir)
    assert min(base) < 12  # without the intervention some samples stop thinking early
    longer, _ = thinking_lengths(chatty_model_dir, intervention="budget_forcing", min_thinking_tokens=12, max_waits=50)
    assert min(longer) >= 12 and mean(longer) > mean(base)
    capped, total = thinking_lengths(chatty_model_dir, intervention="budget_forcing", max_thinking_tokens=10,
                                     answer_tokens=6)
    assert max(capped) <= 11  # 10 thinking tokens + the forced </think>
    forced = [n for t, n in zip(capped, total) if t == 11]  # thinking forced closed at the maximum
    assert forced and max(forced) <= 11 + 6 + 1  # + the capped answer + the forced end of sequence


def test_non_thinking_mode_counts_no_thinking_and_grades_the_whole_text(tmp_path, generator, chatty_model_dir,
                                                                        bench_file):
    recs = read(run_bench(tmp_path, generator, chatty_model_dir, bench_file, "nothink", enable_thinking=False)
                / "records.parquet")
    assert all(r["thinking_tokens"] == 0 for r in recs)
    finished = [r for r in recs if r["finished"]]
    assert finished and all(r["grade"] != "truncated" for r in finished)  # no </think> needed


def test_moe_model_saved_with_router_logits_on_still_generates(tiny_moe_dir: str, tmp_path: Path):
    """TRL's SFTTrainer saves MoE models with output_router_logits=True; transformers' Qwen3-MoE
    then fails in cached decoding (load-balancing loss vs the full attention mask). The
    generator must turn it off (regression: the tiny ladder's MoE eval-base and GRPO failed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.jobs.generate import make_generator

    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)
    model.config.output_router_logits = True
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_moe_dir).save_pretrained(tmp_path)
    gen = make_generator("transformers", str(tmp_path), seed=0, batch_size=4)
    out = gen.generate(["Ann has 3 pens."] * 2, n=2, max_tokens=12, temperature=0.6, top_p=0.95, top_k=20,
                       seed=[0, 1])
    assert len(out) == 2 and all(len(samples) == 2 for samples in out)
    assert gen.model.config.output_router_logits is False
