"""`scaling report STUDY [STUDY ...]`: analyses -> one document -> report.md + report.html.

    scaling report qwen3-ladder                       # runs/qwen3-ladder/report/report.{md,html}
    scaling report runs/a runs/b -o cmp/              # two studies on the same axes
    scaling report qwen3-ladder --predict 70b --params total
    scaling report art-paper --reference recipes/references/art-aime25.yaml

Data flow: ``analyse.analyse`` (collect -> metrics -> fits -> headline effects -> phases/alerts ->
reference) -> ``figures`` (matplotlib, PNG) -> here: ``_build`` turns the analyses into one
document (a list of ``_Block``: headings, paragraphs, tables, figures, folded details) that two
jinja2 templates render: ``scaling/templates/report.html.j2`` (self-contained page: figures as
base64 data URIs, CSS inline, no script) and ``report.md.j2`` (figures as ``figures/*.png``).
Copy the templates elsewhere and set ``SCALING_REPORT_TEMPLATES=<dir>`` to restyle a report.
Every file is written atomically. docs/reports.md explains every section and number.

Units everywhere: accuracies in percent, accuracy changes in points (``+11.2 pt``), length changes
in percent (``-40.3%``, negative = shorter), lengths in tokens. One label per size (the family's).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .analyse import (  # noqa: F401  (re-exported: the public names of the report pipeline)
    EFFECTS,
    FIT_METRICS,
    HEADLINE,
    EffectTrend,
    StudyAnalysis,
    analyse,
    variant_name,
)
from .records import TrendFit


def _log(msg: str) -> None:
    print(f"report: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ document model
@dataclass
class _Block:
    kind: str  # h1 | h2 | h3 | p | ul | table | img | details
    text: str = ""  # heading, paragraph, caption, summary line
    rows: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    png: bytes = b""
    name: str = ""  # figure file name / HTML id of a heading or table
    alt: str = ""  # figure alt text (names every point)
    cls: str = ""  # CSS class (p: "lead" | "note")
    children: list["_Block"] = field(default_factory=list)


# ---------------------------------------------------------------------------- formatting
def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating)) and math.isfinite(v)


def _fmt(v: float, digits: int = 3) -> str:
    if not _finite(v):
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _g(v: float) -> str:
    """Four significant digits (errors whose scale depends on the metric)."""
    return f"{v:.4g}" if _finite(v) else "–"


def _ci(v: float, lo: float, hi: float, digits: int = 3) -> str:
    if not _finite(lo) or not _finite(hi):
        return _fmt(v, digits)
    return f"{_fmt(v, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _pct(v: float, digits: int = 1) -> str:
    """An accuracy (fraction) in percent: 0.1333 -> 13.3%."""
    return f"{100 * v:.{digits}f}%" if _finite(v) else "–"


def _signed(v: float, unit: str, digits: int = 1) -> str:
    if _finite(v) and round(v, digits) == 0:
        v = 0.0  # no "−0.0"
    return f"{v:+.{digits}f}{'' if unit == '%' else ' '}{unit}".replace("-", "−") if _finite(v) else "–"


def _signed_ci(e: Any, unit: str, scale: float = 100.0) -> str:
    """A change with its interval: +11.2 pt [+5.1, +17.0]."""
    if e is None or not _finite(e.value):
        return "–"
    s = _signed(e.value * scale, unit)
    if _finite(e.lo) and _finite(e.hi):
        s += f" [{e.lo * scale:+.1f}, {e.hi * scale:+.1f}]".replace("-", "−")
    return s


def _tokens(v: float) -> str:
    return f"{v:,.0f}" if _finite(v) else "–"


def _params_label(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e8 else f"{n / 1e6:.3g}M"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# metric -> (display unit, scale): fractions of accuracy in points, lengths in tokens
_UNITS = {
    "accuracy": ("pt", 100.0), "pass_at_k": ("pt", 100.0), "accuracy_auc": ("pt", 100.0), "accuracy_change": ("pt", 100.0),
    "truncated_frac": ("pt", 100.0), "length_change_frac": ("%", 100.0), "length_reduction_frac": ("%", 100.0),
    "tokens_mean": ("tokens", 1.0), "tokens_median": ("tokens", 1.0), "accuracy_per_1k_tokens": ("per 1k tokens", 1.0),
}


# -------------------------------------------------------------------------- the headline
def _slope_text(et: EffectTrend, unit: str, scale: float) -> str:
    f = et.fit
    if f is None:
        return ""
    s, lo, hi = (f.coef["slope_per_decade"] * scale, f.coef_lo["slope_per_decade"] * scale, f.coef_hi["slope_per_decade"] * scale)
    return f"{_signed(s, unit)} per 10× params [{lo:+.1f}, {hi:+.1f}]".replace("-", "−")


def _verdict_cell(et: EffectTrend | None, unit: str, scale: float) -> str:
    if et is None:
        return "–"
    if et.verdict == "not fitted":
        return f"not fitted ({et.reason})"
    if et.verdict == "no trend":
        return f"no trend ({et.reason})"
    word = {"grows": "grows with size", "shrinks": "shrinks with size", "unsure": "direction unsure"}[et.verdict]
    f = et.fit
    loso = f", LOSO {f.loso_error * scale:.1f} {unit}" if f is not None and _finite(f.loso_error) else ""
    return f"{word}: {_slope_text(et, unit, scale)}; R² {f.r2:.2f}{loso}, {len(f.points)} sizes"


def _verdict_table(an: StudyAnalysis) -> _Block:
    multi_arm = len(an.effect_arms) > 1
    header = ["benchmark"] + (["variant (sizes)"] if an.mixed else []) + (["trained"] if multi_arm else []) + [
        f"{name} ({unit}) vs size" for _, name, unit, _ in EFFECTS]
    rows = []
    for bench in an.ms.benchmarks:
        for arm in an.effect_arms:
            for variant, sizes in an.variants.items():
                cells = []
                for metric, _name, unit, scale in EFFECTS:
                    et = next((e for e in an.headline if (e.benchmark, e.arm, e.metric, e.variant) == (bench, arm, metric, variant)), None)
                    cells.append(_verdict_cell(et, unit, scale))
                row = [f"{bench} ({an.ms.budgets[bench][-1]:,} tokens)"]
                if an.mixed:
                    row.append(f"{variant_name(variant)}: {', '.join(an.label(s) for s in sizes)}")
                if multi_arm:
                    row.append(arm.split("_vs_")[0])
                rows.append(row + cells)
    return _Block("table", header=header, rows=rows, name="verdict")


def _ref_effects(an: StudyAnalysis, bench: str, arm: str) -> dict[tuple[str, str], Any]:
    """(size, our metric) -> RefRow for the two effects (reference or derived from it)."""
    from .analyse import REF_METRICS

    out = {}
    for r in an.reference:
        if r.entry.benchmark == bench and r.entry.metric in ("length_change", "accuracy_change") \
                and f"{r.entry.checkpoint}_vs_{an.base}" == arm:
            out[(r.size, REF_METRICS[r.entry.metric][0])] = r
    return out


def _headline_table(an: StudyAnalysis, bench: str, arm: str, index: int) -> _Block:
    bud = an.ms.budgets[bench][-1]
    ckpt = arm.split("_vs_")[0]
    base = an.base
    refs = _ref_effects(an, bench, arm)
    header = ["size"] + (["variant"] if an.mixed else []) + [
        "params total", "params active", f"length {base} → {ckpt} (tokens)", "length change",
        f"accuracy {base} → {ckpt}", "accuracy change", f"truncated {base} → {ckpt}"]
    if refs:
        header += ["measured − reference"]
    rows = []
    for s in an.sizes():
        g = lambda a, m: an.ms.get(s, a, bench, bud, m)  # noqa: E731
        if g(base, "accuracy") is None and g(ckpt, "accuracy") is None:
            continue
        facts = an.study.sizes.get(s)
        lb, lt = g(base, "tokens_mean"), g(ckpt, "tokens_mean")
        ab, at = g(base, "accuracy"), g(ckpt, "accuracy")
        tb, tt = g(base, "truncated_frac"), g(ckpt, "truncated_frac")
        row = [an.label(s)] + ([variant_name(facts.variant) if facts else ""] if an.mixed else []) + [
            _params_label(facts.params_total) if facts else "?", _params_label(facts.params_active) if facts else "?",
            f"{_tokens(lb.value if lb else None)} → {_tokens(lt.value if lt else None)}",
            _signed_ci(g(arm, "length_change_frac"), "%"),
            f"{_pct(ab.value if ab else None)} → {_pct(at.value if at else None)}",
            _signed_ci(g(arm, "accuracy_change"), "pt"),
            f"{_pct(tb.value if tb else None, 0)} → {_pct(tt.value if tt else None, 0)}",
        ]
        if refs:
            parts = []
            for metric, short, unit in (("length_change_frac", "length", "%"), ("accuracy_change", "accuracy", "pt")):
                r = refs.get((s, metric))
                if r is not None:
                    parts.append(f"{short} {_signed(r.diff, unit)} (ref {_signed(r.entry.value, unit)})")
            row.append("; ".join(parts) or "–")
        rows.append(row)
    return _Block("table", header=header, rows=rows, name="headline" if index == 0 else f"headline-{index}")


def _headline_alt(an: StudyAnalysis, bench: str) -> str:
    """Alt text of the headline figure: every point by label, every trend with its verdict."""
    bud = an.ms.budgets[bench][-1]
    parts = [f"{bench} at {bud} tokens, trained vs base against {an.convention} parameters."]
    for arm in an.effect_arms:
        pts = []
        for s in an.sizes():
            lc, ac = an.ms.get(s, arm, bench, bud, "length_change_frac"), an.ms.get(s, arm, bench, bud, "accuracy_change")
            if lc is None and ac is None:
                continue
            v = f" ({variant_name(an.study.sizes[s].variant)})" if an.mixed else ""
            pts.append(f"{an.label(s)}{v}: length {_signed(lc.value * 100 if lc else None, '%')}, "
                       f"accuracy {_signed(ac.value * 100 if ac else None, 'pt')}")
        parts.append("Points: " + "; ".join(pts) + ".")
        for et in an.headline:
            if (et.benchmark, et.arm) == (bench, arm):
                _, name, unit, scale = next(e for e in EFFECTS if e[0] == et.metric)
                v = f"{variant_name(et.variant)} " if an.mixed else ""
                parts.append(f"{v}{name}: {_verdict_cell(et, unit, scale)}.")
                for text, _n, pv, plo, phi in et.predictions:
                    parts.append(f"{text} (predicted): {_signed(pv * scale, unit)} "
                                 + f"[{plo * scale:+.1f}, {phi * scale:+.1f}].".replace("-", "−"))
    if an.reference:
        parts.append("Crosses: reference numbers from " + Path(an.reference_file).name + ".")
    return " ".join(parts)


def _variant_sentence(an: StudyAnalysis) -> str:
    if not an.mixed:
        return ""
    parts = []
    for v, sizes in an.variants.items():
        n = len({an.study.sizes[s].params(an.convention) for s in sizes})
        parts.append(f"{variant_name(v)} ({len(sizes)} size{'s' if len(sizes) > 1 else ''}"
                     + ("" if n >= 3 else ", not fitted: a trend needs 3") + ")")
    return ("This study mixes variants (thinking mode from plan.json); each is fitted separately: " + ", ".join(parts)
            + ". Markers: circle hybrid, triangle Thinking, square Instruct.")


def _reference_blocks(an: StudyAnalysis) -> list[_Block]:
    if not an.reference_file:
        return []
    from .analyse import REF_METRICS

    rows = []
    order = {s: i for i, s in enumerate(an.sizes())}
    for r in sorted(an.reference, key=lambda r: (r.entry.benchmark, order.get(r.size, 99), r.entry.metric, r.entry.checkpoint)):
        unit = REF_METRICS[r.entry.metric][1]
        fmt = (lambda v: _tokens(v)) if unit == "tokens" else (lambda v: f"{v:.2f}" if _finite(v) else "–")
        rows.append([an.label(r.size), r.entry.benchmark, f"{r.budget:,}", r.entry.metric, r.entry.checkpoint,
                     fmt(r.measured), fmt(r.entry.value) + (f" (±{r.entry.precision / 2:g})" if r.entry.precision else ""), (f"{r.diff:+,.0f}" if unit == "tokens" else f"{r.diff:+.2f}") if _finite(r.diff) else "–",
                     unit, r.entry.source])
    worst: dict[str, float] = {}
    for r in an.reference:
        if _finite(r.diff):
            u = REF_METRICS[r.entry.metric][1]
            worst[f"{r.entry.metric} ({u})"] = max(worst.get(f"{r.entry.metric} ({u})", 0.0), abs(r.diff))
    shown = an.reference_file
    try:
        shown = str(Path(shown).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        pass
    text = (f"Reference: {shown} ({len(an.reference)} numbers matched). Largest |measured − reference|: "
            + (", ".join(f"{k} {v:.2f}" for k, v in worst.items()) or "none") + ".")
    blocks = [_Block("p", text=text, cls="note")]
    blocks += [_Block("p", text=n, cls="note") for n in an.reference_notes]
    blocks.append(_Block("details", text=f"Measured vs reference, every number ({len(rows)})", children=[
        _Block("table", header=["size", "benchmark", "budget", "metric", "checkpoint", "measured", "reference",
                                "measured − reference", "unit", "source"], rows=rows, name="reference")]))
    return blocks


# ------------------------------------------------------------------------ other sections
def _summary_table(an: StudyAnalysis, bench: str) -> _Block:
    bud = an.ms.budgets[bench][-1]
    base = an.base
    others = [a for a in an.arms if a != base]
    header = ["size", "params total", "params active", f"accuracy {base}"]
    for o in others:
        header += [f"accuracy {o}", f"accuracy change {o}"]
    header += [f"pass@k {a}" for a in an.arms] + [f"length {base} (tokens)"]
    for o in others:
        header += [f"length {o}", f"length change {o}"]
    header += [f"AUC {a}" for a in an.arms] + [f"truncated {a}" for a in an.arms]
    rows = []
    for s in an.sizes():
        g = lambda arm, metric, b=bud: an.ms.get(s, arm, bench, b, metric)  # noqa: E731
        if g(base, "accuracy") is None and not any(g(o, "accuracy") for o in others):
            continue
        facts = an.study.sizes.get(s)

        def acc(e: Any) -> str:
            return f"{_pct(e.value)} [{100 * e.lo:.1f}, {100 * e.hi:.1f}]" if e is not None and _finite(e.lo) else \
                (_pct(e.value) if e is not None else "–")

        row = [an.label(s), _params_label(facts.params_total) if facts else "?",
               _params_label(facts.params_active) if facts else "?", acc(g(base, "accuracy"))]
        for o in others:
            row += [acc(g(o, "accuracy")), _signed_ci(g(f"{o}_vs_{base}", "accuracy_change"), "pt")]
        row += [_pct(g(a, "pass_at_k").value) if g(a, "pass_at_k") else "–" for a in an.arms]
        row.append(_tokens(g(base, "tokens_mean").value) if g(base, "tokens_mean") else "–")
        for o in others:
            row += [_tokens(g(o, "tokens_mean").value) if g(o, "tokens_mean") else "–",
                    _signed_ci(g(f"{o}_vs_{base}", "length_change_frac"), "%")]
        row += [acc(g(a, "accuracy_auc", 0)) for a in an.arms]
        row += [_pct(g(a, "truncated_frac").value, 0) if g(a, "truncated_frac") else "–" for a in an.arms]
        rows.append(row)
    return _Block("table", header=header, rows=rows)


def _metrics_table(an: StudyAnalysis) -> _Block:
    header = ["size", "checkpoint", "benchmark", "budget", "k", "problems", "accuracy [CI]", "pass@k", "tokens mean [CI]",
              "median", "correct", "incorrect", "truncated", "acc (pt) / 1k tokens"]
    order = {s: i for i, s in enumerate(an.sizes())}
    ms = sorted(an.ms.metrics, key=lambda m: (m.benchmark, order.get(m.size, 99), m.checkpoint, m.budget_tokens))
    rows = [[an.label(m.size), m.checkpoint, m.benchmark, str(m.budget_tokens), str(m.k), str(m.n_problems),
             f"{_pct(m.accuracy)} [{100 * m.accuracy_lo:.1f}, {100 * m.accuracy_hi:.1f}]", _pct(m.pass_at_k),
             _ci(m.tokens_mean, m.tokens_mean_lo, m.tokens_mean_hi, 0), _fmt(m.tokens_median, 0),
             _fmt(m.tokens_correct_mean, 0), _fmt(m.tokens_incorrect_mean, 0), _pct(m.truncated_frac),
             _fmt(100 * m.accuracy_per_1k_tokens, 2)] for m in ms]
    return _Block("table", header=header, rows=rows)


def _fit_cells(f: TrendFit) -> list[str]:
    """Readable coefficients: the value at the geometric-mean size and the change per 10x params
    (log-linear), or ceiling and exponent (saturating), in the metric's unit."""
    unit, scale = _UNITS.get(f.metric, ("", 1.0))
    ref = _params_label(10 ** f.x_ref)

    def c(k: str, sc: float = scale, d: int = 1) -> str:
        return f"{f.coef[k] * sc:.{d}f} [{f.coef_lo[k] * sc:.{d}f}, {f.coef_hi[k] * sc:.{d}f}]"

    u = "" if unit in ("tokens", "%") else f" {unit}"
    if unit == "%":
        u = "%"
    d = 0 if unit == "tokens" else (2 if scale == 1.0 else 1)
    if f.form == "log_linear":
        return [f"{c('value_at_ref', d=d)}{u}", f"{c('slope_per_decade', d=d)}{u} per 10× params", f"at {ref}"]
    return [f"ceiling {c('ceiling', d=d)}{u}", f"exponent {c('exponent', 1.0, 2)}", f"gap {c('gap_at_ref', d=d)}{u} at {ref}"]


def _fits_table(ans: list[StudyAnalysis], fits: list[tuple[StudyAnalysis, TrendFit]], *, criterion: bool = False) -> _Block:
    from .fit import trend_verdict

    mixed = any(a.mixed for a in ans)
    header = (["study"] if len(ans) > 1 else []) + ["metric", "arm", "benchmark", "budget"] + (["variant"] if mixed else []) + [
        "verdict", "value at the mean size [CI]", "change / shape [CI]", "where", "R²", "LOSO error", "sizes"] + (
        ["form and criterion"] if criterion else [])
    rows = []
    for a, f in fits:
        unit, scale = _UNITS.get(f.metric, ("", 1.0))
        verdict, reason = trend_verdict(f)
        loso = f"{f.loso_error * scale:.2f} {unit}" if _finite(f.loso_error) else "– (needs 4 sizes)"
        rows.append(([a.name] if len(ans) > 1 else []) + [
            f.metric, f.arm, f.benchmark, "all" if f.budget_tokens == 0 else f"{f.budget_tokens:,}"] + (
            [variant_name(a.variant_of(f))] if mixed else []) + [
            verdict if verdict == "trend" else f"{verdict}: {reason}", *_fit_cells(f), f"{f.r2:.2f}", loso,
            ", ".join(a.label(p.size) for p in sorted(f.points, key=lambda p: p.params))] + (
            [f"{f.form}; {f.criterion}"] if criterion else []))
    return _Block("table", header=header, rows=rows)


def _warning_blocks(ans: list[StudyAnalysis]) -> list[_Block]:
    from .signals import ALERT_KINDS

    by_kind: dict[str, list[str]] = {}
    for a in ans:
        for al in a.alerts:
            by_kind.setdefault(al.kind, []).append((f"[{a.name}] " if len(ans) > 1 else "") + al.message)
    n = sum(len(v) for v in by_kind.values())
    blocks = [_Block("h2", text=f"Warnings ({n})", name="warnings")]
    if not by_kind:
        return blocks + [_Block("p", text="none")]
    blocks.append(_Block("p", text="Grouped by kind; open a group to read each warning. They say which points to trust "
                                   "less; docs/reports.md (Warnings) has every threshold.", cls="note"))
    for kind, msgs in by_kind.items():
        blocks.append(_Block("details", text=f"{kind} ({len(msgs)}): {ALERT_KINDS.get(kind, '')}",
                             children=[_Block("ul", items=msgs)]))
    return blocks


def _method_text(an: StudyAnalysis) -> list[_Block]:
    from .fit import AICC_MARGIN, LOSO_MAX, R2_MIN

    lvl = f"{an.ms.level:.0%}"
    return [
        _Block("p", text=(
            f"Accuracy is mean@k: the mean over problems of the fraction of the k samples that are correct; a response cut "
            f"at the budget has no answer and counts as incorrect. Accuracies are in percent, their changes in points (pt); "
            f"length change = trained / base mean length − 1, in percent (negative = shorter). Intervals are {lvl} "
            f"percentile bootstrap intervals over problems ({an.ms.n_boot} resamples, seed {an.ms.seed}); the same problem "
            "resamples are used for every size, checkpoint and budget of a benchmark, so differences and trends are paired."
        )),
        _Block("p", text=(
            f"Trends are least-squares fits of each metric against log10(parameters, {an.convention}), each size counting "
            "once: log-linear y = value_at_ref + slope_per_decade·(x − x_ref), x_ref the mean log-size (the slope is the "
            "change per 10× parameters); or a power law to a ceiling y = ceiling − gap_at_ref·10^(−exponent·(x − x_ref)), "
            f"chosen only with ≥ 6 sizes and an AICc lower by more than {AICC_MARGIN}. The headline effects are always "
            f"fitted log-linearly. A fit is labelled \"no trend\" and kept out of the headline when R² < {R2_MIN} or its "
            f"leave-one-size-out (LOSO) error is ≥ {LOSO_MAX:g}× the error of predicting each size by the mean of the "
            "others; \"direction unsure\" when the slope interval includes 0. Variants (thinking modes) are fitted "
            "separately. Predictions combine the bootstrap interval of the trend with the scatter of sizes around it. "
            "See docs/reports.md."
        )),
    ]


# -------------------------------------------------------------------------- the document
def _build(ans: list[StudyAnalysis], predict: Sequence[str], progress: bool) -> list[_Block]:
    from . import figures

    title = "Scaling report: " + " vs ".join(a.name for a in ans)
    blocks = [_Block("h1", text=title)]
    benches = list(dict.fromkeys(b for a in ans for b in a.ms.benchmarks))
    n_alerts = sum(len(a.alerts) for a in ans)
    lead = []
    for a in ans:
        k = sorted({m.k for m in a.ms.metrics})
        lead.append(f"{a.name}: {len(a.sizes())} sizes, {', '.join(a.ms.benchmarks)}, "
                    f"{'/'.join(map(str, k))} samples per problem, parameters {a.convention}")
    warn = f"{n_alerts} warning{'s' if n_alerts != 1 else ''} (below the headline)" if n_alerts else "no warnings"
    blocks.append(_Block("p", text="; ".join(lead) + f". {warn}.", cls="lead"))

    # 1. the headline: does the effect grow or shrink with size, and how sure are we?
    blocks.append(_Block("h2", text="Headline: does the method's effect grow or shrink with size?", name="headline-section"))
    figs: list[tuple[str, str, Any]] = []
    for b in benches:
        sub = [a for a in ans if b in a.ms.benchmarks and a.effect_arms]
        if sub:
            figs.append((f"headline_{b}", f"Length change and accuracy change vs size: {b}", lambda sub=sub, b=b: figures.headline(sub, b)))
    for a in ans:
        for b in a.ms.benchmarks:
            figs.append((f"accuracy_vs_budget_{a.name}_{b}", f"Accuracy vs budget per size: {a.name} {b}",
                         lambda a=a, b=b: figures.accuracy_vs_budget(a, b)))
    for b in benches:
        sub = [a for a in ans if b in a.ms.benchmarks]
        figs.append((f"size_trends_{b}", f"Accuracy and length vs size with fits: {b}",
                     lambda sub=sub, b=b: figures.size_trends(sub, b, predict)))
    for a in ans:
        for b in a.ms.benchmarks:
            figs.append((f"lengths_{a.name}_{b}", f"Length distributions by correctness: {a.name} {b}",
                         lambda a=a, b=b: figures.lengths(a, b)))
        if a.study.signals.num_rows:
            figs.append((f"training_{a.name}", f"Training curves: {a.name}", lambda a=a: figures.training(a)))
    rendered: dict[str, _Block] = {}
    for i, (name, caption, fn) in enumerate(figs):
        if progress:
            _log(f"figure {i + 1}/{len(figs)}: {name}")
        rendered[name] = _Block("img", name=_safe(name) + ".png", text=caption, alt=caption, png=fn())
    index = 0
    for a in ans:
        if not a.effect_arms:
            blocks.append(_Block("p", text=f"{a.name}: no trained checkpoint next to base; no effect to show."))
            continue
        if len(ans) > 1:
            blocks.append(_Block("h3", text=a.name))
        blocks.append(_verdict_table(a))
        if a.mixed:
            blocks.append(_Block("p", text=_variant_sentence(a), cls="note"))
        for b in a.ms.benchmarks:
            for arm in a.effect_arms:
                blocks.append(_Block("h3", text=f"{b} at {a.ms.budgets[b][-1]:,} tokens"
                                                 + (f" ({arm.replace('_vs_', ' vs ')})" if len(a.effect_arms) > 1 else "")))
                blocks.append(_headline_table(a, b, arm, index))
                index += 1
        blocks += _reference_blocks(a)
    blocks.append(_Block("p", text="Length change: trained vs base mean length at the largest budget (negative = shorter); "
                                   "accuracy change in points; [intervals] are paired bootstrap intervals over problems. "
                                   "Rows follow the parameter count used for the fits.", cls="note"))
    for b in benches:
        if f"headline_{b}" in rendered:
            img = rendered[f"headline_{b}"]
            img.alt = " ".join(_headline_alt(a, b) for a in ans if b in a.ms.benchmarks and a.effect_arms)
            img.text = (f"{b}: length change (%) and accuracy change (pt) against size; every point named; lines: "
                        "log-linear trends with bootstrap bands and slope intervals (no line: no trend); hollow stars: "
                        "predictions for sizes not in the study" + ("; crosses: reference numbers" if any(a.reference for a in ans) else ""))
            blocks.append(img)

    # 2. warnings, grouped and folded
    blocks += _warning_blocks(ans)

    # 3. the detail
    blocks.append(_Block("h2", text="Summary at the largest budget"))
    for a in ans:
        for b in a.ms.benchmarks:
            blocks.append(_Block("h3", text=f"{a.name}: {b} (budget {a.ms.budgets[b][-1]:,})"))
            blocks.append(_summary_table(a, b))
    blocks.append(_Block("h2", text="Accuracy vs budget (base vs trained)"))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("accuracy_vs_budget_")]
    blocks.append(_Block("h2", text="Trends against model size"))
    blocks.append(_Block("p", text="Points: measured values with bootstrap intervals, named by size. Lines: fitted trends with "
                                   "bootstrap bands (dotted and faint: no trend). Hollow stars: predictions for sizes not in "
                                   "the study, with observation intervals."))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("size_trends_")]
    for r in rendered.values():
        if r.name.startswith("size_trends_"):
            r.alt = r.text + ". Points: " + ", ".join(dict.fromkeys(a.label(s) for a in ans for s in a.sizes())) + "."
    head = [(a, f) for a in ans for f in a.fits
            if f.metric in HEADLINE and (f.budget_tokens == 0 or f.budget_tokens == a.ms.budgets[f.benchmark][-1])]
    from .fit import trend_verdict

    strong = [(a, f) for a, f in head if trend_verdict(f)[0] != "no trend"]
    weak = [(a, f) for a, f in head if trend_verdict(f)[0] == "no trend"]
    blocks.append(_Block("h3", text="Trend fits (largest budget, and AUC over budgets)"))
    blocks.append(_fits_table(ans, strong) if strong else _Block("p", text="No fit passes the trend rule."))
    if weak:
        blocks.append(_Block("details", text=f"Fits with no trend, kept out of the headline ({len(weak)})",
                             children=[_fits_table(ans, weak)]))
    if predict:
        blocks.append(_Block("h3", text="Predictions"))
        rows = []
        for a in ans:
            for text, f, (v, lo, hi) in a.predictions:
                if f.budget_tokens == 0 or f.budget_tokens == a.ms.budgets[f.benchmark][-1]:
                    unit, scale = _UNITS.get(f.metric, ("", 1.0))
                    d = 0 if unit == "tokens" else 1
                    verdict = trend_verdict(f)[0]
                    rows.append(([a.name] if len(ans) > 1 else []) + [
                        text, f.metric, f.arm, f.benchmark, "all" if f.budget_tokens == 0 else str(f.budget_tokens)] + (
                        [variant_name(a.variant_of(f))] if a.mixed else []) + [
                        f"{v * scale:.{d}f} [{lo * scale:.{d}f}, {hi * scale:.{d}f}] {unit}", verdict,
                        f.form, f"{f.loso_error * scale:.{d}f} {unit}" if _finite(f.loso_error) else "–"])
        header = (["study"] if len(ans) > 1 else []) + ["size", "metric", "arm", "benchmark", "budget"] + (
            ["variant"] if any(a.mixed for a in ans) else []) + ["prediction [interval]", "trend verdict", "form", "LOSO error"]
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
        order = {sz: i for i, sz in enumerate(a.sizes())}
        phases = sorted(a.phases, key=lambda p: (order.get(p.size, len(order)), p.run_id))
        rows = [[a.label(p.size), p.run_id, str(p.transition_step) if p.transition_step >= 0 else "none", str(p.steps),
                 _fmt(p.tokens_start, 0), _fmt(p.tokens_plateau, 0), _pct(p.truncated_frac_adaptation, 0),
                 _pct(p.truncated_frac_refinement, 0), _fmt(p.reward_change_refinement), p.reason] for p in phases]
        blocks.append(_Block("table", header=["size", "run", "transition step", "logged steps", "length start", "length plateau",
                                               "truncated (adaptation)", "truncated (refinement)", "reward change (refinement)",
                                               "how decided"], rows=rows))
        if f"training_{a.name}" in rendered:
            blocks.append(rendered[f"training_{a.name}"])
    blocks.append(_Block("h2", text="How the numbers were made"))
    blocks += _method_text(ans[0])
    for a in ans:
        blocks.append(_Block("details", text=f"All metrics per budget: {a.name} ({len(a.ms.metrics)} rows)",
                             children=[_metrics_table(a)]))
        blocks.append(_Block("details", text=f"All trend fits: {a.name} ({len(a.fits)})",
                             children=[_fits_table([a], [(a, f) for f in a.fits], criterion=True)]))
        if a.failures:
            blocks.append(_Block("details", text=f"Fits skipped: {a.name} ({len(a.failures)})",
                                 children=[_Block("ul", items=a.failures)]))
    return blocks


# ----------------------------------------------------------------------------- renderers
def _env() -> Any:
    import base64

    import jinja2

    dirs = [Path(d) for d in os.environ.get("SCALING_REPORT_TEMPLATES", "").split(os.pathsep) if d]
    dirs.append(Path(__file__).parent / "templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in dirs]), autoescape=jinja2.select_autoescape(
        enabled_extensions=("html.j2",), default_for_string=False), trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["b64"] = lambda b: base64.b64encode(b).decode("ascii")
    env.filters["mdcell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def _to_md(blocks: list[_Block]) -> str:
    return _env().get_template("report.md.j2").render(blocks=blocks)


def _to_html(blocks: list[_Block], title: str) -> str:
    return _env().get_template("report.html.j2").render(blocks=blocks, title=title)


def _summary_json(ans: list[StudyAnalysis], predict: Sequence[str]) -> str:
    """Machine-readable twin of the report: metrics, fits (without replicates), headline, phases, alerts."""
    import json

    from .fit import trend_verdict
    from .records import to_dict

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    def fit_dict(a: StudyAnalysis, f: TrendFit) -> dict[str, Any]:
        d = {k: getattr(f, k) for k in ("metric", "form", "arm", "benchmark", "budget_tokens", "coef", "coef_lo", "coef_hi",
                                        "r2", "loso_error", "loso_errors", "criterion", "params_convention", "level",
                                        "resid_sd", "point_sd", "x_ref")}
        d["sizes"] = [p.size for p in f.points]
        d["labels"] = [a.label(p.size) for p in f.points]
        d["variant"] = a.variant_of(f)
        d["verdict"], d["verdict_reason"] = trend_verdict(f)
        return d

    def effect_dict(a: StudyAnalysis, et: EffectTrend) -> dict[str, Any]:
        f = et.fit
        return {
            "benchmark": et.benchmark, "budget_tokens": et.budget, "arm": et.arm, "metric": et.metric,
            "variant": et.variant, "verdict": et.verdict, "reason": et.reason,
            "points": [{"size": s, "label": a.label(s), "params": a.study.sizes[s].params(a.convention),
                        "value": getattr(a.ms.get(s, et.arm, et.benchmark, et.budget, et.metric), "value", None)}
                       for s in et.sizes],
            "slope_per_decade": f.coef["slope_per_decade"] if f else None,
            "slope_lo": f.coef_lo["slope_per_decade"] if f else None,
            "slope_hi": f.coef_hi["slope_per_decade"] if f else None,
            "r2": f.r2 if f else None, "loso_error": f.loso_error if f else None,
            "predictions": [{"size": t, "params": n, "value": v, "lo": lo, "hi": hi} for t, n, v, lo, hi in et.predictions],
        }

    data = {
        "studies": [
            {
                "name": a.name,
                "path": str(a.path),
                "params_convention": a.convention,
                "n_boot": a.ms.n_boot,
                "level": a.ms.level,
                "skipped": a.study.skipped,
                "sizes": [{"size": s, "label": a.label(s), "variant": a.study.sizes[s].variant,
                           "params_total": a.study.sizes[s].params_total, "params_active": a.study.sizes[s].params_active}
                          for s in a.sizes()],
                "variants": a.variants,
                "headline": [effect_dict(a, et) for et in a.headline],
                "metrics": [to_dict(m) for m in a.ms.metrics],
                "curves": [
                    {"size": k[0], "arm": k[1], "benchmark": k[2], "budget_tokens": k[3], "metric": k[4],
                     "value": e.value, "lo": e.lo, "hi": e.hi}
                    for k, e in a.ms.values.items()
                    if k[4] in ("accuracy_auc", "accuracy_change", "length_reduction_frac", "length_change_frac")
                ],
                "fits": [fit_dict(a, f) for f in a.fits],
                "fits_skipped": a.failures,
                "predictions": [
                    {"size": t, "metric": f.metric, "arm": f.arm, "benchmark": f.benchmark, "budget_tokens": f.budget_tokens,
                     "variant": a.variant_of(f), "value": v[0], "lo": v[1], "hi": v[2]}
                    for t, f, v in a.predictions
                ],
                "reference": {
                    "file": a.reference_file,
                    "notes": a.reference_notes,
                    "rows": [{"size": r.size, "label": a.label(r.size), "benchmark": r.entry.benchmark, "budget_tokens": r.budget,
                              "checkpoint": r.entry.checkpoint, "metric": r.entry.metric, "reference": r.entry.value,
                              "measured": r.measured, "diff": r.diff, "source": r.entry.source} for r in a.reference],
                },
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
    md_text, html_text = _to_md(blocks), _to_html(blocks, title)  # render both before writing anything

    def imgs(bs: list[_Block]) -> list[_Block]:
        return [b for b in bs if b.kind == "img"] + [c for b in bs if b.kind == "details" for c in imgs(b.children)]

    for b in imgs(blocks):
        atomic_write_bytes(out / "figures" / b.name, b.png)
    md, page = out / "report.md", out / "report.html"
    atomic_write_text(md, md_text)
    atomic_write_text(page, html_text)
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
    reference: str | Path | None = None,
) -> int:
    """The `scaling report` command: analyse each study, then write one report (exit 0).
    ``reference``: a YAML of published numbers to overlay; None = the study's default
    (``art-paper`` -> recipes/references/art-aime25.yaml), "" = none."""
    from .collect import resolve_study_dir
    from .fit import parse_size

    for p in predict:
        try:
            parse_size(p, params)
        except (ValueError, OverflowError) as err:  # OverflowError: --predict inf
            from .errors import FitError

            raise FitError(f"--predict {p}: {err}; give a finite size such as 70b or 7e10") from err
    if reference:
        from .analyse import load_reference

        load_reference(reference)  # a bad file fails here, in one line, before any work
    t0 = time.perf_counter()
    ans = [analyse(s, runs_dir=runs_dir, convention=params, predict=predict, reference=reference) for s in studies]
    if out is None:
        first = resolve_study_dir(studies[0], runs_dir)
        out = first / ("report" if len(ans) == 1 else "report-vs-" + "-".join(a.name for a in ans[1:]))
    md, page = write_report(ans, out, predict=predict)
    n_alerts = sum(len(a.alerts) for a in ans)
    print(f"report: {page} ({n_alerts} warnings, {time.perf_counter() - t0:.1f} s)")
    return 0
