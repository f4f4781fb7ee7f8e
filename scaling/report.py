"""`scaling report STUDY [STUDY ...]`: metrics, trend fits, training phases -> report.md + report.html.

    scaling report qwen3-ladder                       # runs/qwen3-ladder/report/report.{md,html}
    scaling report runs/a runs/b -o cmp/              # two studies on the same axes
    scaling report qwen3-ladder --predict 70b --params total

Pipeline per study: collect (marked outputs only) -> compute_metrics (bootstrap over problems)
-> size_points -> fit_trends -> split_phases + find_alerts; then one renderer writes the same
content twice: ``report.md`` (figures as PNG files under ``figures/``) and a self-contained
``report.html`` (figures embedded as base64 data URIs, inline CSS, no script, no external asset).
Every file is written atomically. docs/reports.md explains every number and plot.
Departure from the papers: they report single numbers per model; we add intervals, trends
against size and the phase rule, all defined in docs/reports.md.
This is the only module that imports matplotlib (lazily, Agg backend).
"""

from __future__ import annotations

import base64
import html
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .records import Alert, PhaseSplit, TrendFit

FIT_METRICS = (
    "accuracy",
    "pass_at_k",
    "tokens_mean",
    "truncated_frac",
    "accuracy_per_1k_tokens",
    "accuracy_auc",
    "accuracy_change",
    "length_reduction_frac",
)
HEADLINE = ("accuracy", "tokens_mean", "accuracy_auc", "accuracy_change", "length_reduction_frac")
_STYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D"]


def _log(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr, flush=True)


@dataclass
class StudyAnalysis:
    """Everything the report shows about one study."""

    name: str
    path: Path
    study: Any  # collect.StudyRecords
    ms: Any  # metrics.MetricSet
    fits: list[TrendFit]
    phases: list[PhaseSplit]
    alerts: list[Alert]
    convention: str
    failures: list[str] = field(default_factory=list)
    predictions: list[tuple[str, TrendFit, tuple[float, float, float]]] = field(default_factory=list)

    def fit(self, metric: str, arm: str, bench: str, budget: int) -> TrendFit | None:
        for f in self.fits:
            if (f.metric, f.arm, f.benchmark, f.budget_tokens) == (metric, arm, bench, budget):
                return f
        return None

    @property
    def base(self) -> str:
        return "base" if "base" in self.ms.checkpoints else self.ms.checkpoints[0]

    @property
    def arms(self) -> list[str]:
        return [self.base] + [c for c in self.ms.checkpoints if c != self.base]


def analyse(
    study: str | Path,
    *,
    runs_dir: str | Path = "runs",
    convention: str = "active",
    predict: Sequence[str] = (),
    n_boot: int = 1000,
    level: float = 0.95,
    progress: bool = True,
) -> StudyAnalysis:
    """collect -> metrics -> fits -> phases/alerts for one study."""
    from .collect import collect
    from .fit import fit_trends, parse_size, predict as fit_predict
    from .metrics import METRIC_COLUMNS, compute_metrics, size_points
    from .signals import find_alerts, split_phases

    t0 = time.perf_counter()
    st = collect(study, runs_dir=runs_dir, columns=METRIC_COLUMNS, progress=progress)
    if st.records.num_rows == 0:
        from .errors import RecordError

        raise RecordError(
            f"{st.path}: no evaluation records with a DONE marker ({len(st.skipped)} unfinished outputs); "
            f"run `scaling status {st.name}` and `scaling resume {st.name}`"
        )
    ms = compute_metrics(st.records, n_boot=n_boot, level=level, progress=progress)
    if progress:
        _log(f"{st.name}: metrics for {len(ms.metrics)} groups ({time.perf_counter() - t0:.1f} s)")
    pts = size_points(ms, st.sizes, convention=convention, metrics=FIT_METRICS)
    failures: list[str] = []
    fits = fit_trends(pts, metrics=FIT_METRICS, level=level, failures=failures)
    if progress:
        _log(f"{st.name}: {len(fits)} trend fits, {len(failures)} skipped ({time.perf_counter() - t0:.1f} s)")
    phases = split_phases(st.signals)
    alerts = find_alerts(ms, st.signals, phases)
    for s in st.skipped:
        alerts.append(Alert(kind="missing", message=f"{s}: no DONE marker; not included (run `scaling resume {st.name}`)"))
    an = StudyAnalysis(
        name=st.name, path=st.path, study=st, ms=ms, fits=fits, phases=phases, alerts=alerts,
        convention=convention, failures=failures,
    )
    for text in predict:
        n = parse_size(text, convention)
        for f in fits:
            if f.metric in HEADLINE:
                an.predictions.append((text, f, fit_predict(f, n)))
    return an


# ------------------------------------------------------------------------ content blocks
@dataclass
class _Block:
    kind: str  # h1 | h2 | h3 | p | ul | table | img | details
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    png: bytes = b""
    name: str = ""
    children: list["_Block"] = field(default_factory=list)


def _fmt(v: float, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _g(v: float) -> str:
    """Four significant digits (errors whose scale depends on the metric)."""
    return f"{v:.4g}" if v is not None and np.isfinite(v) else "–"


def _ci(v: float, lo: float, hi: float, digits: int = 3) -> str:
    if not np.isfinite(lo) or not np.isfinite(hi):
        return _fmt(v, digits)
    return f"{_fmt(v, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _params_label(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e8 else f"{n / 1e6:.3g}M"


# ------------------------------------------------------------------------------- figures
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _kilo() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _fig_accuracy_vs_budget(ans: list[StudyAnalysis], bench: str) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, len(ans), figsize=(6.5 * len(ans), 4.2), sharey=True, squeeze=False)
    for ax, an in zip(axes[0], ans):
        sizes = [s for s in an.study.size_order() if any(m.size == s and m.benchmark == bench for m in an.ms.metrics)]
        cmap = plt.get_cmap("viridis")
        for i, size in enumerate(sizes):
            color = cmap(i / max(1, len(sizes) - 1))
            for j, arm in enumerate(an.arms):
                rows = sorted(
                    (m for m in an.ms.metrics if m.size == size and m.checkpoint == arm and m.benchmark == bench),
                    key=lambda m: m.budget_tokens,
                )
                if not rows:
                    continue
                b = [m.budget_tokens for m in rows]
                ax.plot(b, [m.accuracy for m in rows], _STYLES[j % 4], marker=_MARKERS[j % 4], color=color, ms=4,
                        label=f"{an.study.sizes[size].label if size in an.study.sizes else size} {arm}")
                ax.fill_between(b, [m.accuracy_lo for m in rows], [m.accuracy_hi for m in rows], color=color, alpha=0.12)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (tokens)")
        ax.set_title(f"{an.name}: {bench}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    axes[0][0].set_ylabel("accuracy (mean@k)")
    return _png(fig)


def _fig_size_trends(ans: list[StudyAnalysis], bench: str, predict: Sequence[str]) -> bytes:
    from .fit import parse_size, predict as fit_predict, trend_curve

    plt = _plt()
    panels = [("accuracy", "accuracy at largest budget"), ("tokens_mean", "mean length (tokens) at largest budget"),
              ("accuracy_auc", "accuracy AUC over log2 budget")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0), squeeze=False)
    for ax, (metric, title) in zip(axes[0], panels):
        for si, an in enumerate(ans):
            conv = an.convention
            budgets = an.ms.budgets.get(bench, [])
            if not budgets:
                continue
            bud = 0 if metric == "accuracy_auc" else budgets[-1]
            pred_n = [parse_size(p, conv) for p in predict]
            for j, arm in enumerate(an.arms):
                color = f"C{j + 2 * si}"
                pts = [(an.study.sizes[s].params(conv), an.ms.get(s, arm, bench, bud, metric)) for s in an.study.size_order()
                       if s in an.study.sizes]
                pts = [(n, e) for n, e in pts if e is not None]
                if not pts:
                    continue
                x = np.array([n for n, _ in pts], dtype=float)
                y = np.array([e.value for _, e in pts])
                lo = np.array([e.lo for _, e in pts])
                hi = np.array([e.hi for _, e in pts])
                yerr = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)])
                tag = f"{an.name} {arm}" if len(ans) > 1 else arm
                ax.errorbar(x, y, yerr=yerr, fmt=_MARKERS[si % 4], color=color, ms=5, capsize=3, label=tag)
                f = an.fit(metric, arm, bench, bud)
                if f is None:
                    continue
                grid = np.geomspace(min(x.min(), *pred_n) / 1.3 if pred_n else x.min() / 1.3,
                                    max(x.max(), *pred_n) * 1.3 if pred_n else x.max() * 1.3, 80)
                v, blo, bhi = trend_curve(f, grid)
                ax.plot(grid, v, _STYLES[si % 4], color=color, lw=1.2, label=f"{tag} fit ({f.form}, R²={f.r2:.2f})")
                ax.fill_between(grid, blo, bhi, color=color, alpha=0.15)
                for p, n in zip(predict, pred_n):
                    pv, plo, phi = fit_predict(f, n)
                    ax.errorbar([n], [pv], yerr=[[pv - plo], [phi - pv]], fmt="*", color=color, ms=10, capsize=4)
                    if si == 0 and j == 0:
                        ax.annotate(p, (n, pv), textcoords="offset points", xytext=(5, 5), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(f"parameters ({ans[0].convention})")
        ax.set_title(f"{bench}: {title}", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=6)
    return _png(fig)


def _fig_lengths(an: StudyAnalysis, bench: str) -> bytes:
    plt = _plt()
    budgets = an.ms.budgets.get(bench, [])
    bud = budgets[-1] if budgets else 0
    sizes = [s for s in an.study.size_order() if any((s, a, bench, bud) in an.ms.histograms for a in an.arms)]
    cols = min(4, max(1, len(sizes)))
    rows = max(1, math.ceil(len(sizes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(sizes):]:
        ax.axis("off")
    for ax, size in zip(axes.ravel(), sizes):
        for j, arm in enumerate(an.arms):
            h = an.ms.histograms.get((size, arm, bench, bud))
            if h is None:
                continue
            centers = (h.edges[:-1] + h.edges[1:]) / 2
            ax.step(centers, h.correct, where="mid", ls=_STYLES[j % 4], color="tab:green", label=f"{arm} correct")
            ax.step(centers, h.incorrect, where="mid", ls=_STYLES[j % 4], color="tab:red", label=f"{arm} incorrect")
        label = an.study.sizes[size].label if size in an.study.sizes else size
        ax.set_title(f"{label}", fontsize=9)
        ax.set_xlabel("response tokens", fontsize=8)
        ax.xaxis.set_major_formatter(_kilo())
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(f"{an.name}: {bench}, length distribution at budget {bud} by correctness", fontsize=10)
    return _png(fig)


def _fig_training(an: StudyAnalysis) -> bytes:
    plt = _plt()
    from .signals import _columns

    c = _columns(an.study.signals)
    order = {s: i for i, s in enumerate(an.study.size_order())}
    runs = sorted(dict.fromkeys(c["run_id"].tolist()), key=lambda r: (order.get(str(r).split("/")[0], len(order)), str(r)))
    cols = min(4, max(1, len(runs)))
    rows = max(1, math.ceil(len(runs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(runs):]:
        ax.axis("off")
    phases = {p.run_id: p for p in an.phases}
    for ax, run in zip(axes.ravel(), runs):
        m = c["run_id"] == run
        o = np.argsort(c["step"][m])
        step = c["step"][m][o]
        ax.plot(step, c["tokens_mean"][m][o], color="tab:blue", lw=1, label="mean length")
        ax.plot(step, c["tokens_correct_mean"][m][o], color="tab:green", lw=0.8, alpha=0.7, label="correct length")
        ax.plot(step, c["tokens_incorrect_mean"][m][o], color="tab:red", lw=0.8, alpha=0.7, label="incorrect length")
        ax.set_ylabel("tokens", fontsize=8)
        ax2 = ax.twinx()
        ax2.plot(step, c["reward_mean"][m][o], color="tab:orange", lw=1, label="reward")
        ax2.plot(step, c["truncated_frac"][m][o], color="tab:gray", lw=1, ls=":", label="truncated frac")
        ax2.set_ylim(-0.02, 1.02)
        ph = phases.get(run)
        if ph is not None and ph.transition_step >= 0:
            ax.axvline(ph.transition_step, color="black", ls="--", lw=1)
            ax.annotate(f"transition {ph.transition_step}", (ph.transition_step, ax.get_ylim()[1]),
                        fontsize=7, va="top", ha="left", xytext=(3, -3), textcoords="offset points")
        ax.set_title(str(run), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax2.tick_params(labelsize=7)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=5, loc="center right")
    fig.suptitle(f"{an.name}: training curves (dashed line: detected phase transition)", fontsize=10)
    return _png(fig)


# ------------------------------------------------------------------------------- content
def _summary_table(an: StudyAnalysis, bench: str) -> _Block:
    budgets = an.ms.budgets.get(bench, [])
    bud = budgets[-1]
    base = an.base
    others = [a for a in an.arms if a != base]
    header = ["size", f"params ({an.convention})", f"acc {base}"]
    for o in others:
        header += [f"acc {o}", f"Δacc {o}"]
    header += [f"tokens {base}"]
    for o in others:
        header += [f"tokens {o}", f"length reduction {o}"]
    header += [f"AUC {a}" for a in an.arms] + [f"truncated {a}" for a in an.arms]
    rows = []
    for s in an.study.size_order():
        g = lambda arm, metric, b=bud: an.ms.get(s, arm, bench, b, metric)  # noqa: E731
        if g(base, "accuracy") is None and not any(g(o, "accuracy") for o in others):
            continue
        facts = an.study.sizes.get(s)
        row = [facts.label if facts else s, _params_label(facts.params(an.convention)) if facts else "?"]

        def cell(e: Any, d: int = 3) -> str:
            return _ci(e.value, e.lo, e.hi, d) if e is not None else "–"

        row.append(cell(g(base, "accuracy")))
        for o in others:
            row += [cell(g(o, "accuracy")), cell(g(f"{o}_vs_{base}", "accuracy_change"))]
        row.append(cell(g(base, "tokens_mean"), 0))
        for o in others:
            row += [cell(g(o, "tokens_mean"), 0), cell(g(f"{o}_vs_{base}", "length_reduction_frac"))]
        row += [cell(g(a, "accuracy_auc", 0)) for a in an.arms]
        row += [_fmt(g(a, "truncated_frac").value) if g(a, "truncated_frac") else "–" for a in an.arms]
        rows.append(row)
    return _Block("table", header=header, rows=rows)


def _metrics_table(an: StudyAnalysis) -> _Block:
    header = ["size", "checkpoint", "benchmark", "budget", "k", "problems", "accuracy [CI]", "pass@k", "tokens mean [CI]",
              "median", "correct", "incorrect", "truncated", "acc / 1k tokens"]
    rows = [[m.size, m.checkpoint, m.benchmark, str(m.budget_tokens), str(m.k), str(m.n_problems),
             _ci(m.accuracy, m.accuracy_lo, m.accuracy_hi), _fmt(m.pass_at_k), _ci(m.tokens_mean, m.tokens_mean_lo, m.tokens_mean_hi, 0),
             _fmt(m.tokens_median, 0), _fmt(m.tokens_correct_mean, 0), _fmt(m.tokens_incorrect_mean, 0),
             _fmt(m.truncated_frac), _fmt(m.accuracy_per_1k_tokens, 4)] for m in an.ms.metrics]
    return _Block("table", header=header, rows=rows)


def _fits_table(ans: list[StudyAnalysis], fits: list[tuple[str, TrendFit]]) -> _Block:
    header = (["study"] if len(ans) > 1 else []) + ["metric", "arm", "benchmark", "budget", "form", "coefficients [CI]", "R²",
                                                     "LOSO error", "n sizes", "criterion"]
    rows = []
    for name, f in fits:
        coefs = "; ".join(f"{k} = {_ci(f.coef[k], f.coef_lo[k], f.coef_hi[k], 4)}" for k in f.coef)
        rows.append(([name] if len(ans) > 1 else []) + [
            f.metric, f.arm, f.benchmark, "all" if f.budget_tokens == 0 else str(f.budget_tokens), f.form, coefs,
            _fmt(f.r2), _g(f.loso_error), str(len(f.points)), f.criterion,
        ])
    return _Block("table", header=header, rows=rows)


def _method_text(an: StudyAnalysis) -> list[_Block]:
    from .fit import AICC_MARGIN

    lvl = f"{an.ms.level:.0%}"
    return [
        _Block("p", text=(
            f"Accuracy is mean@k: the mean over problems of the fraction of the k samples that are correct; a response cut "
            f"at the budget has no answer and counts as incorrect. Intervals are {lvl} percentile bootstrap intervals over "
            f"problems ({an.ms.n_boot} resamples, seed {an.ms.seed}); the same problem resamples are used for every size, "
            "checkpoint and budget of a benchmark, so differences and trends are paired."
        )),
        _Block("p", text=(
            f"Trends are least-squares fits of each metric against log10(parameters, {an.convention}), each size counting "
            "once: log-linear y = value_at_ref + slope_per_decade·(x − x_ref), x_ref the mean log-size; or a power law to a "
            "ceiling y = ceiling − gap_at_ref·10^(−exponent·(x − x_ref)), chosen only with ≥ 6 sizes and an AICc lower by "
            f"more than {AICC_MARGIN}. Coefficient intervals refit every bootstrap resample. Predictions combine the "
            "bootstrap interval of the trend with the scatter of sizes around it (max of residual and point sd). LOSO error "
            "is the RMS error predicting each size from a fit without it. See docs/reports.md."
        )),
    ]


def _build(ans: list[StudyAnalysis], predict: Sequence[str], progress: bool) -> list[_Block]:
    title = "Scaling report: " + " vs ".join(a.name for a in ans)
    blocks = [_Block("h1", text=title)]
    benches = list(dict.fromkeys(b for a in ans for b in a.ms.benchmarks))
    intro = []
    for a in ans:
        intro.append(
            f"{a.name} ({a.path}): {a.study.records.num_rows:,} evaluation rows, {len(a.study.size_order())} sizes, "
            f"checkpoints {', '.join(a.arms)}, benchmarks {', '.join(a.ms.benchmarks)}, "
            f"{a.study.signals.num_rows:,} training steps logged; {len(a.study.skipped)} outputs without DONE skipped"
        )
        intro += [f"{a.name}: {n}" for n in a.study.notes]
    blocks.append(_Block("ul", items=intro))
    # warnings first: they decide whether to trust the rest
    blocks.append(_Block("h2", text="Warnings"))
    items = [(f"[{a.name}] " if len(ans) > 1 else "") + f"{al.kind}: {al.message}" for a in ans for al in a.alerts]
    blocks.append(_Block("ul", items=items or ["none"]))
    blocks.append(_Block("h2", text="Summary at the largest budget"))
    for a in ans:
        for b in a.ms.benchmarks:
            blocks.append(_Block("h3", text=f"{a.name}: {b} (budget {a.ms.budgets[b][-1]})"))
            blocks.append(_summary_table(a, b))
    figs: list[tuple[str, str, Any]] = []
    for b in benches:
        sub = [a for a in ans if b in a.ms.benchmarks]
        figs.append((f"accuracy_vs_budget_{b}", f"Accuracy vs budget per size: {b}",
                     lambda sub=sub, b=b: _fig_accuracy_vs_budget(sub, b)))
        figs.append((f"size_trends_{b}", f"Accuracy and length vs size with fits: {b}",
                     lambda sub=sub, b=b: _fig_size_trends(sub, b, predict)))
    for a in ans:
        for b in a.ms.benchmarks:
            figs.append((f"lengths_{a.name}_{b}", f"Length distributions by correctness: {a.name} {b}",
                         lambda a=a, b=b: _fig_lengths(a, b)))
        if a.study.signals.num_rows:
            figs.append((f"training_{a.name}", f"Training curves: {a.name}", lambda a=a: _fig_training(a)))
    rendered: dict[str, _Block] = {}
    for i, (name, caption, fn) in enumerate(figs):
        if progress:
            _log(f"figure {i + 1}/{len(figs)}: {name}")
        rendered[name] = _Block("img", name=_safe(name) + ".png", text=caption, png=fn())
    blocks.append(_Block("h2", text="Accuracy vs budget (base vs trained)"))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("accuracy_vs_budget_")]
    blocks.append(_Block("h2", text="Trends against model size"))
    blocks.append(_Block("p", text="Points: measured values with bootstrap intervals. Lines: fitted trends with bootstrap bands. "
                                   "Stars: predictions for sizes not in the study, with observation intervals."))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("size_trends_")]
    head = [(a.name, f) for a in ans for f in a.fits
            if f.metric in HEADLINE and (f.budget_tokens == 0 or f.budget_tokens == a.ms.budgets[f.benchmark][-1])]
    blocks.append(_Block("h3", text="Headline fits (largest budget, and AUC over budgets)"))
    blocks.append(_fits_table(ans, head))
    if predict:
        blocks.append(_Block("h3", text="Predictions"))
        rows = []
        for a in ans:
            for text, f, (v, lo, hi) in a.predictions:
                if f.budget_tokens == 0 or f.budget_tokens == a.ms.budgets[f.benchmark][-1]:
                    loso = _g(f.loso_error)
                    rows.append(([a.name] if len(ans) > 1 else []) + [text, f.metric, f.arm, f.benchmark,
                                                                      "all" if f.budget_tokens == 0 else str(f.budget_tokens),
                                                                      _ci(v, lo, hi, 4), f.form, loso])
        header = (["study"] if len(ans) > 1 else []) + ["size", "metric", "arm", "benchmark", "budget", "prediction [interval]",
                                                          "form", "LOSO error"]
        blocks.append(_Block("table", header=header, rows=rows))
    blocks.append(_Block("h2", text="Length distributions by correctness"))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("lengths_")]
    blocks.append(_Block("h2", text="Training: two phases"))
    from .signals import PHASE_RULE

    blocks.append(_Block("p", text="Length adaptation, then reasoning refinement (Art, arXiv 2602.20945). Our rule: "
                                   + PHASE_RULE.format(tol=0.10, hold="h") + " (h = 5% of the logged steps, at least 3; "
                                   "the length is smoothed by a running median over about 5% of the steps)."))
    for a in ans:
        if not a.phases:
            blocks.append(_Block("p", text=f"{a.name}: no training signals with a DONE marker."))
            continue
        order = {sz: i for i, sz in enumerate(a.study.size_order())}
        phases = sorted(a.phases, key=lambda p: (order.get(p.size, len(order)), p.run_id))
        rows = [[p.size, p.run_id, str(p.transition_step) if p.transition_step >= 0 else "none", str(p.steps),
                 _fmt(p.tokens_start, 0), _fmt(p.tokens_plateau, 0), _fmt(p.truncated_frac_adaptation),
                 _fmt(p.truncated_frac_refinement), _fmt(p.reward_change_refinement), p.reason] for p in phases]
        blocks.append(_Block("table", header=["size", "run", "transition step", "logged steps", "length start", "length plateau",
                                               "truncated (adaptation)", "truncated (refinement)", "reward change (refinement)",
                                               "how decided"], rows=rows))
        if f"training_{a.name}" in rendered:
            blocks.append(rendered[f"training_{a.name}"])
    blocks.append(_Block("h2", text="How the numbers were made"))
    blocks += _method_text(ans[0])
    details = []
    for a in ans:
        details.append(_Block("details", text=f"All metrics per budget: {a.name} ({len(a.ms.metrics)} rows)",
                              children=[_metrics_table(a)]))
        details.append(_Block("details", text=f"All trend fits: {a.name} ({len(a.fits)})",
                              children=[_fits_table([a], [(a.name, f) for f in a.fits])]))
        if a.failures:
            details.append(_Block("details", text=f"Fits skipped: {a.name} ({len(a.failures)})",
                                  children=[_Block("ul", items=a.failures)]))
    blocks += details
    return blocks


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# ----------------------------------------------------------------------------- renderers
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _to_md(blocks: list[_Block], depth: int = 0) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text + "\n")
        elif b.kind == "p":
            out.append(b.text + "\n")
        elif b.kind == "ul":
            out.append("\n".join(f"- {i}" for i in b.items) + "\n")
        elif b.kind == "table":
            if not b.rows:
                out.append("(no rows)\n")
                continue
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("")
        elif b.kind == "img":
            out.append(f"![{b.text}](figures/{b.name})\n")
        elif b.kind == "details":
            out.append(f"<details><summary>{html.escape(b.text)}</summary>\n\n{_to_md(b.children, depth + 1)}\n</details>\n")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1500px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{margin:1em 0} img{max-width:100%;border:1px solid #eee}
figcaption{font-size:13px;color:#555} details{margin:0.5em 0} summary{cursor:pointer;font-weight:600}
li{margin:0.2em 0}
"""


def _to_html(blocks: list[_Block], title: str) -> str:
    def render(bs: list[_Block]) -> str:
        out = []
        for b in bs:
            if b.kind in ("h1", "h2", "h3"):
                out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
            elif b.kind == "p":
                out.append(f"<p>{html.escape(b.text)}</p>")
            elif b.kind == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
            elif b.kind == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in b.rows)
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if b.rows else "<p>(no rows)</p>")
            elif b.kind == "img":
                data = base64.b64encode(b.png).decode("ascii")
                out.append(f'<figure><img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
            elif b.kind == "details":
                out.append(f"<details><summary>{html.escape(b.text)}</summary>{render(b.children)}</details>")
        return "\n".join(out)

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{render(blocks)}\n</body></html>\n")


def _summary_json(ans: list[StudyAnalysis], predict: Sequence[str]) -> str:
    """Machine-readable twin of the report: metrics, fits (without replicates), phases, alerts."""
    import json

    from .records import to_dict

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    def fit_dict(f: TrendFit) -> dict[str, Any]:
        d = {k: getattr(f, k) for k in ("metric", "form", "arm", "benchmark", "budget_tokens", "coef", "coef_lo", "coef_hi",
                                        "r2", "loso_error", "loso_errors", "criterion", "params_convention", "level",
                                        "resid_sd", "point_sd", "x_ref")}
        d["sizes"] = [p.size for p in f.points]
        return d

    data = {
        "studies": [
            {
                "name": a.name,
                "path": str(a.path),
                "params_convention": a.convention,
                "n_boot": a.ms.n_boot,
                "level": a.ms.level,
                "skipped": a.study.skipped,
                "metrics": [to_dict(m) for m in a.ms.metrics],
                "curves": [
                    {"size": k[0], "arm": k[1], "benchmark": k[2], "budget_tokens": k[3], "metric": k[4],
                     "value": e.value, "lo": e.lo, "hi": e.hi}
                    for k, e in a.ms.values.items() if k[4] in ("accuracy_auc", "accuracy_change", "length_reduction_frac")
                ],
                "fits": [fit_dict(f) for f in a.fits],
                "fits_skipped": a.failures,
                "predictions": [
                    {"size": t, "metric": f.metric, "arm": f.arm, "benchmark": f.benchmark, "budget_tokens": f.budget_tokens,
                     "value": v[0], "lo": v[1], "hi": v[2]}
                    for t, f, v in a.predictions
                ],
                "phases": [to_dict(p) for p in a.phases],
                "alerts": [to_dict(al) for al in a.alerts],
            }
            for a in ans
        ],
        "predict": list(predict),
    }
    return json.dumps(clean(data), indent=1) + "\n"


def write_report(
    analyses: Sequence[StudyAnalysis], out_dir: str | Path, *, predict: Sequence[str] = (), progress: bool = True
) -> tuple[Path, Path]:
    """Render analyses (one study, or several compared on the same axes) to
    ``out_dir/report.md`` (+ ``figures/*.png``), a self-contained ``out_dir/report.html`` and
    ``out_dir/summary.json`` (the same numbers, machine-readable)."""
    from .studydir import atomic_write_bytes, atomic_write_text

    ans = list(analyses)
    if not ans:
        raise ValueError("write_report needs at least one analysis")
    out = Path(out_dir)
    blocks = _build(ans, predict, progress)
    title = blocks[0].text

    def imgs(bs: list[_Block]) -> list[_Block]:
        return [b for b in bs if b.kind == "img"] + [c for b in bs if b.kind == "details" for c in imgs(b.children)]

    for b in imgs(blocks):
        atomic_write_bytes(out / "figures" / b.name, b.png)
    md, page = out / "report.md", out / "report.html"
    atomic_write_text(md, _to_md(blocks))
    atomic_write_text(page, _to_html(blocks, title))
    atomic_write_text(out / "summary.json", _summary_json(ans, predict))
    if progress:
        _log(f"wrote {md} and {page}")
    return md, page


def report_command(
    studies: Sequence[str],
    *,
    runs_dir: str | Path = "runs",
    out: str | Path | None = None,
    predict: Sequence[str] = (),
    params: str = "active",
) -> int:
    """The `scaling report` command: analyse each study, then write one report (exit 0)."""
    from .collect import resolve_study_dir
    from .fit import parse_size

    for p in predict:
        try:
            parse_size(p, params)
        except ValueError as err:
            from .errors import FitError

            raise FitError(f"--predict {p}: {err}") from err
    t0 = time.perf_counter()
    ans = [analyse(s, runs_dir=runs_dir, convention=params, predict=predict) for s in studies]
    if out is None:
        first = resolve_study_dir(studies[0], runs_dir)
        out = first / ("report" if len(ans) == 1 else "report-vs-" + "-".join(a.name for a in ans[1:]))
    md, page = write_report(ans, out, predict=predict)
    n_alerts = sum(len(a.alerts) for a in ans)
    print(f"report: {page} ({n_alerts} warnings, {time.perf_counter() - t0:.1f} s)")
    return 0
