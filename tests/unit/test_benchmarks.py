"""scaling.benchmarks: the YAML registry, local overrides, gold answers, choice formatting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scaling.benchmarks import (
    BenchmarkSpec,
    format_choice_problem,
    gold_answer,
    known_benchmarks,
    load_benchmark,
    to_dataset_spec,
)
from scaling.errors import RecipeError

SHIPPED = ["aime24", "aime25", "amc", "gpqa_diamond", "gsm8k", "math500", "minerva", "olympiadbench"]


def test_every_shipped_benchmark_loads_with_a_source_and_a_grader():
    assert set(SHIPPED) <= set(known_benchmarks())
    for name in SHIPPED:
        spec = load_benchmark(name)
        assert spec.name == name and "/" in spec.source and spec.grader in ("math", "choice")
    assert load_benchmark("gpqa_diamond").grader == "choice"
    assert load_benchmark("aime25").source == "math-ai/aime25"


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(RecipeError, match="unknown benchmark 'aime26'.*aime25"):
        load_benchmark("aime26")


def test_adding_a_benchmark_is_a_few_lines_of_yaml(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("source: me/mine\nsplit: test\nproblem_column: q\n")
    monkeypatch.setenv("SCALING_BENCHMARKS_PATH", str(tmp_path))
    assert "mine" in known_benchmarks()
    spec = load_benchmark("mine")
    assert (spec.source, spec.problem_column, spec.answer_column) == ("me/mine", "q", "answer")


def test_local_path_overrides_the_hub_source(tmp_path, monkeypatch):
    (tmp_path / "data.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    (tmp_path / "mine.yaml").write_text("source: me/mine\npath: data.jsonl\n")
    monkeypatch.setenv("SCALING_BENCHMARKS_PATH", str(tmp_path))
    spec = load_benchmark("mine")
    assert spec.location == str(tmp_path / "data.jsonl")
    assert to_dataset_spec(spec).source == str(tmp_path / "data.jsonl")


def test_a_data_file_is_a_benchmark(tmp_path):
    f = tmp_path / "tiny.jsonl"
    f.write_text('{"problem": "1+1", "answer": "2"}\n')
    spec = load_benchmark(str(f))
    assert spec.name == "tiny" and spec.path == str(f)
    with pytest.raises(RecipeError, match="does not exist"):
        load_benchmark(str(tmp_path / "missing.jsonl"))


def test_a_generated_task_uri_is_a_benchmark_with_a_safe_name():
    spec = load_benchmark("task://arith?split=test&n=20")
    assert spec.source == "task://arith?split=test&n=20" and spec.name == "arith_split_test_n_20"


@pytest.mark.parametrize(
    "text, key",
    [
        ("source: a/b\nproblem_colum: q\n", "problem_colum"),
        ("source: a/b\ngrader: python\n", "grader"),
        ("split: test\n", "source"),
        ("source: a/b\ngrader: choice\ncorrect_column: c\n", "correct_column"),
    ],
)
def test_malformed_benchmark_yaml_names_the_key(tmp_path, text, key):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(RecipeError, match=key):
        load_benchmark(str(f))


def test_gold_answers_are_normalised():
    assert gold_answer("so 3 + 4 = 7\n#### 1,234", load_benchmark("gsm8k")) == "1234"
    assert gold_answer(142.0, load_benchmark("amc")) == "142"
    assert gold_answer(["3", "\\frac{1}{2}"], load_benchmark("olympiadbench")) == "3, \\frac{1}{2}"
    assert gold_answer(" 70 ", load_benchmark("aime25")) == "70"


def test_choice_options_are_shuffled_stably_and_the_gold_letter_follows_the_correct_option():
    spec = load_benchmark("gpqa_diamond")
    row = {"Question": "Which?", "Correct Answer": "right", "Incorrect Answer 1": "w1",
           "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3"}
    text, letter = format_choice_problem(row, spec, seed=0, problem_id="p1")
    assert (text, letter) == format_choice_problem(row, spec, seed=0, problem_id="p1")
    assert f"{letter}) right" in text and text.startswith("Which?")
    letters = {format_choice_problem(row, spec, seed=0, problem_id=f"p{i}")[1] for i in range(40)}
    assert len(letters) > 1  # the correct option is not always in the same place


def test_choice_rows_renamed_by_the_loader_still_format():
    spec = load_benchmark("gpqa_diamond")
    row = {"problem": "Q", "answer": "right", "Incorrect Answer 1": "a", "Incorrect Answer 2": "b",
           "Incorrect Answer 3": "c"}
    text, letter = format_choice_problem(row, spec, seed=1, problem_id="x")
    assert f"{letter}) right" in text
    plain = BenchmarkSpec(name="abc", source="x/y", grader="choice")
    assert format_choice_problem({"problem": "Q", "answer": "C"}, plain, seed=0, problem_id="1") == ("Q", "C")


def test_registry_stays_light():
    code = "import scaling.benchmarks, sys; sys.exit(int(any(m in sys.modules for m in ('torch','datasets','transformers'))))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
