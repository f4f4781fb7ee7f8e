"""metrics: every number on hand-made records, paired bootstrap, AUC, deltas, histograms."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from scaling.collect import SizeFacts
from scaling.errors import RecordError
from scaling.metrics import _pass_at_k, compute_metrics, size_points
from scaling.records import EvalRecord, to_table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.synthetic
from tests.synthetic import write_synthetic_study  # noqa: E402


def _rows(size, ckpt, budget, table):
    """table: list of (problem, sample, correct, finished, tokens)."""
    return [
        dict(run_id=f"{size}/eval-{ckpt}", model="m", size=size, checkpoint=ckpt, benchmark="b", problem_id=p,
             sample=s, budget_tokens=budget, finished=f, correct=c, grade="ok" if c else "wrong",
             response_tokens=t, thinking_tokens=t, decoded_tokens=t, answer="")
        for p, s, c, f, t in table
    ]


BASE = [("p1", 0, True, True, 100), ("p1", 1, False, True, 300), ("p2", 0, False, False, 1000), ("p2", 1, False, True, 500)]
TRAINED = [("p1", 0, True, True, 50), ("p1", 1, True, True, 150), ("p2", 0, False, True, 500), ("p2", 1, True, True, 100)]


def _ms(**kw):
    rows = _rows("8b", "base", 1000, BASE) + _rows("8b", "trained", 1000, TRAINED)
    return compute_metrics(to_table(rows, EvalRecord), n_boot=200, **kw)


def test_metrics_match_hand_computed_values() -> None:
    ms = _ms()
    m = ms.metric("8b", "base", "b", 1000)
    assert m.k == 2 and m.n_problems == 2 and m.n_rows == 4
    assert m.accuracy == pytest.approx(0.25)  # p1: 1/2, p2: 0/2
    assert m.pass_at_k == pytest.approx(0.5)  # p1 solved once
    assert m.tokens_mean == pytest.approx(475.0)
    assert m.tokens_median == pytest.approx(400.0)
    assert m.tokens_correct_mean == pytest.approx(100.0)
    assert m.tokens_incorrect_mean == pytest.approx(600.0)
    assert m.truncated_frac == pytest.approx(0.25)
    assert m.accuracy_per_1k_tokens == pytest.approx(0.25 / 0.475)
    assert m.tokens_per_accuracy == pytest.approx(475.0 / 0.25)
    assert m.accuracy_lo <= m.accuracy <= m.accuracy_hi


def test_trained_vs_base_change_and_length_reduction() -> None:
    ms = _ms()
    acc = ms.get("8b", "trained_vs_base", "b", 1000, "accuracy_change")
    red = ms.get("8b", "trained_vs_base", "b", 1000, "length_reduction_frac")
    assert acc.value == pytest.approx(0.75 - 0.25)
    assert red.value == pytest.approx(1 - 200.0 / 475.0)
    assert acc.lo <= acc.value <= acc.hi


def test_bootstrap_is_paired_across_checkpoints() -> None:
    # identical records under two checkpoints: every resample sees the same problems,
    # so the change is exactly zero in every replicate (an unpaired bootstrap would not be)
    rows = _rows("8b", "base", 1000, BASE) + _rows("8b", "trained", 1000, BASE)
    ms = compute_metrics(to_table(rows, EvalRecord), n_boot=100)
    e = ms.get("8b", "trained_vs_base", "b", 1000, "accuracy_change")
    assert np.all(e.boot == 0.0) and e.lo == 0.0 and e.hi == 0.0


def test_bootstrap_is_seeded_and_reproducible() -> None:
    a, b, c = _ms(seed=3), _ms(seed=3), _ms(seed=4)
    ea, eb, ec = (x.get("8b", "base", "b", 1000, "accuracy").boot for x in (a, b, c))
    assert np.array_equal(ea, eb) and not np.array_equal(ea, ec)


def test_auc_is_mean_accuracy_over_log2_budget() -> None:
    # accuracy 0 at 1024, 1 at 4096, 1 at 16384: trapezoid over log2 = (0.5*2 + 1*2) / 4
    rows = []
    for budget, ok in ((1024, False), (4096, True), (16384, True)):
        rows += _rows("8b", "base", budget, [("p1", 0, ok, ok, 10), ("p2", 0, ok, ok, 10)])
    ms = compute_metrics(to_table(rows, EvalRecord), n_boot=50)
    auc = ms.get("8b", "base", "b", 0, "accuracy_auc")
    assert auc.value == pytest.approx(0.75)
    assert ms.budgets["b"] == [1024, 4096, 16384]


def test_histograms_split_rows_by_correctness() -> None:
    ms = _ms()
    h = ms.histograms[("8b", "base", "b", 1000)]
    assert h.correct.sum() == 1 and h.incorrect.sum() == 3
    assert h.edges[0] == 0 and h.edges[-1] >= 1000


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 0.5; c=0 -> 0; c=n -> 1
    got = _pass_at_k(np.array([4.0, 4.0, 4.0]), np.array([1.0, 0.0, 4.0]), 2)
    assert got == pytest.approx([0.5, 0.0, 1.0])


def test_size_points_use_the_params_convention() -> None:
    rows = _rows("30b_a3b", "base", 1000, BASE)
    ms = compute_metrics(to_table(rows, EvalRecord), n_boot=20)
    facts = {"30b_a3b": SizeFacts(size="30b_a3b", label="30B-A3B", family="q", params_total=30_000_000_000,
                                  params_active=3_000_000_000)}
    act = size_points(ms, facts, metrics=("accuracy",))
    tot = size_points(ms, facts, convention="total", metrics=("accuracy",))
    assert [p.params for p in act] == [3_000_000_000] and [p.params for p in tot] == [30_000_000_000]
    assert act[0].boot is not None and len(act[0].boot) == 20
    with pytest.raises(RecordError, match="no parameter count"):
        size_points(ms, {}, metrics=("accuracy",))


def test_empty_records_are_an_error() -> None:
    with pytest.raises(RecordError, match="nothing to aggregate"):
        compute_metrics(to_table([], EvalRecord))


def test_accuracy_interval_covers_planted_truth_from_synthetic_study(tmp_path) -> None:
    from scaling.collect import collect

    # lengths far below the budget: accuracy at the budget is exactly the planted 0.4 (+/- problem noise)
    root = write_synthetic_study(tmp_path / "s", sizes={"8b": (8e9, 8e9)}, checkpoints=("base",), budgets=(32768,),
                                 problems=400, samples=4, accuracy=lambda n, c: 0.4, length_median=lambda n, c: 300.0,
                                 train_steps=0, seed=11)
    ms = compute_metrics(collect(root).records, n_boot=400)
    m = ms.metric("8b", "base", "math500", 32768)
    assert m.truncated_frac == 0.0
    assert m.accuracy_lo <= 0.4 <= m.accuracy_hi
    assert m.accuracy_hi - m.accuracy_lo < 0.1  # 400 problems x 4 samples: sd ~ 0.02
