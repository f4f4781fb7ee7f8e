"""scaling.codegrade: extraction, gold parsing, LCB's comparison rules, and grade statuses on small
programs run through the real sandbox (or, where bwrap cannot start here, the unsandboxed path
with the same harness)."""

from __future__ import annotations

import json

import pytest

from scaling import codegrade, sandbox
from scaling.codegrade import extract_code, grade_code_many, parse_gold, stdout_matches, value_matches
from scaling.errors import JobError

UNSANDBOXED = sandbox.sandbox_problem() is not None
STDIN_GOLD = json.dumps({"kind": "stdin", "fn_name": None, "time_limit_s": None,
                         "tests": [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -1\n", "output": "9"}]})
FN_GOLD = json.dumps({"kind": "functional", "fn_name": "add", "time_limit_s": 2,
                      "tests": [{"input": "1\n2", "output": "3"}, {"input": "[1]\n[2]", "output": "[1, 2]"}]})


def _r(code: str, fence: str = "```python") -> str:
    return f"<think>plan</think>\nHere:\n{fence}\n{code}\n```\n"


@pytest.mark.parametrize("response, code", [
    (_r("print(1)"), "print(1)"),
    (_r("print(2)", fence="```"), "print(2)"),
    (_r("print(3)", fence="```py"), "print(3)"),
    ("<think>```python\nprint(0)\n```</think>\n```python\nprint(4)\n```", "print(4)"),  # after </think> only
    ("<think>x</think>```python\nprint(1)\n```\nthen\n```python\nprint(5)\n```\ndone", "print(5)"),  # last block
    ("<think>x</think> no code at all", None),
    ("<think>x</think>```python\nprint(1)", None),  # one fence: LCB returns ""
    ("<think>```python\nprint(1)\n```", None),  # never closed thinking
])
def test_extract_code(response, code):
    assert extract_code(response) == code


def test_extract_without_think_end_when_not_required():
    assert extract_code("```python\nprint(6)\n```", require_think_end=False) == "print(6)"


def test_parse_gold():
    gold = parse_gold(FN_GOLD)
    assert (gold.kind, gold.fn_name, gold.inputs, gold.time_limit_s) == ("functional", "add", ("1\n2", "[1]\n[2]"), 2.0)
    assert parse_gold(STDIN_GOLD).fn_name is None


@pytest.mark.parametrize("bad, words", [
    ("{nope", "not JSON"),
    ("[]", "JSON object"),
    ('{"kind": "sql", "tests": []}', "gold.kind"),
    ('{"kind": "functional", "fn_name": "2x", "tests": [{"input": "1", "output": "1"}]}', "fn_name"),
    ('{"kind": "stdin", "tests": []}', "gold.tests"),
    ('{"kind": "stdin", "tests": [{"input": 1, "output": "1"}]}', r"gold\.tests\[0\]"),
    ('{"kind": "functional", "fn_name": "f", "tests": [{"input": "x", "output": "1"}]}', "must be JSON"),
    ('{"kind": "stdin", "tests": [{"input": "", "output": ""}], "time_limit_s": -1}', "time_limit_s"),
])
def test_parse_gold_errors(bad, words):
    with pytest.raises(ValueError, match=words):
        parse_gold(bad)


@pytest.mark.parametrize("got, expected, same", [
    ("5\n", "5", True),
    ("  1 2  \n3\n\n", "1 2\n3", True),  # whole and per-line strip
    ("1.0 2", "1 2.00", True),  # Decimal element-wise
    ("1 2", "1 2 3", False),
    ("1\n2", "1 2", False),  # line counts differ
    ("0.1", "0.10000001", False),  # Decimal equality, no tolerance
    ("Yes", "YES", False),
    ("", "", True),
])
def test_stdout_matches(got, expected, same):
    assert stdout_matches(got, expected) is same


def test_value_matches():
    assert value_matches("[1, 2]", "[1,2]") and value_matches("1.0", "1")
    assert not value_matches("[2, 1]", "[1, 2]") and not value_matches("nope", "1")


def _grade(code: str, gold: str = STDIN_GOLD, **kw):
    [g] = grade_code_many([_r(code)], [gold], timeout_s=1.0, allow_unsandboxed=UNSANDBOXED, **kw)
    return g.status


def test_grade_statuses_on_small_programs():
    assert _grade("a, b = map(int, input().split())\nprint(a + b)") == "ok"
    assert _grade("import sys\na, b = map(int, open(0).read().split())\nsys.stdout.write(f'{a+b}\\n')") == "ok"
    assert _grade("import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))") == "ok"
    assert _grade("print(5)") == "failed_test"  # right on the first test only
    assert _grade("def broken(:\n    pass") == "runtime_error"
    assert _grade("raise ValueError('no')") == "runtime_error"
    assert _grade("while True:\n    pass") == "timeout"
    assert _grade("class Solution:\n    def add(self, a, b):\n        return a + b", FN_GOLD) == "ok"
    assert _grade("def add(a, b):\n    return a + b", FN_GOLD) == "ok"
    assert _grade("def add(a, b):\n    return a - b", FN_GOLD) == "failed_test"
    assert _grade("def plus(a, b):\n    return a + b", FN_GOLD) == "runtime_error"  # no fn_name
    # LCB's prelude: starter code's unimported List, star imports, deep recursion
    typed = "class Solution:\n    def add(self, a: List[int], b: Optional[int]) -> int:\n        return a + b"
    assert _grade(typed, FN_GOLD) == "ok"
    assert _grade("a, b = map(int, stdin.readline().split())\nprint(floor(a + b))") == "ok"
    deep = ("def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\n"
            "a, b = map(int, input().split())\nprint(a + b + f(3000) - 3000)")
    assert _grade(deep) == "ok"


def test_grade_statuses_without_running():
    resp = ["<think>still thinking", "<think>x</think> no code", _r("print(1)")]
    grades = grade_code_many(resp, [STDIN_GOLD, STDIN_GOLD, "{bad"], allow_unsandboxed=UNSANDBOXED)
    assert [g.status for g in grades] == ["truncated", "no_answer", "error"]
    assert not any(g.correct for g in grades)
    with pytest.raises(ValueError, match="2 responses but 1 golds"):
        grade_code_many(resp[:2], [STDIN_GOLD])


def test_refuses_without_a_sandbox(monkeypatch):
    monkeypatch.setattr(codegrade, "sandbox_problem", lambda: "no user namespaces")
    with pytest.raises(JobError, match="no user namespaces.*eval.code.allow_unsandboxed: true"):
        grade_code_many([_r("print(5)")], [STDIN_GOLD])


def test_unsandboxed_runs_the_same_harness():
    [g] = grade_code_many([_r("a, b = map(int, input().split())\nprint(a + b)")], [STDIN_GOLD], allow_unsandboxed=True)
    assert g.status == "ok" and g.correct
