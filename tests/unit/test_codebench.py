"""scaling.codebench: LiveCodeBench rows from JSONL/parquet files written here in LCB's format
(public tests as a JSON string, private tests as base64(zlib(pickle(json string)))), the
restricted unpickler against a malicious pickle, release files and date windows, LCB's prompt,
the gold JSON, pass@k against hand values, and the code benchmark keys' validation."""

from __future__ import annotations

import base64
import json
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest

from scaling import codebench as cb
from scaling.benchmarks import load_benchmark
from scaling.errors import JobError, RecipeError
from scaling.metrics import _pass_at_k


def _private(tests: list[dict]) -> str:
    """LCB's encoding of private tests (as its dataset builder wrote them)."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def _row(qid: str, date: str, *, starter: str = "", fn: str | None = None) -> dict:
    kind = "functional" if fn else "stdin"
    public = [{"input": "1 2\n", "output": "3\n", "testtype": kind}]
    private = [{"input": "5 5\n", "output": "10\n", "testtype": kind}, {"input": "0 0\n", "output": "0\n", "testtype": kind}]
    return {
        "question_title": f"title {qid}", "question_content": f"Add two numbers ({qid}).", "platform": "atcoder",
        "question_id": qid, "contest_id": "abc1", "contest_date": date, "starter_code": starter,
        "difficulty": "easy", "public_test_cases": json.dumps(public), "private_test_cases": _private(private),
        "metadata": json.dumps({"func_name": fn} if fn else {}),
    }


ROWS = [
    _row("a", "2024-09-30T00:00:00"),
    _row("b", "2024-10-01T00:00:00"),
    _row("c", "2025-01-31T12:00:00", starter="class Solution:\n    def add(self, a: int, b: int) -> int:\n        ", fn="add"),
    _row("d", "2025-02-01T00:00:00"),
    _row("e", "2025-04-30T00:00:00"),
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_private_tests_decode_from_lcb_encoding():
    tests = [{"input": "x", "output": "y", "testtype": "stdin"}]
    assert cb.decode_private_tests(_private(tests)) == tests
    assert cb.decode_private_tests(json.dumps(tests)) == tests  # LCB tries plain JSON first
    assert cb.decode_private_tests("") == []


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    blob = base64.b64encode(zlib.compress(pickle.dumps(_Evil(str(marker))))).decode()
    with pytest.raises(JobError, match=r"unsafe pickle refused .*global (posix|os)\.system"):
        cb.decode_private_tests(blob, where="row x: private_test_cases")
    assert not marker.exists(), "the pickle's reduce ran"
    # the same bytes through plain pickle.loads would run it: the test is not vacuous
    pickle.loads(zlib.decompress(base64.b64decode(blob)))
    assert marker.exists()


def test_pickle_of_a_non_string_is_refused():
    blob = base64.b64encode(zlib.compress(pickle.dumps([1, 2]))).decode()
    with pytest.raises(JobError, match="holds a list, not a JSON string"):
        cb.decode_private_tests(blob)
    with pytest.raises(JobError, match="cannot decode"):
        cb.decode_private_tests("bm90IHpsaWI=")  # base64 of "not zlib"


def test_release_files_are_cumulative():
    assert cb.release_files("v1") == ["test.jsonl"]
    assert cb.release_files("release_v5") == ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl"]
    assert cb.release_files("v6")[-1] == "test6.jsonl"
    with pytest.raises(RecipeError, match="unknown LiveCodeBench release 'v9'"):
        cb.release_files("v9")


def test_jsonl_folder_release_and_window(tmp_path):
    _write_jsonl(tmp_path / "test.jsonl", ROWS[:2])
    for i in range(2, 6):
        _write_jsonl(tmp_path / f"test{i}.jsonl", [ROWS[2]] if i == 5 else [])
    _write_jsonl(tmp_path / "test6.jsonl", ROWS[3:])
    v5 = cb.load_lcb(str(tmp_path), release="v5", start_date="2024-10-01", end_date="2025-02-01")
    assert [r["question_id"] for r in v5] == ["b", "c"]  # start inclusive, end exclusive
    v6 = cb.load_lcb(str(tmp_path), release="v6", start_date="2025-02-01", end_date="2025-05-01")
    assert [r["question_id"] for r in v6] == ["d", "e"]
    assert [r["question_id"] for r in cb.load_lcb(str(tmp_path), release="v5")] == ["a", "b", "c"]
    (tmp_path / "test5.jsonl").unlink()
    with pytest.raises(JobError, match="release v5 needs test5.jsonl"):
        cb.load_lcb(str(tmp_path), release="v5")


def test_parquet_file_reads_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "lcb.parquet")
    jsonl = _write_jsonl(tmp_path / "lcb.jsonl", ROWS)
    from_pq = cb.load_lcb(str(tmp_path / "lcb.parquet"), start_date="2024-10-01", end_date="2025-02-01")
    from_js = cb.load_lcb(str(jsonl), start_date="2024-10-01", end_date="2025-02-01")
    assert from_pq == from_js and [r["question_id"] for r in from_pq] == ["b", "c"]
    assert [cb.lcb_gold(r) for r in from_pq] == [cb.lcb_gold(r) for r in from_js]


def test_gold_json_stdin_and_functional():
    stdin = json.loads(cb.lcb_gold(ROWS[0]))
    assert stdin == {"kind": "stdin", "fn_name": None, "time_limit_s": 6.0,
                     "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10\n"},
                               {"input": "0 0\n", "output": "0\n"}]}
    functional = json.loads(cb.lcb_gold(ROWS[2]))
    assert functional["kind"] == "functional" and functional["fn_name"] == "add" and len(functional["tests"]) == 3


def test_prompt_follows_lcb_runner():
    stdin = cb.lcb_prompt(ROWS[0])
    assert stdin == ("### Question:\nAdd two numbers (a).\n\n### Format: " + cb.FORMAT_WITHOUT_STARTER
                     + "\n```python\n# YOUR CODE HERE\n```\n\n### Answer: (use the provided format with backticks)\n\n")
    starter = cb.lcb_prompt(ROWS[2])
    assert "### Format: You will use the following starter code" in starter
    assert "```python\nclass Solution:\n    def add(self, a: int, b: int) -> int:\n        \n```" in starter
    assert cb.SYSTEM_MESSAGE.startswith("You are an expert Python programmer.")


def test_code_problems_of_a_local_lcb_benchmark(tmp_path):
    _write_jsonl(tmp_path / "lcb.jsonl", ROWS)
    yml = tmp_path / "my_lcb.yaml"
    yml.write_text("source: livecodebench/code_generation_lite\npath: lcb.jsonl\ngrader: code\nrelease: v5\n"
                   "start_date: 2024-10-01\nend_date: 2025-02-01\n")
    spec = load_benchmark(str(yml))
    assert (spec.grader, spec.release, spec.start_date, spec.end_date, spec.prompt_suffix) == (
        "code", "v5", "2024-10-01", "2025-02-01", "")
    assert cb.window_text(spec) == "release v5, 2024-10-01..2025-02-01 (contest_date)"
    probs = cb.code_problems(spec)
    assert [p.id for p in probs] == ["b", "c"] and all(p.system == cb.SYSTEM_MESSAGE for p in probs)
    assert probs[0].user == cb.lcb_prompt(ROWS[1])
    assert len(cb.code_problems(spec, max_problems=1)) == 1


def test_code_problems_of_the_tiny_code_task():
    spec = load_benchmark("tiny_code")
    probs = cb.code_problems(spec, max_problems=3)
    assert len(probs) == 3 and probs[0].system is None
    assert probs[0].user.startswith("Write a Python function f(x) that ")
    assert json.loads(probs[0].gold)["kind"] == "functional"
    assert load_benchmark("task://code?split=test&n=2").grader == "code"


@pytest.mark.parametrize("body, key, message", [
    ("grader: code\nrelease: v9\n", "release", "unknown LiveCodeBench release 'v9'"),
    ("grader: code\nstart_date: '2024-13-01'\n", "start_date", "not an ISO date"),
    ("grader: code\nstart_date: 2024-13-01\n", "YAML", "must be a real date"),
    ("grader: code\nstart_date: 2025-02-01\nend_date: 2025-02-01\n", "end_date", "must be after start_date"),
    ("grader: math\nrelease: v5\n", "release", "code-benchmark key; set grader: code"),
    ("grader: python\n", "grader", "grader must be one of math, choice, code"),
    ("grader: code\nend_date: [1]\n", "end_date", "must be text"),
])
def test_code_benchmark_keys_are_validated(tmp_path, body, key, message):
    f = tmp_path / "bad.yaml"
    f.write_text("source: livecodebench/code_generation_lite\n" + body)
    with pytest.raises(RecipeError) as err:
        load_benchmark(str(f))
    text = str(err.value)
    assert message in text and key in text and "bad.yaml" in text and "\n" not in text


def test_shipped_lcb_recipes_name_the_issue_windows():
    v5, v6 = load_benchmark("lcb_v5"), load_benchmark("lcb_v6")
    assert (v5.release, v5.start_date, v5.end_date) == ("v5", *cb.WINDOWS["v5"])
    assert (v6.release, v6.start_date, v6.end_date) == ("v6", *cb.WINDOWS["v6"])
    assert v5.source == v6.source == cb.LCB_SOURCE and v5.grader == "code"


def test_pass_at_k_matches_hand_values():
    n = np.array([5, 5, 10, 10, 4, 200])
    c = np.array([2, 2, 0, 10, 1, 1])
    # 1 - C(n-c, k)/C(n, k): 1-3/5; 1-C(3,2)/C(5,2)=1-3/10; none right; all right; k=n with one right;
    # n=200, c=1, k=1 -> 1/200
    assert _pass_at_k(n[:1], c[:1], 1)[0] == pytest.approx(0.4)
    assert _pass_at_k(n[1:2], c[1:2], 2)[0] == pytest.approx(0.7)
    assert _pass_at_k(n[2:4], c[2:4], 5).tolist() == pytest.approx([0.0, 1.0])
    assert _pass_at_k(n[4:5], c[4:5], 4)[0] == pytest.approx(1.0)
    assert _pass_at_k(n[5:], c[5:], 1)[0] == pytest.approx(1 / 200)
    # stable where the binomials overflow floats: n=2000, c=1000, k=100 -> 1 - C(1000,100)/C(2000,100)
    from math import comb

    exact = 1 - comb(1000, 100) / comb(2000, 100)
    assert _pass_at_k(np.array([2000]), np.array([1000]), 100)[0] == pytest.approx(exact, rel=1e-12)


def test_art_paper_plan_and_prefetch_show_lcb_with_its_window():
    from scaling.plan import benchmark_lines, make_plan
    from scaling.prefetch import PrefetchItem, plan_prefetch
    from scaling.recipe import load_study

    root = Path(__file__).resolve().parents[2]
    plan = make_plan(load_study(root / "recipes" / "art-paper.yaml"))
    (line,) = [x for x in benchmark_lines(plan) if x.startswith("benchmark lcb_v5")]
    assert line == ("benchmark lcb_v5 (code grader): budgets 2,048, 4,096, 8,192, 16,384, 32,768; "
                    "release v5, 2024-10-01..2025-02-01 (contest_date)")
    assert all("lcb_v5" in r.eval.benchmarks for r in plan.runs if r.eval is not None)  # every size, every budget
    code = [i for i in plan_prefetch(plan) if i.kind == "code"]
    assert code == [PrefetchItem("code", cb.LCB_SOURCE, None, "v5", code[0].used_by)]


def test_report_notes_a_code_benchmarks_window_and_an_unsandboxed_run(tmp_path):
    from types import SimpleNamespace

    from scaling.document import code_benchmark_notes
    from scaling.durable import mark_done

    for d in ("0_6b/eval-base/lcb_v5", "1_7b/eval-base/lcb_v5", "0_6b/eval-base/aime25"):
        (tmp_path / d).mkdir(parents=True)
    for size, unsafe in (("0_6b", False), ("1_7b", True)):
        mark_done(tmp_path / size / "eval-base" / "lcb_v5", {"grader": "code", "unsandboxed": unsafe, "release": "v5",
                                                              "start_date": "2024-10-01", "end_date": "2025-02-01"})
    mark_done(tmp_path / "0_6b" / "eval-base" / "aime25", {"problems": 30})
    study = SimpleNamespace(name="s", path=tmp_path, ms=SimpleNamespace(benchmarks=["aime25", "lcb_v5"]))
    (note,) = code_benchmark_notes([study])
    assert note.startswith("lcb_v5: code benchmark") and "release v5, contest_date 2024-10-01..2025-02-01" in note
    assert "WARNING: 1 of 2 evaluations ran model code WITHOUT the sandbox" in note
