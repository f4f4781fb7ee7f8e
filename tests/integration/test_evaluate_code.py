"""The evaluation job's code path on CPU: a tiny Qwen3 taught (here, by a few hundred optimiser
steps) to write the tiny code task's functions -- right for some problems, wrong for others --
evaluated with the transformers backend and graded by running its programs in the real bubblewrap
sandbox (scaling.codegrade). Asserts the records: correct flags from the sandbox, length split by
pass/fail, a response cut at budget B incorrect at B; and the sandbox refusal before generation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BUDGETS = [16, 64, 256]
TASK = "task://code?split=test&n=4&seed=0&max_rechecks=0"
RIGHT = {"code-test-000000", "code-test-000001"}  # taught the right function; the others a wrong one


def _wrong(completion: str) -> str:
    """The same trace with a wrong body (the first operation's sign flipped) and one more check
    line, so failing responses are longer than passing ones."""
    head, code = completion.split("</think>")
    code = re.sub(r"return x ([+-])", lambda m: "return x " + ("-" if m.group(1) == "+" else "+"), code)
    return head + "Let me double-check.\nYes.\n</think>" + code


@pytest.fixture(scope="module")
def coder_dir(tiny_qwen3_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.jobs.data import build_prompt
    from scaling.task import load_task

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    seqs = []
    for r in load_task(TASK.replace("split=test", "split=test&trace=1")):
        completion = r["completion"] if r["id"] in RIGHT else _wrong(r["completion"])
        p = tok.encode(build_prompt(tok, r["problem"], suffix="", enable_thinking=True), add_special_tokens=False)
        seqs.append((p, tok.encode(completion + "<|im_end|>", add_special_tokens=False)))
    width = max(len(p) + len(c) for p, c in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        labels[i, len(p) : len(p) + len(c)] = torch.tensor(c)
        mask[i, : len(p) + len(c)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(200):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, f"the tiny model did not learn its four functions (loss {loss.item():.3f})"
    out = tmp_path_factory.mktemp("coder")
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _run(model_dir: str, **eval_kw):
    from scaling.jobs.tiny import tiny_facts
    from scaling.records import Backend, EvalSettings, RunSpec, Stage

    settings = dict(benchmarks=[TASK], budgets=BUDGETS, samples_per_problem=2, backend=Backend.transformers,
                    top_k=1)  # greedy: the taught function comes back
    settings.update(eval_kw)
    return RunSpec(study="t", run_id="0_1m/eval-base", size="0_1m", stage=Stage.eval, model=tiny_facts("0_1m"),
                   model_source=model_dir, checkpoint="base", eval=EvalSettings(**settings), seed=7)


def _read(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("overlap", [True, False], ids=["graded-in-thread", "sequential"])
def test_code_benchmark_records_from_the_real_sandbox(tmp_path, coder_dir, monkeypatch, overlap):
    import pyarrow.parquet as pq

    import scaling.jobs.evaluate as evaluate

    monkeypatch.setattr(evaluate, "OVERLAP_GRADING", overlap)  # "auto" overlaps only with a GPU

    from scaling.benchmarks import load_benchmark
    from scaling.durable import read_done
    from scaling.jobs.evaluate import evaluate_benchmark
    from scaling.metrics import compute_metrics
    from scaling.sandbox import sandbox_problem

    assert sandbox_problem() is None, f"bubblewrap must work here: {sandbox_problem()}"
    spec = load_benchmark(TASK)
    assert spec.grader == "code"
    out = tmp_path / "code"
    # chunks of one problem: with overlap, chunk i is graded in the worker thread while chunk i+1 generates
    info = evaluate_benchmark(_run(coder_dir), spec, out, model_path=coder_dir, chunk_problems=1)
    assert info["grader"] == "code" and info["unsandboxed"] is False and read_done(out)["records"] == 4 * 2 * 3
    recs = _read(out / "records.parquet")
    top = [r for r in recs if r["budget_tokens"] == 256]
    assert all(r["finished"] for r in top)
    # correct flags come from running the programs: the taught-right problems pass every test
    assert {r["problem_id"] for r in top if r["correct"]} == RIGHT
    assert {r["grade"] for r in top if not r["correct"]} == {"failed_test"}
    assert {r["grade"] for r in top if r["correct"]} == {"ok"}
    assert all(r["answer"].startswith("def f(x):") for r in top)
    # a response cut at B has no program: incorrect at B, even where it passes at 256
    for r in recs:
        if r["budget_tokens"] < 256:
            assert (r["finished"], r["correct"], r["grade"]) == (False, False, "truncated")
            assert r["response_tokens"] == r["budget_tokens"]
    # length split by pass/fail (the wrong traces carry an extra check)
    ms = compute_metrics(pq.read_table(out / "records.parquet"), n_boot=50)
    m = next(m for m in ms.metrics if m.budget_tokens == 256)
    passed = [r["response_tokens"] for r in top if r["correct"]]
    failed = [r["response_tokens"] for r in top if not r["correct"]]
    assert m.tokens_correct_mean == pytest.approx(sum(passed) / len(passed))
    assert m.tokens_incorrect_mean == pytest.approx(sum(failed) / len(failed))
    assert m.tokens_correct_mean < m.tokens_incorrect_mean
    assert m.accuracy == pytest.approx(0.5)
    texts = _read(out / "texts.parquet")
    assert len(texts) == 4 * 2 and all("```python" in t["text"] for t in texts)


def test_sandbox_refusal_comes_before_any_generation(tmp_path, coder_dir, monkeypatch):
    from transformers import AutoTokenizer

    import scaling.sandbox as sandbox
    from scaling.benchmarks import load_benchmark
    from scaling.errors import JobError
    from scaling.jobs.evaluate import evaluate_benchmark

    class NoGeneration:  # the job must refuse before it asks for a single token
        tokenizer = AutoTokenizer.from_pretrained(coder_dir)

        def generate(self, *a, **k):
            raise AssertionError("generated before refusing")

    monkeypatch.setattr(sandbox, "sandbox_problem", lambda: "bwrap: No permissions to create new namespace")
    with pytest.raises(JobError) as err:
        evaluate_benchmark(_run(coder_dir), load_benchmark(TASK), tmp_path / "x", model_path=coder_dir,
                           generator=NoGeneration())
    text = str(err.value)
    assert "\n" not in text and "No permissions to create new namespace" in text
    assert "eval.code.allow_unsandboxed: true" in text
    assert not (tmp_path / "x" / "records.parquet").exists()


def test_allow_unsandboxed_is_recorded_for_the_report(tmp_path, coder_dir, monkeypatch):
    from types import SimpleNamespace

    import scaling.sandbox as sandbox
    from scaling.benchmarks import load_benchmark
    from scaling.document import code_benchmark_notes
    from scaling.jobs.evaluate import evaluate_benchmark
    from scaling.records.settings import CodeEvalSettings

    monkeypatch.setattr(sandbox, "sandbox_problem", lambda: "no user namespaces")
    spec = load_benchmark(TASK)
    out = tmp_path / "study" / "0_1m" / "eval-base" / spec.name
    run = _run(coder_dir, budgets=[256], samples_per_problem=1, code=CodeEvalSettings(allow_unsandboxed=True))
    info = evaluate_benchmark(run, spec, out, model_path=coder_dir)
    assert info["unsandboxed"] is True
    assert json.loads((out / "DONE").read_text())["unsandboxed"] is True
    study = SimpleNamespace(name="s", path=tmp_path / "study", ms=SimpleNamespace(benchmarks=[spec.name]))
    (note,) = code_benchmark_notes([study])
    assert "WARNING: 1 of 1 evaluations ran model code WITHOUT the sandbox" in note
