"""Training signals -> the two training phases; metrics + signals -> warnings. Pure (numpy).

    from scaling.signals import split_phases, find_alerts
    phases = split_phases(study.signals)           # one PhaseSplit per training run
    alerts = find_alerts(ms, study.signals, phases)

The Art paper (arXiv 2602.20945) describes two phases of length-aware RL: *length adaptation*
(mean rollout length falls roughly exponentially toward the target, truncation is high) and
*reasoning refinement* (length stays flat while accuracy/reward keeps moving). It gives no
numeric rule for the switch. Ours (``PHASE_RULE``):

1. Sort the logged steps; smooth ``tokens_mean`` with a centred running median over
   ``smooth`` logged steps (default: the odd number nearest 5% of the steps, at least 3).
2. Plateau level P = median of the smoothed length over the last 20% of logged steps (>= 3).
3. A step is *in band* when its smoothed length is within ``tol_frac`` (default 10%) of P.
4. The transition is the first logged step that starts ``hold`` consecutive in-band steps
   (default: 5% of the steps, at least 3).
5. If the last ``hold`` steps are not all in band, the length is still moving: no plateau,
   ``transition_step = -1`` (the run may need more steps).
   If the smoothed length starts within the band, there was no adaptation phase: the
   transition is the first step.

Warnings (``find_alerts``; thresholds are ours, named constants below):

* ``length_collapse``: a trained checkpoint gains less than ``COLLAPSE_RATIO`` (25%) of the
  base model's accuracy gain from the smallest to the largest budget, while the base gains at
  least ``COLLAPSE_BASE_GAIN`` (5 points): compression that wins at small budgets but gives up
  the large-budget ceiling (Art's length collapse). Also (issue 23), at the largest budget of
  any benchmark: the trained mean length is at least ``COLLAPSE_LENGTH_DROP`` (60%) below the
  base's *and* the accuracy fell toward 0: to at most ``COLLAPSE_ACC_KEEP`` (half) of the base's
  and by at least ``COLLAPSE_ACC_FALL`` (3 points). The budget-gain test alone cannot see a
  collapse of the level: a model whose accuracy fell at every budget still gains its little
  accuracy with budget (the tiny ladder's MoE on ``tiny_arith_ood``: length -83%, 8.8% -> 2.1%,
  no warning). The method's intended effect (length -30..-50% at about the same accuracy) does
  not fire; a size already near 0 (a fall under 3 points) does not either.
* ``short_is_correct``: correct responses are shorter than ``TRAP_RATIO`` (0.5) x incorrect
  ones (trained checkpoint at its largest budget, or rollouts in the last quarter of training)
  *and* training rewards are sparse in the last quarter (mean reward < ``TRAP_REWARD`` = 0.2
  or more than ``TRAP_ZERO_STD`` = 50% of groups with zero reward variance): the model may be
  learning "short" rather than "correct" (Art's short-is-correct trap).
* ``few_samples``: a (size, checkpoint, benchmark) whose accuracy interval is wider than
  ``FEW_WIDTH`` (0.2) at some budget or has fewer than ``FEW_PROBLEMS`` (30) problems.
* ``no_plateau``: the phase rule found no plateau.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .records import Alert, PhaseSplit

TOL_FRAC = 0.10
TAIL_FRAC = 0.20
COLLAPSE_RATIO = 0.25
COLLAPSE_BASE_GAIN = 0.05
# the level test of length_collapse (labelled defaults): the method's intended length change is
# -30..-50% (tiny ladder measured -37..-50% in-distribution, at most -49% out of domain for a size
# whose accuracy held), so -60% leaves 10 points above the largest healthy drop; "toward 0" =
# keeps at most half of the base accuracy (healthy worst: 0.67x, 0_1m ood 10.0% -> 6.7%), and the
# fall is at least 3 points (issue 23's accuracy target is -3 points or better; a size already
# near 0, 0_3m ood 1.2% -> 0.0%, has no accuracy left to lose).
COLLAPSE_LENGTH_DROP = 0.60
COLLAPSE_ACC_KEEP = 0.5
COLLAPSE_ACC_FALL = 0.03
TRAP_RATIO = 0.5
TRAP_REWARD = 0.2
TRAP_ZERO_STD = 0.5
FEW_WIDTH = 0.2
FEW_PROBLEMS = 30
# what each warning kind means, one line each (the report groups warnings by kind under these)
ALERT_KINDS = {
    "missing": "outputs without a DONE marker are left out: the report is partial (`scaling resume` reruns them)",
    "length_collapse": "the trained model stopped gaining accuracy with budget while the base model gains, or its length "
                       f"fell {100 * COLLAPSE_LENGTH_DROP:.0f}% or more with its accuracy falling toward 0 (length collapse)",
    "short_is_correct": "correct responses much shorter than incorrect ones with sparse rewards (short-is-correct trap)",
    "few_samples": f"fewer than {FEW_PROBLEMS} problems or an accuracy interval wider than {100 * FEW_WIDTH:.0f} pt: "
                   "this size's point is too noisy to anchor a trend",
    "no_plateau": "the training length is still moving at the end: the trained checkpoint may still be adapting",
}
PHASE_RULE = (
    "transition = first logged step from which the running-median length stays within "
    "{tol:.0%} of its final plateau (median of the last 20% of steps) for {hold} consecutive logged steps"
)


def _running_median(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or y.size < 3:
        return y.copy()
    half = window // 2
    pad = np.pad(y, half, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, window)
    return np.median(win, axis=1)


def _default_window(n: int) -> int:
    w = max(3, int(round(n * 0.05)))
    return w if w % 2 else w + 1


def detect_phases(
    steps: Sequence[float],
    tokens_mean: Sequence[float],
    *,
    truncated_frac: Sequence[float] | None = None,
    reward: Sequence[float] | None = None,
    accuracy: Sequence[float] | None = None,
    size: str = "",
    run_id: str = "",
    tol_frac: float = TOL_FRAC,
    hold: int | None = None,
    smooth: int | None = None,
) -> PhaseSplit:
    """Apply the phase rule (module docstring) to one run's logged curves."""
    st = np.asarray(steps, dtype=np.float64)
    L = np.asarray(tokens_mean, dtype=np.float64)
    order = np.argsort(st, kind="stable")
    st, L = st[order], L[order]
    ok = np.isfinite(L)
    idx = np.flatnonzero(ok)
    n = int(ok.sum())

    def col(v: Sequence[float] | None) -> np.ndarray | None:
        return None if v is None else np.asarray(v, dtype=np.float64)[order][ok]

    trunc, rew, acc = col(truncated_frac), col(reward), col(accuracy)
    st, L = st[idx], L[idx]
    if n < 8:
        return PhaseSplit(
            size=size, run_id=run_id, transition_step=-1, steps=n,
            reason=f"too few logged steps ({n} < 8) to split phases",
            tokens_start=float(L[0]) if n else math.nan, tokens_plateau=math.nan,
        )
    w = smooth or _default_window(n)
    h = hold or max(3, int(math.ceil(0.05 * n)))
    Ls = _running_median(L, w)
    tail = max(3, int(round(TAIL_FRAC * n)))
    P = float(np.median(Ls[-tail:]))
    band = np.abs(Ls - P) <= tol_frac * abs(P)
    rule = f"band {tol_frac:.0%}, hold {h} logged steps, median window {w}"
    if not band[-h:].all():
        return PhaseSplit(
            size=size, run_id=run_id, transition_step=-1, steps=n,
            reason=f"no plateau: the length is still moving over the last {h} logged steps ({rule})",
            tokens_start=float(Ls[0]), tokens_plateau=P,
        )
    run = np.convolve(band.astype(int), np.ones(h, dtype=int), mode="valid") == h  # run[i]: band[i:i+h]
    i = int(np.argmax(run))
    if i == 0:
        reason = f"no length-adaptation phase: the length starts within {tol_frac:.0%} of its plateau"
    elif Ls[0] > P:
        reason = f"length fell from {Ls[0]:.0f} to a plateau of {P:.0f} tokens ({rule})"
    else:
        reason = f"length rose from {Ls[0]:.0f} to a plateau of {P:.0f} tokens ({rule})"

    def mean(v: np.ndarray | None, sl: slice) -> float:
        return _nanmean(v[sl]) if v is not None else math.nan

    def change(v: np.ndarray | None) -> float:
        if v is None or not np.isfinite(v).any():
            return math.nan
        vs = _running_median(np.nan_to_num(v, nan=_nanmean(v)), w)
        return float(vs[-1] - vs[i])

    return PhaseSplit(
        size=size,
        run_id=run_id,
        transition_step=int(st[i]),
        reason=reason,
        steps=n,
        tokens_start=float(Ls[0]),
        tokens_plateau=P,
        truncated_frac_adaptation=mean(trunc, slice(0, i)),
        truncated_frac_refinement=mean(trunc, slice(i, None)),
        reward_change_refinement=change(rew),
        accuracy_change_refinement=change(acc),
    )


def _nanmean(v: np.ndarray) -> float:
    """Mean of the finite values, NaN when there are none (no RuntimeWarning)."""
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def signal_columns(signals: Any) -> dict[str, np.ndarray]:
    """A TrainSignal Arrow table -> numpy columns."""
    out = {}
    for name in signals.column_names:
        col = signals.column(name)
        out[name] = np.asarray(col.to_pylist(), dtype=object) if str(col.type) == "string" else col.to_numpy()
    return out


def split_phases(signals: Any, **kw: Any) -> list[PhaseSplit]:
    """One PhaseSplit per training run (run_id) of a TrainSignal table, ordered as they come."""
    if signals.num_rows == 0:
        return []
    c = signal_columns(signals)
    out = []
    for run_id in dict.fromkeys(c["run_id"].tolist()):
        m = c["run_id"] == run_id
        out.append(
            detect_phases(
                c["step"][m], c["tokens_mean"][m],
                truncated_frac=c["truncated_frac"][m], reward=c["reward_mean"][m], accuracy=c["accuracy"][m],
                size=str(c["size"][m][0]), run_id=str(run_id), **kw,
            )
        )
    return out


def _tail_stats(signals: Any) -> dict[str, dict[str, float]]:
    """Per size: means over the last quarter of logged steps (reward density, lengths)."""
    if signals is None or signals.num_rows == 0:
        return {}
    c = signal_columns(signals)
    out: dict[str, dict[str, float]] = {}
    for size in dict.fromkeys(c["size"].tolist()):
        m = np.flatnonzero(c["size"] == size)
        m = m[np.argsort(c["step"][m], kind="stable")]
        tail = m[-max(1, len(m) // 4) :]
        out[str(size)] = {
            k: _nanmean(c[k][tail].astype(np.float64))
            for k in ("reward_mean", "zero_std_frac", "tokens_correct_mean", "tokens_incorrect_mean")
        }
    return out


def _level_collapse(t: Any, b: Any) -> tuple[float, float] | None:
    """(length change, accuracy change) of a trained vs base BudgetMetric at one budget when they
    meet the level test of ``length_collapse`` (module docstring), else None."""
    if t is None or b is None:
        return None
    vals = (t.tokens_mean, b.tokens_mean, t.accuracy, b.accuracy)
    if not all(np.isfinite(v) for v in vals) or b.tokens_mean <= 0:
        return None
    l_chg = t.tokens_mean / b.tokens_mean - 1.0
    fall = t.accuracy - b.accuracy
    if (l_chg <= -COLLAPSE_LENGTH_DROP and t.accuracy <= COLLAPSE_ACC_KEEP * b.accuracy
            and -fall >= COLLAPSE_ACC_FALL - 1e-12):
        return l_chg, fall
    return None


def find_alerts(
    ms: Any, signals: Any = None, phases: Sequence[PhaseSplit] = (), *, base: str = "base",
    labels: dict[str, str] | None = None,
) -> list[Alert]:
    """Warnings for a MetricSet (metrics.py), its training signals and phase splits.
    ``labels`` (size key -> display label, ``StudyRecords.label``) names sizes in the messages
    the way the report's tables do; ``Alert.size`` keeps the key."""
    alerts: list[Alert] = []
    lab = (labels or {}).get
    by_key = {(m.size, m.checkpoint, m.benchmark, m.budget_tokens): m for m in ms.metrics}
    sizes = list(dict.fromkeys(m.size for m in ms.metrics))
    tails = _tail_stats(signals)
    for bench in ms.benchmarks:
        buds = ms.budgets.get(bench, [])
        if not buds:
            continue
        lo_b, hi_b = buds[0], buds[-1]
        for size in sizes:
            for ckpt in ms.checkpoints:
                # few samples
                rows = [by_key.get((size, ckpt, bench, b)) for b in buds]
                rows = [r for r in rows if r is not None]
                if rows:
                    widths = [r.accuracy_hi - r.accuracy_lo for r in rows]
                    worst = rows[int(np.argmax([w if np.isfinite(w) else 1.0 for w in widths]))]
                    width = worst.accuracy_hi - worst.accuracy_lo
                    few = min(r.n_problems for r in rows)
                    why = []
                    if few < FEW_PROBLEMS:
                        why.append(f"only {few} problems (< {FEW_PROBLEMS})")
                    if not np.isfinite(width) or width > FEW_WIDTH:
                        why.append(f"accuracy interval {100 * width:.0f} pt wide at budget {worst.budget_tokens} (> {100 * FEW_WIDTH:.0f} pt)")
                    if why:
                        alerts.append(Alert(
                            kind="few_samples", size=size, benchmark=bench, checkpoint=ckpt,
                            message=(f"{lab(size, size)} {ckpt} {bench}: {' and '.join(why)} with {worst.k} samples per problem; "
                                     "add problems or samples before trusting this size"),
                        ))
                if ckpt == base:
                    continue
                t_lo, t_hi = by_key.get((size, ckpt, bench, lo_b)), by_key.get((size, ckpt, bench, hi_b))
                b_lo, b_hi = by_key.get((size, base, bench, lo_b)), by_key.get((size, base, bench, hi_b))
                level = _level_collapse(t_hi, b_hi)
                if level is not None:
                    l_chg, fall = level
                    alerts.append(Alert(
                        kind="length_collapse", size=size, benchmark=bench, checkpoint=ckpt,
                        message=(f"{lab(size, size)} {ckpt} {bench}: at budget {hi_b} the length fell {100 * l_chg:+.0f}% "
                                 f"({b_hi.tokens_mean:.0f} -> {t_hi.tokens_mean:.0f} tokens) and the accuracy "
                                 f"{100 * b_hi.accuracy:.1f}% -> {100 * t_hi.accuracy:.1f}% ({100 * fall:+.1f} pt): "
                                 "the model gave up reasoning, not only length (length collapse); raise the target "
                                 "length, lower the learning rate or stop at the length plateau"),
                    ))
                elif len(buds) >= 2 and None not in (t_lo, t_hi, b_lo, b_hi):
                    g_t, g_b = t_hi.accuracy - t_lo.accuracy, b_hi.accuracy - b_lo.accuracy
                    if g_b >= COLLAPSE_BASE_GAIN and g_t < COLLAPSE_RATIO * g_b:
                        alerts.append(Alert(
                            kind="length_collapse", size=size, benchmark=bench, checkpoint=ckpt,
                            message=(f"{lab(size, size)} {ckpt} {bench}: accuracy gains {100 * g_t:+.1f} pt from budget {lo_b} to {hi_b} "
                                     f"while {base} gains {100 * g_b:+.1f} pt: the trained model no longer uses large budgets "
                                     "(length collapse); raise the target length or stop earlier"),
                        ))
                # short-is-correct trap
                t = tails.get(size)
                if t_hi is None or t is None:
                    continue
                sparse = (np.isfinite(t["reward_mean"]) and t["reward_mean"] < TRAP_REWARD) or (
                    np.isfinite(t["zero_std_frac"]) and t["zero_std_frac"] > TRAP_ZERO_STD
                )
                with np.errstate(all="ignore"):
                    r_eval = t_hi.tokens_correct_mean / t_hi.tokens_incorrect_mean
                    r_train = t["tokens_correct_mean"] / t["tokens_incorrect_mean"]
                short = (np.isfinite(r_eval) and r_eval < TRAP_RATIO) or (np.isfinite(r_train) and r_train < TRAP_RATIO)
                if sparse and short:
                    alerts.append(Alert(
                        kind="short_is_correct", size=size, benchmark=bench, checkpoint=ckpt,
                        message=(f"{lab(size, size)} {ckpt} {bench}: correct responses are {r_eval:.2f}x the length of incorrect "
                                 f"(training tail {r_train:.2f}x) with sparse rewards (mean reward "
                                 f"{t['reward_mean']:.2f}, zero-variance groups {t['zero_std_frac']:.0%}): the model may "
                                 "learn 'short' instead of 'correct'; train on easier prompts or do not mask incorrect rollouts"),
                    ))
    for ph in phases:
        if ph.transition_step < 0:
            alerts.append(Alert(kind="no_plateau", size=ph.size, message=f"{lab(ph.size, ph.size)} training: {ph.reason}"))
    return alerts
