"""scaling.grade: math-verify in a bounded worker, answers after </think>, multiple choice."""

from __future__ import annotations

import threading
import time

import pytest

from scaling.grade import Grade, answer_region, extract_choice, grade, grade_many


def _r(answer: str) -> str:
    return f"<think>let me think about it</think>\n{answer}"


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("The answer is \\boxed{\\frac{1}{2}}.", "0.5"),  # fraction vs decimal
        ("So we get $\\boxed{0.5}$", "\\frac{1}{2}"),  # decimal vs LaTeX fraction
        ("Therefore \\boxed{\\dfrac{3}{4}} is it", "3/4"),  # dfrac vs plain
        ("Thus x lies in \\boxed{(1, 2]}", "(1,2]"),  # interval
        ("final: $\\boxed{2\\sqrt{2}}$", "\\sqrt{8}"),  # equivalent radicals
        ("Some words first. Then \\boxed{70} and more words after.", "70"),  # boxed inside text
        ("The final answer is $42$", "42"),  # no box
    ],
)
def test_equivalent_forms_are_correct(answer, gold):
    g = grade(_r(answer), gold)
    assert g == Grade(True, "ok", g.answer) and g.answer


def test_wrong_answer_is_wrong_with_the_extracted_answer():
    g = grade(_r("so \\boxed{3}"), "4")
    assert (g.correct, g.status, g.answer) == (False, "wrong", "3")


def test_open_interval_is_not_the_half_open_one():
    assert not grade(_r("\\boxed{(1,2)}"), "(1,2]").correct


def test_truncated_thinking_is_never_correct():
    g = grade("<think>the answer is \\boxed{4} I am sure", "4")
    assert g == Grade(False, "truncated", "")


def test_answer_inside_thinking_does_not_count():
    g = grade("<think>maybe \\boxed{4}</think> I could not decide.", "4")
    assert not g.correct and g.status in ("no_answer", "wrong")


def test_without_require_think_end_the_whole_text_is_graded():
    assert grade("\\boxed{4}", "4", require_think_end=False).correct
    assert answer_region("abc", require_think_end=False) == "abc"
    assert answer_region("a</think>b</think>c") == "c"


def test_missing_answer_is_no_answer():
    assert grade(_r(""), "4") == Grade(False, "no_answer", "")
    assert grade(_r("I do not know."), "4").status == "no_answer"


def test_custom_think_end_marker():
    assert grade("[[x]]END \\boxed{5}", "5", think_end="END").correct


def test_time_bound_is_kept_and_the_worker_recovers():
    # sympy tries to evaluate a power tower: math-verify would spin far past the deadline
    t0 = time.monotonic()
    g = grade(_r("\\boxed{9^{9^{9^{9^{9}}}}}"), "5", timeout_s=1.0)
    elapsed = time.monotonic() - t0
    assert g.status in ("timeout", "error") and not g.correct
    assert elapsed < 8.0  # 1 s bound + worker kill; generous for a loaded 2-core machine
    assert grade(_r("\\boxed{5}"), "5").correct  # a fresh worker answers the next sample


def test_time_bound_works_off_the_main_thread():
    out: list[Grade] = []
    t = threading.Thread(target=lambda: out.extend(grade_many([_r("\\boxed{2}"), _r("\\boxed{9}")], ["2", "3"])))
    t.start()
    t.join(60)
    assert [g.status for g in out] == ["ok", "wrong"]


@pytest.mark.parametrize(
    "garbage",
    [
        "x" * 3_000_000 + " \\boxed{",  # megabytes without an answer
        "{" * 5000 + "1" + "}" * 5000,  # deeply nested braces
        "\\frac{" * 300 + "1" + "}{2}" * 300,  # deeply nested LaTeX
        "\x00\xff\ud7ff" * 1000 + "$$$$\\\\\\",  # binary garbage
    ],
)
def test_pathological_outputs_are_graded_wrong_quickly(garbage):
    t0 = time.monotonic()
    g = grade(_r(garbage), "1", timeout_s=2.0)
    assert not g.correct and g.status in STATUS_WRONGISH
    assert time.monotonic() - t0 < 10.0


STATUS_WRONGISH = ("wrong", "no_answer", "timeout", "error")


def test_grade_many_keeps_order_and_batches():
    resp = [_r(f"\\boxed{{{i}}}") for i in range(6)] + ["<think>cut"]
    gold = ["0", "1", "9", "3", "4", "9", "6"]
    got = [g.status for g in grade_many(resp, gold)]
    assert got == ["ok", "ok", "wrong", "ok", "ok", "wrong", "truncated"]


def test_grade_many_refuses_length_mismatch_and_unknown_kind():
    with pytest.raises(ValueError):
        grade_many(["a"], [])
    with pytest.raises(ValueError):
        grade_many(["a"], ["b"], kind="code")


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The answer is (B).", "B"),
        ("**Answer: C**", "C"),
        ("so \\boxed{D}", "D"),
        ("\\boxed{\\text{A}}", "A"),
        ("A is wrong and (B) too; the answer is C", "C"),
        ("Final choice\nD", "D"),
        ("I cannot tell.", ""),
    ],
)
def test_choice_letter_extraction(text, letter):
    assert extract_choice(text) == letter


def test_choice_grading_compares_letters():
    assert grade(_r("Answer: (B)"), "B", kind="choice") == Grade(True, "ok", "B")
    assert grade(_r("Answer: (B)"), "(C)", kind="choice") == Grade(False, "wrong", "B")
    assert grade(_r("no idea"), "A", kind="choice").status == "no_answer"
    assert grade("<think>B", "B", kind="choice").status == "truncated"


def test_a_forked_child_grades_with_its_own_worker():
    import multiprocessing as mp
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    assert grade(_r("\\boxed{1}"), "1").correct  # the parent's worker exists now
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=lambda: q.put(grade(_r("\\boxed{2}"), "2").status))
    p.start()
    p.join(60)
    assert q.get(timeout=5) == "ok"
    assert grade(_r("\\boxed{3}"), "3").correct  # and the parent's worker still answers
