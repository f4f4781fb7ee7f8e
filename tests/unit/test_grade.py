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


# ------------------------------------------------------------------ issue 14 item 7
from scaling.grade import gold_text  # noqa: E402

# MATH-500 style golds: escaped dollars (the three golds the old wrapper missed), percent, \text,
# units, degrees; each with responses that are right and one that is wrong.
GOLDS = [
    ("\\$32,\\!348", ["\\boxed{\\$32,\\!348}", "\\boxed{32348}", "\\boxed{\\$32,348}"], "\\boxed{32,349}"),
    ("\\$18.90", ["\\boxed{\\$18.90}", "\\boxed{18.90}", "\\boxed{18.9}"], "\\boxed{\\$18.80}"),
    ("\\$36", ["\\boxed{\\$36}", "\\boxed{36}", "the answer is $\\$36$"], "\\boxed{\\$63}"),
    ("10\\%", ["\\boxed{10\\%}", "\\boxed{10}"], "\\boxed{20\\%}"),
    ("\\text{(C)}", ["\\boxed{\\text{(C)}}", "\\boxed{C}"], "\\boxed{\\text{(D)}}"),
    ("\\text{Evelyn}", ["\\boxed{\\text{Evelyn}}"], "\\boxed{\\text{Briana}}"),
    ("5\\text{ cm}", ["\\boxed{5\\text{ cm}}", "\\boxed{5}"], "\\boxed{6\\text{ cm}}"),
    ("12\\text{ square units}", ["\\boxed{12}", "\\boxed{12\\text{ square units}}"], "\\boxed{13}"),
    ("90^\\circ", ["\\boxed{90^\\circ}", "\\boxed{90}"], "\\boxed{45^\\circ}"),
    ("\\$0.45", ["\\boxed{\\$0.45}", "\\boxed{0.45}"], "\\boxed{0.54}"),
    ("$x^2+1$", ["\\boxed{x^2+1}"], "\\boxed{x^2-1}"),  # a gold that carries its own delimiters
]


def _direct(gold: str, region: str) -> bool:
    """math-verify called directly, as its README shows: verify(parse("$gold$"), parse(answer))."""
    from math_verify import parse, verify

    g = parse(gold if "$" in gold.replace("\\$", "") else f"${gold}$")
    return bool(g) and bool(verify(g, parse(region)))


@pytest.mark.parametrize("gold, rights, wrong", GOLDS, ids=[g for g, _, _ in GOLDS])
def test_golds_with_dollars_percent_text_and_units_agree_with_math_verify(gold, rights, wrong):
    regions = rights + [wrong]
    grades = grade_many([_r(x) for x in regions], [gold] * len(regions), timeout_s=10.0)
    for region, g in zip(regions, grades):
        assert g.correct == _direct(gold, region), (gold, region, g)
    assert all(g.correct and g.status == "ok" for g in grades[:-1]), grades
    assert grades[-1].status == "wrong"


def test_gold_text_wraps_unless_the_gold_has_real_delimiters():
    assert gold_text("\\$36") == "$\\$36$" and gold_text("10\\%") == "$10\\%$"
    assert gold_text("$x$") == "$x$" and gold_text("\\boxed{3}") == "\\boxed{3}"


@pytest.mark.parametrize("gold", ["", "\\text{}", "$$"])
def test_an_unparseable_gold_is_an_error_not_a_wrong_answer(gold):
    g = grade(_r("\\boxed{5}"), gold)
    assert g.status == "error" and not g.correct


@pytest.mark.integration  # ~25 s of real timeouts: the integration tier
def test_a_batch_with_k_timeouts_takes_at_most_k_timeouts_plus_a_constant():
    """Wall time of a batch with k timeouts <= k x timeout_s + the other samples' grading +
    BATCH_OVERHEAD, with BATCH_OVERHEAD = 2 worker start-ups + 1 s of slack. The bound holds
    while a start-up is shorter than timeout_s (grade.py's docstring), so the test takes
    timeout_s = max(2 s, 2 x the start-up measured just before). Before the restart was counted,
    every timeout cost a start-up on top (k x (timeout_s + start-up)): with k = 4 that exceeds
    the bound whenever a start-up takes more than ~0.5 s (it takes 1-3 s here)."""
    import time

    from scaling import grade as G

    slow, fast = _r("\\boxed{9^{9^{9^{9^{9}}}}}"), _r("\\boxed{5}")
    startup = 0.0
    for _ in range(2):
        G.shutdown_worker()
        t0 = time.monotonic()
        grade(fast, "5")
        startup = max(startup, time.monotonic() - t0)
    t0 = time.monotonic()
    grade_many([fast] * 5, ["5"] * 5)
    per_fast = (time.monotonic() - t0) / 5
    k, timeout_s = 4, max(2.0, 2 * startup)
    responses = [slow, fast] * k
    t0 = time.monotonic()
    grades = grade_many(responses, ["5"] * len(responses), timeout_s=timeout_s)
    wall = time.monotonic() - t0
    assert [g.status for g in grades[::2]] == ["timeout"] * k
    assert all(g.status == "ok" for g in grades[1::2])
    bound = k * timeout_s + k * (3 * per_fast + 0.05) + 2 * startup + 1.0
    assert wall <= bound, (f"{wall:.2f} s for {k} timeouts of {timeout_s:.2f} s (start-up {startup:.2f} s, "
                           f"fast sample {per_fast:.3f} s; bound {bound:.2f} s)")
