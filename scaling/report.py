"""`scaling report STUDY [STUDY ...]`: analyses -> one document -> report.md + report.html.

    scaling report qwen3-ladder                       # runs/qwen3-ladder/report/report.{md,html}
    scaling report runs/a runs/b -o cmp/              # two studies on the same axes
    scaling report qwen3-ladder --predict 70b --params total
    scaling report art-paper --reference recipes/references/art-aime25.yaml

Data flow: ``analyse.analyse`` (collect -> metrics -> fits -> headline effects -> phases/alerts ->
reference) -> ``document.build`` (the document: a list of ``blocks.Block``, the tables from
``blocks``, the figures from ``figures``) -> here: two jinja2 templates render it:
``scaling/templates/report.html.j2`` (self-contained page: figures as base64 data URIs, CSS
inline, no script) and ``report.md.j2`` (figures as ``figures/*.png``); ``summary.json`` is the
machine-readable twin. Copy the templates elsewhere and set ``SCALING_REPORT_TEMPLATES=<dir>`` to
restyle a report. Every file is written atomically. docs/reports.md explains every section and number.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

from .analyse import (
    EffectTrend,
    StudyAnalysis,
    analyse,
    load_reference,
    log,
)
from .blocks import Block
from .collect import resolve_study_dir
from .document import build
from .durable import atomic_write_bytes, atomic_write_text
from .errors import FitError
from .fit import trend_verdict
from .records import TrendFit, to_dict
from .sizes import parse_size


# ----------------------------------------------------------------------------- renderers
def _env() -> Any:
    import jinja2

    dirs = [Path(d) for d in os.environ.get("SCALING_REPORT_TEMPLATES", "").split(os.pathsep) if d]
    dirs.append(Path(__file__).parent / "templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in dirs]), autoescape=jinja2.select_autoescape(
        enabled_extensions=("html.j2",), default_for_string=False), trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["b64"] = lambda b: base64.b64encode(b).decode("ascii")
    env.filters["mdcell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def _to_md(blocks: list[Block]) -> str:
    return _env().get_template("report.md.j2").render(blocks=blocks)


def _to_html(blocks: list[Block], title: str) -> str:
    return _env().get_template("report.html.j2").render(blocks=blocks, title=title)


def _summary_json(ans: list[StudyAnalysis], predict: Sequence[str]) -> str:
    """Machine-readable twin of the report: metrics, fits (without replicates), headline, phases, alerts."""
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
    ans = list(analyses)
    if not ans:
        raise ValueError("write_report needs at least one analysis")
    out = Path(out_dir)
    blocks = build(ans, predict, progress)
    title = blocks[0].text
    md_text, html_text = _to_md(blocks), _to_html(blocks, title)  # render both before writing anything

    def imgs(bs: list[Block]) -> list[Block]:
        return [b for b in bs if b.kind == "img"] + [c for b in bs if b.kind == "details" for c in imgs(b.children)]

    for b in imgs(blocks):
        atomic_write_bytes(out / "figures" / b.name, b.png)
    md, page = out / "report.md", out / "report.html"
    atomic_write_text(md, md_text)
    atomic_write_text(page, html_text)
    atomic_write_text(out / "summary.json", _summary_json(ans, predict))
    if progress:
        log(f"wrote {md} and {page}")
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
    for p in predict:
        try:
            parse_size(p, params)
        except (ValueError, OverflowError) as err:  # OverflowError: --predict inf
            raise FitError(f"--predict {p}: {err}; give a finite size such as 70b or 7e10") from err
    if reference:
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
