"""The report's document model and the blocks built from the analyses: ``Block`` (heading,
paragraph, list, table, figure, folded details), the number formats, and every table with the
sentences that go with it (headline verdicts, headline per benchmark and its figure's alt text,
reference comparison, summary, all metrics, fits, predictions, training phases).

Data flow: ``analyse`` -> here (tables) -> ``document.build`` (the report's order, figures,
prose) -> ``report`` (jinja2 rendering, summary.json). Nothing here draws or writes a file.

Units everywhere: accuracies in percent, accuracy changes in points (``+11.2 pt``), length changes
in percent (``-40.3%``, negative = shorter), lengths in tokens. One label per size (the family's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .analyse import EFFECTS, REF_METRICS, EffectTrend, StudyAnalysis, variant_name
from .fit import trend_verdict
from .records import TrendFit


# ------------------------------------------------------------------------ document model
@dataclass
class Block:
    """One piece of the document; the templates render each ``kind`` (scaling/templates/)."""

    kind: str  # h1 | h2 | h3 | p | ul | table | img | details
    text: str = ""  # heading, paragraph, caption, summary line
    rows: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    png: bytes = b""
    name: str = ""  # figure file name / HTML id of a heading or table
    alt: str = ""  # figure alt text (names every point)
    cls: str = ""  # CSS class (p: "lead" | "note")
    children: list["Block"] = field(default_factory=list)


# ---------------------------------------------------------------------------- formatting
def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating)) and math.isfinite(v)


def _fmt(v: float, digits: int = 3) -> str:
    if not _finite(v):
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


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


def verdict_table(an: StudyAnalysis) -> Block:
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
    return Block("table", header=header, rows=rows, name="verdict")


def _ref_effects(an: StudyAnalysis, bench: str, arm: str) -> dict[tuple[str, str], Any]:
    """(size, our metric) -> RefRow for the two effects (reference or derived from it)."""
    out = {}
    for r in an.reference:
        if r.entry.benchmark == bench and r.entry.metric in ("length_change", "accuracy_change") \
                and f"{r.entry.checkpoint}_vs_{an.base}" == arm:
            out[(r.size, REF_METRICS[r.entry.metric][0])] = r
    return out


def headline_table(an: StudyAnalysis, bench: str, arm: str, index: int) -> Block:
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
    return Block("table", header=header, rows=rows, name="headline" if index == 0 else f"headline-{index}")


def headline_alt(an: StudyAnalysis, bench: str) -> str:
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


def variant_sentence(an: StudyAnalysis) -> str:
    if not an.mixed:
        return ""
    parts = []
    for v, sizes in an.variants.items():
        n = len({an.study.sizes[s].params(an.convention) for s in sizes})
        parts.append(f"{variant_name(v)} ({len(sizes)} size{'s' if len(sizes) > 1 else ''}"
                     + ("" if n >= 3 else ", not fitted: a trend needs 3") + ")")
    return ("This study mixes variants (thinking mode from plan.json); each is fitted separately: " + ", ".join(parts)
            + ". Markers: circle hybrid, triangle Thinking, square Instruct.")


def reference_blocks(an: StudyAnalysis) -> list[Block]:
    if not an.reference_file:
        return []
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
    blocks = [Block("p", text=text, cls="note")]
    blocks += [Block("p", text=n, cls="note") for n in an.reference_notes]
    blocks.append(Block("details", text=f"Measured vs reference, every number ({len(rows)})", children=[
        Block("table", header=["size", "benchmark", "budget", "metric", "checkpoint", "measured", "reference",
                               "measured − reference", "unit", "source"], rows=rows, name="reference")]))
    return blocks


# ------------------------------------------------------------------------ other sections
def summary_table(an: StudyAnalysis, bench: str) -> Block:
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
    return Block("table", header=header, rows=rows)


def metrics_table(an: StudyAnalysis) -> Block:
    header = ["size", "checkpoint", "benchmark", "budget", "k", "problems", "accuracy [CI]", "pass@k", "tokens mean [CI]",
              "median", "correct", "incorrect", "truncated", "acc (pt) / 1k tokens"]
    order = {s: i for i, s in enumerate(an.sizes())}
    ms = sorted(an.ms.metrics, key=lambda m: (m.benchmark, order.get(m.size, 99), m.checkpoint, m.budget_tokens))
    rows = [[an.label(m.size), m.checkpoint, m.benchmark, str(m.budget_tokens), str(m.k), str(m.n_problems),
             f"{_pct(m.accuracy)} [{100 * m.accuracy_lo:.1f}, {100 * m.accuracy_hi:.1f}]", _pct(m.pass_at_k),
             _ci(m.tokens_mean, m.tokens_mean_lo, m.tokens_mean_hi, 0), _fmt(m.tokens_median, 0),
             _fmt(m.tokens_correct_mean, 0), _fmt(m.tokens_incorrect_mean, 0), _pct(m.truncated_frac),
             _fmt(100 * m.accuracy_per_1k_tokens, 2)] for m in ms]
    return Block("table", header=header, rows=rows)


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


def fits_table(ans: list[StudyAnalysis], fits: list[tuple[StudyAnalysis, TrendFit]], *, criterion: bool = False) -> Block:
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
    return Block("table", header=header, rows=rows)


def predictions_table(ans: list[StudyAnalysis]) -> Block:
    """Predictions for sizes not in the study, at the largest budget (and over budgets)."""
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
    return Block("table", header=header, rows=rows)


def phases_table(a: StudyAnalysis) -> Block:
    """The two training phases of each run of a study (sizes in report order)."""
    order = {sz: i for i, sz in enumerate(a.sizes())}
    phases = sorted(a.phases, key=lambda p: (order.get(p.size, len(order)), p.run_id))
    rows = [[a.label(p.size), p.run_id, str(p.transition_step) if p.transition_step >= 0 else "none", str(p.steps),
             _fmt(p.tokens_start, 0), _fmt(p.tokens_plateau, 0), _pct(p.truncated_frac_adaptation, 0),
             _pct(p.truncated_frac_refinement, 0), _fmt(p.reward_change_refinement), p.reason] for p in phases]
    return Block("table", header=["size", "run", "transition step", "logged steps", "length start", "length plateau",
                                  "truncated (adaptation)", "truncated (refinement)", "reward change (refinement)",
                                  "how decided"], rows=rows)


# ------------------------------------------------------- evaluation along training (issue 26)
def along_sizes(a: StudyAnalysis) -> list[str]:
    """Sizes with an along-training curve, in report order."""
    have = {p.size for p in a.along}
    return [s for s in a.sizes() if s in have] + sorted(have - set(a.sizes()))


def along_table(a: StudyAnalysis, size: str) -> Block:
    """One size along training: per checkpoint, its step, the held-out selection metric, and test
    accuracy and mean length (largest budget of each test benchmark) with bootstrap intervals;
    the selected step marked."""
    pts = [p for p in a.along if p.size == size]
    choice = next((c for c in a.choices if c.size == size), None)
    tests = sorted({p.benchmark for p in pts if not p.held_out})
    top = {b: max(p.budget_tokens for p in pts if p.benchmark == b) for b in tests}
    ckpts = sorted({(p.step, p.checkpoint) for p in pts})
    header = ["step"]
    if choice is not None:
        header.append(f"{choice.select_benchmark} {choice.metric} @ {choice.select_budget:,} (held out)")
    for b in tests:
        header += [f"{b} accuracy @ {top[b]:,}", f"{b} mean length"]
    header.append("selected")
    rows = []
    for step, ck in ckpts:
        row = [f"{step}" + (" (final)" if ck == "trained" else "")]
        if choice is not None:
            sel = next((p for p in pts if (p.checkpoint, p.benchmark, p.budget_tokens)
                        == (ck, choice.select_benchmark, choice.select_budget)), None)
            row.append(_fmt(sel.value) if sel is not None else "–")
        for b in tests:
            p = next((p for p in pts if (p.checkpoint, p.benchmark, p.budget_tokens) == (ck, b, top[b])), None)
            row += [_ci(p.accuracy, p.accuracy_lo, p.accuracy_hi) if p else "–",
                    f"{_tokens(p.tokens_mean)} [{_tokens(p.tokens_mean_lo)}, {_tokens(p.tokens_mean_hi)}]" if p else "–"]
        row.append("◀ selected" if choice is not None and choice.selected == ck else "")
        rows.append(row)
    return Block("table", header=header, rows=rows, name=f"along-{size}")


def optimism_lines(a: StudyAnalysis) -> list[str]:
    """One line per (size, test benchmark): the selected step and its optimism, selected - final."""
    out = []
    for c in a.choices:
        opt = _signed(c.optimism * 100, "pt")
        if c.selected != "trained":
            opt += f" [{c.optimism_lo * 100:+.1f}, {c.optimism_hi * 100:+.1f}]".replace("-", "−")
        out.append(f"{a.label(c.size)}: step {c.selected_step} of {c.final_step} selected on {c.select_benchmark} "
                   f"({c.metric} @ {c.select_budget:,}); optimism on {c.benchmark} @ {c.budget_tokens:,} "
                   f"(selected − final accuracy): {opt}")
    return out
