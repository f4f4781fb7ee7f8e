"""The tiny code task (scaling.task, ``task://code``) and the ``code_frac`` mix into arith SFT sets."""

from __future__ import annotations

import json
import re

import pytest

from scaling.errors import RecipeError
from scaling.task import TaskConfig, generate, generate_code, is_code_row, load_task, parse_task

FENCE = re.compile(r"```python\n(.*?)```", re.S)


def _solution(completion: str):
    """The function the trace writes after </think> (our own generated text, run in-process)."""
    answer = completion.split("</think>", 1)[1]
    code = FENCE.findall(answer)[-1]
    scope: dict = {}
    exec(code, scope)  # noqa: S102 -- the project's own template, not model output
    return scope["f"]


def test_traces_solve_their_hidden_tests_and_recheck_as_arith_does():
    cfg = TaskConfig(max_rechecks=3)
    rows = generate_code("train", 40, cfg)
    assert {r["rechecks"] for r in rows} <= set(range(4)) and len({r["rechecks"] for r in rows}) > 1
    for r in rows:
        gold = json.loads(r["answer"])
        assert gold["kind"] == "functional" and gold["fn_name"] == "f" and len(gold["tests"]) == 5
        f = _solution(r["completion"])
        for t in gold["tests"]:
            assert f(*[json.loads(line) for line in t["input"].splitlines()]) == json.loads(t["output"])
        think = r["completion"].split("</think>")[0]
        assert think.count("Try x = ") == r["rechecks"]  # each re-check is one worked example
        assert r["problem"].startswith("Write a Python function f(x) that ") and r["problem"].endswith("Return the result.")


def test_splits_are_seeded_disjoint_and_ood_is_longer():
    train = generate_code("train", 500)
    test = generate_code("test", 60)
    assert generate_code("test", 60) == test  # seeded
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    assert len({r["problem"] for r in test}) == 60
    ood = generate_code("ood", 20)
    assert all(r["steps"] == 4 for r in ood) and all(r["problem"].count("then ") == 3 for r in ood)
    assert "completion" not in test[0] and all(r["id"].startswith("code-") for r in train + test + ood)
    with pytest.raises(RecipeError, match="distinct code test problems"):
        generate_code("test", 200)  # more than the held-out quarter of 324 functions


def test_uri_forms():
    assert load_task("task://code?split=test&n=5&seed=1") == generate_code("test", 5, TaskConfig(seed=1))
    assert parse_task("task://code?split=ood&n=3").task == "code"
    with pytest.raises(RecipeError, match="unknown parameter.*code_frac"):
        parse_task("task://code?split=train&code_frac=0.5")
    for bad in ("1.0", "-0.1", "half"):
        with pytest.raises(RecipeError, match="code_frac=.* must be a number in \\[0, 1\\)"):
            parse_task(f"task://arith?split=train&code_frac={bad}")


def test_arith_is_unchanged_and_code_frac_mixes_code_rows_in():
    base = "task://arith?split=train&n=40&steps=2&digits=1&seed=0"
    assert load_task(base) == generate("train", 40, TaskConfig())
    assert json.dumps(load_task(base + "&code_frac=0")) == json.dumps(load_task(base))  # off: byte-identical
    mixed = load_task(base + "&code_frac=0.25")
    code = [r for r in mixed if is_code_row(r)]
    arith = [r for r in mixed if not is_code_row(r)]
    assert len(mixed) == 40 and len(code) == 10
    assert arith == generate("train", 30, TaskConfig())  # the arith rows, in order
    assert code == generate_code("train", 10, TaskConfig())
    assert {tuple(sorted(r)) for r in mixed} == {tuple(sorted(mixed[0]))}  # one column set (datasets-friendly)
    assert load_task(base + "&code_frac=0.25") == mixed  # seeded places
    assert mixed != code + arith  # interleaved, not appended
