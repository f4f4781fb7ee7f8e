"""The report's figures (PNG bytes) from StudyAnalysis objects. The only module that imports
matplotlib (lazily, Agg backend), so `scaling --help` and `scaling plan` stay fast.

Conventions in every figure: one label per size (the family's, ``0.6B``); **solid = trained,
dashed = base**; markers by variant (``o`` hybrid or single-variant, ``^`` Thinking, ``s``
Instruct); hollow stars = predictions for sizes not in the study; black ``x`` = reference numbers.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np

from .analyse import EFFECTS, REF_METRICS, StudyAnalysis, variant_name
from .fit import predict as fit_predict, trend_curve, trend_verdict
from .signals import signal_columns
from .sizes import parse_size

VARIANT_MARKERS = {"": "o", "hybrid": "o", "always": "^", "none": "s"}
ARM_STYLE = {"base": "--", "trained": "-"}  # dashed = base, solid = trained (docs/reports.md)
ARM_COLOR = {"base": "tab:blue", "trained": "tab:orange"}


def _size_points(an: Any, sizes: list[str], arm: str, bench: str, bud: int, metric: str, scale: float) -> Any:
    """(points, x, y, yerr) of one arm's metric over the given sizes, or None when none is finite."""
    pts = [(s, an.study.sizes[s].params(an.convention), an.ms.get(s, arm, bench, bud, metric)) for s in sizes]
    pts = [(s, n, e) for s, n, e in pts if e is not None and np.isfinite(e.value)]
    if not pts:
        return None
    x = np.array([n for _, n, _ in pts], dtype=float)
    y = np.array([e.value for _, _, e in pts]) * scale
    lo = np.array([e.lo for _, _, e in pts]) * scale
    hi = np.array([e.hi for _, _, e in pts]) * scale
    return pts, x, y, np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)])


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


def _style(arm: str, j: int) -> str:
    return ARM_STYLE.get(arm, "-" if j else "--")


def _color(arm: str, j: int) -> str:
    return ARM_COLOR.get(arm, f"C{j + 2}")


def _params_axis(ax: Any, convention: str) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo / 1.15, hi * 1.6)  # room for the point labels right of the largest size
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e9:g}B" if v >= 1e8 else f"{v / 1e6:g}M"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"parameters ({convention})", fontsize=8)


def _label_points(ax: Any, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], color: str = "0.2") -> None:
    """Name every point; points sharing an x (two variants of one size) get stacked offsets."""
    seen: dict[float, int] = {}
    for x, y, t in zip(xs, ys, labels):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        k = seen.get(round(math.log10(x), 3), 0)
        seen[round(math.log10(x), 3)] = k + 1
        ax.annotate(t, (x, y), textcoords="offset points", xytext=(5, 4 - 11 * k), fontsize=7, color=color)


def _grid(ax: Any, x_all: list[float], pred: Sequence[float]) -> np.ndarray:
    lo, hi = min(x_all + list(pred)), max(x_all + list(pred))
    return np.geomspace(lo / 1.3, hi * 1.3, 80)


# ------------------------------------------------------------------------------ headline
def headline(ans: list[StudyAnalysis], bench: str) -> bytes:
    """Both effects (length change %, accuracy change pt; trained vs base at the largest budget)
    against size: labelled points, variant markers, trend with slope interval, predictions,
    reference numbers."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13.5, 3.9), squeeze=False)
    for ax, (metric, name, unit, scale) in zip(axes[0], EFFECTS):
        ax.axhline(0, color="0.6", lw=0.8)
        for si, an in enumerate(ans):
            if bench not in an.ms.benchmarks:
                continue
            bud = an.ms.budgets[bench][-1]
            for ai, arm in enumerate(an.effect_arms):
                color = f"C{si + ai}" if len(ans) > 1 or ai else "tab:purple"
                tag = (f"{an.name} " if len(ans) > 1 else "") + (arm.replace("_vs_", " vs ") if ai else "")
                x_all: list[float] = []
                for variant, sizes in an.variants.items():
                    got = _size_points(an, sizes, arm, bench, bud, metric, scale)
                    if got is None:
                        continue
                    pts, x, y, yerr = got
                    vname = variant_name(variant) if an.mixed else "measured"
                    ax.errorbar(x, y, yerr=yerr, fmt=VARIANT_MARKERS.get(variant, "D"), color=color, ms=6, capsize=3,
                                label=f"{tag}{vname}".strip())
                    _label_points(ax, x, y, [an.label(s) for s, _, _ in pts])
                    x_all += list(x)
                for et in an.headline:
                    if (et.benchmark, et.arm, et.metric) != (bench, arm, metric) or et.fit is None:
                        continue
                    vtag = f"{variant_name(et.variant)} " if an.mixed else ""
                    if et.verdict == "no trend":
                        ax.plot([], [], " ", label=f"{vtag}no trend ({et.reason})")
                        continue
                    f = et.fit
                    pred_x = [p[1] for p in et.predictions]
                    grid = _grid(ax, [float(p.params) for p in f.points], pred_x)
                    v, blo, bhi = trend_curve(f, grid)
                    s, slo, shi = (f.coef["slope_per_decade"] * scale, f.coef_lo["slope_per_decade"] * scale,
                                   f.coef_hi["slope_per_decade"] * scale)
                    ls = "-" if et.verdict in ("grows", "shrinks") else ":"
                    ax.plot(grid, v * scale, ls, color=color, lw=1.2,
                            label=f"{vtag}trend {s:+.1f} {unit} per 10x [{slo:+.1f}, {shi:+.1f}]"
                                  + (" (unsure)" if et.verdict == "unsure" else ""))
                    ax.fill_between(grid, blo * scale, bhi * scale, color=color, alpha=0.12)
                    for text, n, pv, plo, phi in et.predictions:
                        ax.errorbar([n], [pv * scale], yerr=[[(pv - plo) * scale], [(phi - pv) * scale]], fmt="*",
                                    mfc="none", color=color, ms=12, capsize=4)
                        ax.annotate(f"{text} (predicted)", (n, pv * scale), textcoords="offset points", xytext=(6, -12),
                                    fontsize=7, color=color, style="italic")
                refs = [r for r in an.reference if r.entry.benchmark == bench and r.entry.metric in ("length_change", "accuracy_change")
                        and f"{r.entry.checkpoint}_vs_{an.base}" == arm and _ref_metric(r.entry.metric) == metric]
                if refs:
                    ax.plot([an.study.sizes[r.size].params(an.convention) for r in refs], [r.entry.value for r in refs], "x",
                            color="black", ms=7, mew=1.5, label="reference")
        _params_axis(ax, ans[0].convention)
        ax.set_ylabel(f"{name} ({unit})", fontsize=8)
        ax.set_title(f"{bench}: {name}, trained vs base", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.has_data():  # beside the axes: inside, it hides labelled points
            ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.subplots_adjust(wspace=0.75)
    return _png(fig)


def _ref_metric(name: str) -> str:
    return REF_METRICS[name][0]


# --------------------------------------------------------------------- accuracy vs budget
def accuracy_vs_budget(an: StudyAnalysis, bench: str) -> bytes:
    """Small multiples: one panel per size, accuracy (%) against budget, base vs trained."""
    plt = _plt()
    sizes = [s for s in an.sizes() if any(m.size == s and m.benchmark == bench for m in an.ms.metrics)]
    cols = min(4, max(1, len(sizes)))
    rows = max(1, math.ceil(len(sizes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows), sharey=True, squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[len(sizes):]:
        ax.axis("off")
    for ax, size in zip(axes.ravel(), sizes):
        for j, arm in enumerate(an.arms):
            rows_ = sorted((m for m in an.ms.metrics if m.size == size and m.checkpoint == arm and m.benchmark == bench),
                           key=lambda m: m.budget_tokens)
            if not rows_:
                continue
            b = [m.budget_tokens for m in rows_]
            ax.plot(b, [100 * m.accuracy for m in rows_], _style(arm, j), marker="o", ms=3, color=_color(arm, j), label=arm)
            ax.fill_between(b, [100 * m.accuracy_lo for m in rows_], [100 * m.accuracy_hi for m in rows_],
                            color=_color(arm, j), alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(_kilo())
        ax.set_title(an.label(size), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("budget (tokens)", fontsize=8)
    if sizes:
        axes.ravel()[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{an.name}: {bench}, accuracy vs budget (solid = trained, dashed = base, band = "
                 f"{an.ms.level:.0%} interval)", fontsize=10)
    return _png(fig)


# ------------------------------------------------------------------------ size trends
PANELS = (("accuracy", "accuracy (%) at the largest budget", 100.0), ("tokens_mean", "mean length (tokens), largest budget", 1.0),
          ("accuracy_auc", "accuracy AUC over log2 budget (%)", 100.0))


def size_trends(ans: list[StudyAnalysis], bench: str, predict: Sequence[str]) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0), squeeze=False)
    for ax, (metric, title, scale) in zip(axes[0], PANELS):
        for si, an in enumerate(ans):
            budgets = an.ms.budgets.get(bench, [])
            if not budgets:
                continue
            bud = 0 if metric == "accuracy_auc" else budgets[-1]
            pred_n = [parse_size(p, an.convention) for p in predict]
            for j, arm in enumerate(an.arms):
                color = _color(arm, j) if len(ans) == 1 else f"C{j + 2 * si}"
                tag = f"{an.name} {arm}" if len(ans) > 1 else arm
                for variant, sizes in an.variants.items():
                    got = _size_points(an, sizes, arm, bench, bud, metric, scale)
                    if got is None:
                        continue
                    pts, x, y, yerr = got
                    vtag = f" {variant_name(variant)}" if an.mixed else ""
                    ax.errorbar(x, y, yerr=yerr, fmt=VARIANT_MARKERS.get(variant, "D"), color=color, ms=5, capsize=3,
                                label=f"{tag}{vtag}")
                    if j == len(an.arms) - 1 or len(an.arms) == 1:
                        _label_points(ax, x, y, [an.label(s) for s, _, _ in pts])
                    f = an.fit(metric, arm, bench, bud, variant if an.mixed else None)
                    if f is None:
                        continue
                    verdict, _ = trend_verdict(f)
                    grid = _grid(ax, list(x), pred_n)
                    v, blo, bhi = trend_curve(f, grid)
                    ax.plot(grid, v * scale, _style(arm, j) if verdict != "no trend" else ":", color=color, lw=1.1,
                            alpha=1.0 if verdict != "no trend" else 0.5,
                            label=f"{tag}{vtag} fit ({f.form}, R²={f.r2:.2f}{', no trend' if verdict == 'no trend' else ''})")
                    ax.fill_between(grid, blo * scale, bhi * scale, color=color, alpha=0.12)
                    if verdict == "no trend":
                        continue
                    for p, n in zip(predict, pred_n):
                        pv, plo, phi = fit_predict(f, n)
                        ax.errorbar([n], [pv * scale], yerr=[[(pv - plo) * scale], [(phi - pv) * scale]], fmt="*", mfc="none",
                                    color=color, ms=10, capsize=4)
                        ax.annotate(f"{p} (predicted)", (n, pv * scale), textcoords="offset points", xytext=(5, 5),
                                    fontsize=7, style="italic")
        _params_axis(ax, ans[0].convention)
        ax.set_title(f"{bench}: {title}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.has_data():  # below the axes: inside, it hides labelled points
            ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return _png(fig)


# ----------------------------------------------------------------------------- lengths
def lengths(an: StudyAnalysis, bench: str) -> bytes:
    plt = _plt()
    budgets = an.ms.budgets.get(bench, [])
    bud = budgets[-1] if budgets else 0
    sizes = [s for s in an.sizes() if any((s, a, bench, bud) in an.ms.histograms for a in an.arms)]
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
            ax.step(centers, h.correct, where="mid", ls=_style(arm, j), color="tab:green", label=f"{arm} correct")
            ax.step(centers, h.incorrect, where="mid", ls=_style(arm, j), color="tab:red", label=f"{arm} incorrect")
        ax.set_title(an.label(size), fontsize=9)
        ax.set_xlabel("response tokens", fontsize=8)
        ax.xaxis.set_major_formatter(_kilo())
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(f"{an.name}: {bench}, length distribution at budget {bud} by correctness "
                 "(solid = trained, dashed = base)", fontsize=10)
    return _png(fig)


# ---------------------------------------------------------------------------- training
def training(an: StudyAnalysis) -> bytes:
    plt = _plt()
    c = signal_columns(an.study.signals)
    order = {s: i for i, s in enumerate(an.sizes())}
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
        size = str(run).split("/")[0]
        ax.set_title(f"{an.label(size)} ({run})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax2.tick_params(labelsize=7)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=5, loc="center right")
    fig.suptitle(f"{an.name}: training curves (dashed line: detected phase transition)", fontsize=10)
    return _png(fig)


def along_training(an: StudyAnalysis) -> bytes:
    """Evaluation along training (issue 26): per size, test accuracy (left axis, with bootstrap
    intervals) and mean length (right axis) against the training step at each test benchmark's
    largest budget; the held-out selection metric dotted; the selected step a vertical line."""
    plt = _plt()
    have = {p.size for p in an.along}
    sizes = [s for s in an.sizes() if s in have] + sorted(have - set(an.sizes()))
    cols = min(4, max(1, len(sizes)))
    rows = max(1, math.ceil(len(sizes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(sizes):]:
        ax.axis("off")
    for ax, size in zip(axes.ravel(), sizes):
        pts = [p for p in an.along if p.size == size]
        ax2 = ax.twinx()
        tests = sorted({p.benchmark for p in pts if not p.held_out})
        for j, b in enumerate(tests):
            top = max(p.budget_tokens for p in pts if p.benchmark == b)
            sel = sorted((p for p in pts if p.benchmark == b and p.budget_tokens == top), key=lambda p: p.step)
            x = [p.step for p in sel]
            acc = np.array([p.accuracy for p in sel]) * 100
            err = np.array([[p.accuracy - p.accuracy_lo for p in sel], [p.accuracy_hi - p.accuracy for p in sel]]) * 100
            color = f"C{j}"
            ax.errorbar(x, acc, yerr=np.clip(err, 0, None), color=color, marker="o", ms=3, lw=1, capsize=2,
                        label=f"{b} accuracy @ {top:,}")
            ax2.plot(x, [p.tokens_mean for p in sel], color=color, ls="--", lw=1, label=f"{b} mean length")
        choice = next((c for c in an.choices if c.size == size), None)
        if choice is not None:
            held = sorted((p for p in pts if p.benchmark == choice.select_benchmark
                           and p.budget_tokens == choice.select_budget), key=lambda p: p.step)
            scale = 100.0 if choice.metric != "accuracy_per_1k_tokens" else 1.0
            ax.plot([p.step for p in held], [p.value * scale for p in held], color="0.3", ls=":", marker="s", ms=2,
                    lw=1, label=f"{choice.select_benchmark} {choice.metric} (held out)")
            ax.axvline(choice.selected_step, color="black", lw=1.2)
            ax.annotate(f"selected: step {choice.selected_step}", (choice.selected_step, ax.get_ylim()[1]), fontsize=7,
                        va="top", ha="left", xytext=(3, -3), textcoords="offset points")
        ax.set_title(an.label(size), fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax2.set_ylabel("mean length (tokens)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax2.tick_params(labelsize=7)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=5, loc="lower left")
    fig.suptitle(f"{an.name}: evaluation along training (solid line: the selected step)", fontsize=10)
    return _png(fig)
