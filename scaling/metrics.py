"""Evaluation records (Arrow columns) -> per-budget metrics with bootstrap intervals -> SizePoints.

    from scaling.collect import collect
    from scaling.metrics import compute_metrics, size_points
    study = collect("runs/qwen3-ladder")
    ms = compute_metrics(study.records)                 # MetricSet
    ms.metrics                                          # list[BudgetMetric], one per group
    points = size_points(ms, study.sizes, convention="active")

A *group* is one (size, checkpoint, benchmark, budget). Per group we report:

* ``accuracy``: mean@k, the mean over problems of (correct samples / samples). Its interval is
  a percentile bootstrap over problems: problems are resampled with replacement, the samples of
  a resampled problem stay together. The resamples are drawn once per benchmark and shared by
  every size, checkpoint and budget of that benchmark (a *paired* bootstrap), so differences
  (trained - base) and refits of trends against size see the same problem draws.
* ``pass_at_k``: the unbiased estimator 1 - C(n-c, k)/C(n, k) (Chen et al. 2021,
  arXiv 2107.03374) with k = the fewest samples any problem of the group has.
* ``tokens_mean`` / ``tokens_median``: response length (``response_tokens``) over all rows;
  ``tokens_correct_mean`` / ``tokens_incorrect_mean`` split by correctness.
* ``truncated_frac``: rows that did not finish within the budget (``finished`` is false).
* ``accuracy_per_1k_tokens``: token efficiency, accuracy / (tokens_mean / 1000);
  ``tokens_per_accuracy`` is its inverse in tokens.
* per (size, checkpoint, benchmark): ``accuracy_auc``, the area under accuracy vs log2(budget)
  divided by the log2 range, i.e. the mean accuracy over the budget spectrum on a log axis
  (equals the accuracy when there is a single budget). Stored with ``budget_tokens = 0``.
* per (size, benchmark, budget), every checkpoint C against the base checkpoint, arm
  ``"C_vs_base"``: ``accuracy_change`` = acc_C - acc_base and ``length_reduction_frac`` =
  1 - tokens_mean_C / tokens_mean_base (positive = shorter), with paired intervals, and
  ``length_change_frac`` = tokens_mean_C / tokens_mean_base - 1 (negative = shorter, the sign the
  papers print: Art's -40.3%); the report's headline shows this one in percent.
* length histograms per group, split by correctness (shared bins per benchmark).

Everything is computed on numpy arrays with ``bincount`` and one sort per benchmark; the
bootstrap is a (groups x problems) @ (problems x replicates) product. No per-row objects.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import RecordError
from .records import BudgetMetric, SizePoint

BASE_CHECKPOINT = "base"

# metrics with bootstrap replicates (and so intervals and refittable trends)
BOOTSTRAPPED = (
    "accuracy",
    "pass_at_k",
    "tokens_mean",
    "tokens_correct_mean",
    "tokens_incorrect_mean",
    "truncated_frac",
    "accuracy_per_1k_tokens",
)
CURVE_METRICS = ("accuracy_auc",)  # per (size, checkpoint, benchmark), budget_tokens = 0
DELTA_METRICS = ("accuracy_change", "length_reduction_frac", "length_change_frac")  # arm "<ckpt>_vs_base"
# the EvalRecord columns compute_metrics reads (collect(..., columns=METRIC_COLUMNS))
METRIC_COLUMNS = ("size", "checkpoint", "benchmark", "problem_id", "budget_tokens", "response_tokens", "correct", "finished")


@dataclass(frozen=True)
class Estimate:
    """One number with its bootstrap interval and replicates (None when not bootstrapped)."""

    value: float
    lo: float
    hi: float
    boot: np.ndarray | None
    n_problems: int
    k: int


@dataclass(frozen=True)
class Histogram:
    """Length histogram of one group: counts per bin for correct and incorrect rows."""

    edges: np.ndarray  # bin edges in tokens (len = bins + 1)
    correct: np.ndarray
    incorrect: np.ndarray


@dataclass
class MetricSet:
    """Output of compute_metrics: the per-group table plus every estimate keyed by
    (size, arm, benchmark, budget_tokens, metric); arm is a checkpoint or "<ckpt>_vs_base"."""

    metrics: list[BudgetMetric]
    values: dict[tuple[str, str, str, int, str], Estimate]
    histograms: dict[tuple[str, str, str, int], Histogram]
    n_boot: int
    level: float
    seed: int
    checkpoints: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    budgets: dict[str, list[int]] = field(default_factory=dict)  # benchmark -> budgets

    def get(self, size: str, arm: str, benchmark: str, budget: int, metric: str) -> Estimate | None:
        return self.values.get((size, arm, benchmark, budget, metric))

    def metric(self, size: str, checkpoint: str, benchmark: str, budget: int) -> BudgetMetric | None:
        for m in self.metrics:
            if (m.size, m.checkpoint, m.benchmark, m.budget_tokens) == (size, checkpoint, benchmark, budget):
                return m
        return None


def _codes(table: Any, name: str, *, sort: bool = True) -> tuple[np.ndarray, list[Any]]:
    """Integer codes of a column and the distinct values (sorted, so codes are deterministic)."""
    import pyarrow as pa

    col = table.column(name)
    if pa.types.is_dictionary(col.type) and col.num_chunks:
        col = col.unify_dictionaries() if hasattr(col, "unify_dictionaries") else pa.chunked_array(
            pa.Table.from_arrays([col], [name]).unify_dictionaries().column(0).chunks, col.type
        )
        values = col.chunk(0).dictionary.to_pylist()
        idx = np.concatenate([ch.indices.to_numpy(zero_copy_only=False) for ch in col.chunks]).astype(np.int64)
    else:
        enc = col.combine_chunks().dictionary_encode()
        idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        values = enc.dictionary.to_pylist()
    if not sort:
        return idx, values
    order = np.argsort(np.array(values, dtype=object), kind="stable")
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    return rank[idx], [values[i] for i in order]


def _quantiles(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per row of a (groups, replicates) array, ignoring NaN replicates
    (numpy's default linear interpolation; rows with fewer than 2 finite replicates -> NaN)."""
    a = (1.0 - level) / 2.0
    if boot.size and np.isfinite(boot).all():
        q = np.quantile(boot, [a, 1.0 - a], axis=1)
        return q[0], q[1]
    srt = np.sort(boot, axis=1)  # NaN sorts last
    cnt = np.isfinite(boot).sum(axis=1)
    rows = np.arange(boot.shape[0])
    out = []
    for q in (a, 1.0 - a):
        pos = q * np.maximum(cnt - 1, 0)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, np.maximum(cnt - 1, 0))
        frac = pos - i0
        with np.errstate(all="ignore"):
            v = srt[rows, i0] * (1.0 - frac) + srt[rows, i1] * frac
        out.append(np.where(cnt > 1, v, np.nan))
    return out[0], out[1]


def _pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k per problem: 1 - prod_{i<k} (n-c-i)/(n-i)  (n >= k)."""
    fail = np.ones_like(n, dtype=np.float64)
    with np.errstate(all="ignore"):
        for i in range(k):
            fail *= np.clip((n - c - i) / (n - i), 0.0, 1.0)
    return 1.0 - fail


def _boot_weights(n_problems: int, n_boot: int, seed: int, benchmark: str) -> np.ndarray:
    """(n_boot, n_problems) counts of each problem in each resample. Seeded per benchmark so a
    benchmark's resamples do not depend on which other benchmarks a study has."""
    rng = np.random.default_rng([seed, zlib.crc32(benchmark.encode())])
    draws = rng.integers(0, n_problems, size=(n_boot, n_problems))
    flat = draws + (np.arange(n_boot)[:, None] * n_problems)
    return np.bincount(flat.ravel(), minlength=n_boot * n_problems).reshape(n_boot, n_problems).astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def compute_metrics(
    records: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    hist_bins: int = 40,
    base: str = BASE_CHECKPOINT,
    progress: bool = False,
) -> MetricSet:
    """Reduce an EvalRecord table to a MetricSet (see module docstring for every number)."""
    if n_boot < 2:
        raise ValueError("n_boot must be >= 2")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    if records.num_rows == 0:
        raise RecordError("no evaluation records with a DONE marker: nothing to aggregate (run or resume the study)")
    s_code, sizes = _codes(records, "size", sort=False)
    c_code, ckpts = _codes(records, "checkpoint")
    b_code, benches = _codes(records, "benchmark")
    p_code, _ = _codes(records, "problem_id")
    budget = records.column("budget_tokens").to_numpy().astype(np.int64, copy=False)
    tokens = records.column("response_tokens").to_numpy().astype(np.float64)
    correct = records.column("correct").to_numpy(zero_copy_only=False).astype(np.float64)
    unfinished = 1.0 - records.column("finished").to_numpy(zero_copy_only=False).astype(np.float64)
    nS, nC = len(sizes), len(ckpts)
    out_metrics: list[BudgetMetric] = []
    values: dict[tuple[str, str, str, int, str], Estimate] = {}
    hists: dict[tuple[str, str, str, int], Histogram] = {}
    budgets_by_bench: dict[str, list[int]] = {}
    for bi, bench in enumerate(benches):
        m = b_code == bi
        bud_u, bud_inv = np.unique(budget[m], return_inverse=True)
        nB = len(bud_u)
        budgets_by_bench[bench] = [int(x) for x in bud_u]
        p_u, p_inv = np.unique(p_code[m], return_inverse=True)
        P = len(p_u)
        nG = nS * nC * nB
        group = (s_code[m] * nC + c_code[m]) * nB + bud_inv
        gp = group * P + p_inv
        L = nG * P
        tok, cor, unf = tokens[m], correct[m], unfinished[m]
        n = np.bincount(gp, minlength=L).reshape(nG, P).astype(np.float64)
        c = np.bincount(gp, weights=cor, minlength=L).reshape(nG, P)
        t = np.bincount(gp, weights=tok, minlength=L).reshape(nG, P)
        tc = np.bincount(gp, weights=tok * cor, minlength=L).reshape(nG, P)
        u = np.bincount(gp, weights=unf, minlength=L).reshape(nG, P)
        present = n.sum(axis=1) > 0
        has = n > 0
        W = _boot_weights(P, n_boot, seed, bench).T.astype(np.float32)  # (P, n_boot)
        pres = np.flatnonzero(present)
        n, c, t, tc, u, has = n[pres], c[pres], t[pres], tc[pres], u[pres], has[pres]
        acc_p0 = np.nan_to_num(_ratio(c, n))
        maskf = has.astype(np.float64)
        k_g = np.where(has, n, np.inf).min(axis=1).astype(np.int64)
        pass_p = np.zeros_like(n)
        for gi in range(len(pres)):
            pass_p[gi] = np.where(has[gi], _pass_at_k(n[gi], c[gi], int(k_g[gi])), 0.0)
        # one (8 x groups, problems) @ (problems, n_boot) product for every resampled sum
        stacked = np.concatenate([acc_p0, pass_p, maskf, t, n, tc, c, u]).astype(np.float32)
        acc_B, pass_B, npb, t_B, n_B, tc_B, c_B, u_B = (
            x.astype(np.float64) for x in np.split(stacked @ W, 8)
        )
        del stacked
        est = {
            "accuracy": (acc_p0.sum(1) / maskf.sum(1).clip(1), _ratio(acc_B, npb)),
            "pass_at_k": (pass_p.sum(1) / maskf.sum(1).clip(1), _ratio(pass_B, npb)),
            "tokens_mean": (_ratio(t.sum(1), n.sum(1)), _ratio(t_B, n_B)),
            "tokens_correct_mean": (_ratio(tc.sum(1), c.sum(1)), _ratio(tc_B, c_B)),
            "tokens_incorrect_mean": (_ratio((t - tc).sum(1), (n - c).sum(1)), _ratio(t_B - tc_B, n_B - c_B)),
            "truncated_frac": (_ratio(u.sum(1), n.sum(1)), _ratio(u_B, n_B)),
        }
        acc_v, acc_b = est["accuracy"]
        tok_v, tok_b = est["tokens_mean"]
        est["accuracy_per_1k_tokens"] = (_ratio(acc_v * 1000.0, tok_v), _ratio(acc_b * 1000.0, tok_b))
        intervals = {name: _quantiles(b, level) for name, (_, b) in est.items()}
        n_prob = maskf.sum(1).astype(int)
        # medians and histograms: one sort of (group, tokens)
        tok_i = tok.astype(np.int64)
        key = np.sort(group.astype(np.int64) * (1 << 32) + tok_i)
        starts = np.searchsorted(key, np.arange(nG + 1, dtype=np.int64) * (1 << 32))
        sorted_tok = (key - (key >> 32 << 32)).astype(np.float64)
        top = max(int(bud_u.max()), int(tok_i.max()) + 1, 1)
        edges = np.linspace(0.0, float(top), hist_bins + 1)
        bin_i = np.minimum((tok_i * hist_bins) // top, hist_bins - 1)
        hidx = (group * 2 + cor.astype(np.int64)) * hist_bins + bin_i
        hcounts = np.bincount(hidx, minlength=nG * 2 * hist_bins).reshape(nG, 2, hist_bins)
        for gi, g in enumerate(pres):
            si, rem = divmod(int(g), nC * nB)
            ci, bb = divmod(rem, nB)
            size, ckpt, bud = sizes[si], ckpts[ci], int(bud_u[bb])
            seg = sorted_tok[starts[g] : starts[g + 1]]
            med = float(np.median(seg)) if seg.size else float("nan")
            e = {
                name: (float(v[gi]), float(intervals[name][0][gi]), float(intervals[name][1][gi]), b[gi])
                for name, (v, b) in est.items()
            }
            for name, (v, lo, hi, b) in e.items():
                values[(size, ckpt, bench, bud, name)] = Estimate(v, lo, hi, b, int(n_prob[gi]), int(k_g[gi]))
            values[(size, ckpt, bench, bud, "tokens_median")] = Estimate(
                med, float("nan"), float("nan"), None, int(n_prob[gi]), int(k_g[gi])
            )
            acc = e["accuracy"][0]
            out_metrics.append(
                BudgetMetric(
                    size=size,
                    checkpoint=ckpt,
                    benchmark=bench,
                    budget_tokens=bud,
                    k=int(k_g[gi]),
                    n_problems=int(n_prob[gi]),
                    accuracy=acc,
                    accuracy_lo=e["accuracy"][1],
                    accuracy_hi=e["accuracy"][2],
                    pass_at_k=e["pass_at_k"][0],
                    tokens_mean=e["tokens_mean"][0],
                    tokens_median=med,
                    tokens_correct_mean=e["tokens_correct_mean"][0],
                    tokens_incorrect_mean=e["tokens_incorrect_mean"][0],
                    truncated_frac=e["truncated_frac"][0],
                    tokens_per_accuracy=e["tokens_mean"][0] / acc if acc > 0 else float("nan"),
                    accuracy_per_1k_tokens=e["accuracy_per_1k_tokens"][0],
                    tokens_mean_lo=e["tokens_mean"][1],
                    tokens_mean_hi=e["tokens_mean"][2],
                    n_rows=int(n[gi].sum()),
                )
            )
            hists[(size, ckpt, bench, bud)] = Histogram(edges=edges, correct=hcounts[g, 1], incorrect=hcounts[g, 0])
        _curves_and_deltas(values, sizes, ckpts, bench, [int(x) for x in bud_u], base, level)
        if progress:
            print(f"metrics: {bench}: {int(present.sum())} groups, {P} problems", file=sys.stderr)
    order = {s: i for i, s in enumerate(sizes)}
    out_metrics.sort(key=lambda x: (x.benchmark, order[x.size], x.checkpoint, x.budget_tokens))
    return MetricSet(
        metrics=out_metrics,
        values=values,
        histograms=hists,
        n_boot=n_boot,
        level=level,
        seed=seed,
        checkpoints=list(ckpts),
        benchmarks=list(benches),
        budgets=budgets_by_bench,
    )


def _estimate(v: float, b: np.ndarray, level: float, n_problems: int, k: int) -> Estimate:
    lo, hi = _quantiles(b[None, :], level)
    return Estimate(float(v), float(lo[0]), float(hi[0]), b, n_problems, k)


def _curves_and_deltas(
    values: dict, sizes: list[str], ckpts: list[str], bench: str, budgets: list[int], base: str, level: float
) -> None:
    """Area under accuracy vs log2(budget) per (size, ckpt), and each checkpoint vs base."""
    x = np.log2(np.array(budgets, dtype=np.float64))
    for size in sizes:
        for ckpt in ckpts:
            ests = [values.get((size, ckpt, bench, b, "accuracy")) for b in budgets]
            if any(e is None for e in ests):
                continue
            v = np.array([e.value for e in ests])
            B = np.stack([e.boot for e in ests])  # (budgets, n_boot)
            if len(budgets) == 1:
                auc_v, auc_b = v[0], B[0]
            else:
                span = x[-1] - x[0]
                auc_v = float(np.trapezoid(v, x) / span)
                auc_b = np.trapezoid(B, x, axis=0) / span
            values[(size, ckpt, bench, 0, "accuracy_auc")] = _estimate(
                auc_v, auc_b, level, min(e.n_problems for e in ests), min(e.k for e in ests)
            )
        if base not in ckpts:
            continue
        for ckpt in ckpts:
            if ckpt == base:
                continue
            arm = f"{ckpt}_vs_{base}"
            for bud in budgets:
                a_t = values.get((size, ckpt, bench, bud, "accuracy"))
                a_b = values.get((size, base, bench, bud, "accuracy"))
                l_t = values.get((size, ckpt, bench, bud, "tokens_mean"))
                l_b = values.get((size, base, bench, bud, "tokens_mean"))
                if None in (a_t, a_b, l_t, l_b):
                    continue
                n_p, k = min(a_t.n_problems, a_b.n_problems), min(a_t.k, a_b.k)
                values[(size, arm, bench, bud, "accuracy_change")] = _estimate(
                    a_t.value - a_b.value, a_t.boot - a_b.boot, level, n_p, k
                )
                with np.errstate(all="ignore"):
                    red_v = 1.0 - l_t.value / l_b.value if l_b.value > 0 else float("nan")
                    red_b = 1.0 - l_t.boot / l_b.boot
                values[(size, arm, bench, bud, "length_reduction_frac")] = _estimate(red_v, red_b, level, n_p, k)
                # the same effect signed as the papers print it (Art: -40.3% = shorter)
                values[(size, arm, bench, bud, "length_change_frac")] = _estimate(-red_v, -red_b, level, n_p, k)


def size_points(
    ms: MetricSet,
    sizes: dict[str, Any],
    *,
    convention: str = "active",
    metrics: tuple[str, ...] | None = None,
) -> list[SizePoint]:
    """Every estimate of ``ms`` as a SizePoint on the params axis (``sizes``: size ->
    collect.SizeFacts). ``metrics`` restricts the metric names (default: all)."""
    out: list[SizePoint] = []
    for (size, arm, bench, bud, metric), e in ms.values.items():
        if metrics is not None and metric not in metrics:
            continue
        facts = sizes.get(size)
        if facts is None:
            raise RecordError(f"size {size!r} has records but no parameter count (plan.json); restore plan.json")
        out.append(
            SizePoint(
                family=facts.family,
                size=size,
                label=facts.label,
                params=int(facts.params(convention)),
                params_convention=convention,
                arm=arm,
                benchmark=bench,
                budget_tokens=bud,
                metric=metric,
                value=e.value,
                lo=e.lo,
                hi=e.hi,
                n_problems=e.n_problems,
                boot=e.boot,
            )
        )
    return out
