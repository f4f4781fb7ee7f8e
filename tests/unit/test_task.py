"""scaling.task: the seeded synthetic arithmetic task and its overthinking SFT traces."""

from __future__ import annotations

import json
import re

import pytest

from scaling.errors import RecipeError
from scaling.task import (
    TaskConfig,
    generate,
    is_task_uri,
    load_task,
    main,
    parse_task_uri,
    task_uri,
    write_splits,
)


def _eval_steps(problem: str) -> int:
    """Recompute the answer from the problem text alone (independent of the generator's state)."""
    start = int(re.match(r"\w+ has (\d+) ", problem).group(1))
    total = start
    for verb, n in re.findall(r"(gets|finds|buys|gives away|loses|sells) (\d+)", problem):
        total += int(n) if verb in ("gets", "finds", "buys") else -int(n)
    return total


def test_answers_match_the_problem_text_and_stay_non_negative():
    for split in ("train", "test", "ood"):
        for row in generate(split, 300, TaskConfig(steps=3, digits=2)):
            assert int(row["answer"]) == _eval_steps(row["problem"]) >= 0


def test_same_seed_same_rows_other_seed_other_rows():
    assert generate("train", 50) == generate("train", 50)
    assert generate("train", 50, TaskConfig(seed=1)) != generate("train", 50)


def test_test_split_is_disjoint_from_train_and_ids_are_unique():
    train = {r["problem"] for r in generate("train", 2000)}
    test = generate("test", 300)
    assert not train & {r["problem"] for r in test}
    assert len({r["id"] for r in test}) == 300


def test_ood_split_is_harder_by_the_extra_steps():
    cfg = TaskConfig(steps=2, ood_extra_steps=2)
    assert {r["steps"] for r in generate("test", 50, cfg)} == {2}
    assert {r["steps"] for r in generate("ood", 50, cfg)} == {4}


def test_digits_knob_sets_operand_width():
    nums = [int(n) for r in generate("test", 100, TaskConfig(digits=2)) for n in re.findall(r"\d+", r["problem"])]
    assert min(nums) >= 10 and max(nums) <= 99


def test_traces_solve_step_by_step_then_recheck_a_random_number_of_times():
    rows = generate("train", 400, TaskConfig(max_rechecks=3))
    counts = {r["rechecks"] for r in rows}
    assert counts == {0, 1, 2, 3}
    for r in rows[:50]:
        c = r["completion"]
        assert c.startswith("<think>\n") and c.endswith(f"</think>\n\nThe answer is \\boxed{{{r['answer']}}}.")
        assert c.count("</think>") == 1
        # the first operation line appears once in the solution and once per re-check
        first_line = c.split("\n")[2]
        assert c.split("\n").count(first_line) >= 1 + r["rechecks"]
    long = [len(r["completion"]) for r in rows if r["rechecks"] == 3]
    short = [len(r["completion"]) for r in rows if r["rechecks"] == 0]
    assert min(long) > max(short) * 1.5  # re-checks really make traces longer (what GRPO should cut)


def test_solution_lines_are_correct_arithmetic():
    checked = 0
    for row in generate("train", 100, TaskConfig(steps=4, digits=2)):
        for line in row["completion"].split("\n"):
            m = re.fullmatch(r"(\d+) ([+-]) (\d+) = (\d+)\.", line)
            if m:
                a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
                assert (a + b if op == "+" else a - b) == c
                checked += 1
    assert checked >= 400  # 4 lines per solution, more with re-checks


def test_math_verify_grades_the_trace_answer_as_correct():
    from math_verify import parse, verify

    for row in generate("train", 10):
        after = row["completion"].split("</think>")[1]
        assert verify(parse(row["answer"]), parse(after))
        assert not verify(parse(str(int(row["answer"]) + 1)), parse(after))


def test_uri_round_trip_and_unknown_parameter_lists_known():
    cfg = TaskConfig(steps=3, digits=2, seed=5)
    uri = task_uri("test", 20, cfg)
    assert is_task_uri(uri) and not is_task_uri("org/dataset")
    assert parse_task_uri(uri) == ("test", 20, cfg, False)
    assert load_task(uri) == generate("test", 20, cfg)
    assert "completion" in load_task("task://arith?split=train&n=3")[0]
    assert "completion" not in load_task("task://arith?split=train&n=3&trace=0")[0]
    with pytest.raises(RecipeError, match="unknown parameter.*stepz.*known:.*steps"):
        parse_task_uri("task://arith?split=test&stepz=3")
    with pytest.raises(RecipeError, match="unknown task"):
        parse_task_uri("task://chess?split=test")
    with pytest.raises(RecipeError, match="task.steps"):
        parse_task_uri("task://arith?steps=0")
    with pytest.raises(RecipeError, match="integers"):
        parse_task_uri("task://arith?steps=two")


def test_too_many_rows_for_a_tiny_space_is_a_recipe_error():
    with pytest.raises(RecipeError, match="distinct"):
        generate("train", 50_000, TaskConfig(steps=1, digits=1))


def test_write_splits_and_cli_write_jsonl_with_id_problem_answer(tmp_path, capsys):
    paths = write_splits(tmp_path / "a", n_train=20, n_test=5, n_ood=5)
    rows = [json.loads(line) for line in paths["test"].read_text().splitlines()]
    assert len(rows) == 5 and {"id", "problem", "answer"} <= set(rows[0])
    assert main(["--out", str(tmp_path / "b"), "--n-train", "7", "--steps", "3"]) == 0
    train = (tmp_path / "b" / "train.jsonl").read_text().splitlines()
    assert len(train) == 7 and json.loads(train[0])["steps"] == 3
    assert "train:" in capsys.readouterr().out
