"""One study -> everything its report shows: metrics, trend fits (per variant), the headline
effects against size, training phases, warnings, and published reference numbers next to ours.

    from scaling.analyse import analyse
    an = analyse("qwen3-ladder", runs_dir="runs", convention="total", predict=["70b"])
    an.headline          # EffectTrend per (benchmark, effect, variant): grows / shrinks / no trend
    an.reference         # RefRow per published number matched to a measured one

Data flow: collect -> metrics -> fit -> signals (those modules) -> here -> figures.py (PNG) and
blocks.py (tables) -> document.py (the report's order) -> report.py (rendering, summary.json).
Pure numpy/scipy/yaml: no matplotlib here.

The headline question of a study is: does the method's effect (length change in %, accuracy
change in points, trained vs base at the largest budget) grow or shrink with model size, and how
sure are we? Each effect is fitted log-linearly against log10(params) (the slope is "per 10x
parameters") and judged by ``fit.trend_verdict`` (R² and leave-one-size-out rule; "no trend"
fits are kept out of the headline). Sizes of different variants (thinking mode from plan.json:
hybrid, thinking-only ``always``, non-thinking ``none``) are fitted separately; a variant with
fewer than 3 sizes is shown but not fitted, and the headline says so.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .along import analyse_along, split_records, with_records
from .collect import StudyRecords, collect
from .errors import FitError, RecordError
from .fit import fit_trend, fit_trends, predict as fit_predict, trend_verdict
from .metrics import METRIC_COLUMNS, MetricSet, compute_metrics, size_points
from .layers import recipes_root
from .records import Alert, PhaseSplit, StepChoice, StepPoint, TrendFit
from .signals import find_alerts, split_phases
from .sizes import parse_size
from .studydir import study_ref

FIT_METRICS = (
    "accuracy",
    "pass_at_k",
    "tokens_mean",
    "truncated_frac",
    "accuracy_per_1k_tokens",
    "accuracy_auc",
    "accuracy_change",
    "length_change_frac",
)
HEADLINE = ("accuracy", "tokens_mean", "accuracy_auc", "accuracy_change", "length_change_frac")
# the two effects of the method on the first screen: (metric, name, unit, scale to the unit)
EFFECTS = (("length_change_frac", "length change", "%", 100.0), ("accuracy_change", "accuracy change", "pt", 100.0))
# plan.json model.thinking -> how the report names the variant
VARIANT_NAMES = {"hybrid": "hybrid", "always": "Thinking", "none": "Instruct", "": "all sizes"}
# reference metrics: name in the YAML -> (our metric, unit, our value x scale = the YAML's unit)
REF_METRICS = {
    "accuracy": ("accuracy", "%", 100.0),  # mean@k in percent (Art: Mean@8)
    "pass_at_k": ("pass_at_k", "%", 100.0),  # pass@k in percent (Art: Pass@8)
    "tokens_mean": ("tokens_mean", "tokens", 1.0),  # mean response length in tokens
    "length_change": ("length_change_frac", "%", 100.0),  # trained vs base, percent (Art: -40.3%)
    "accuracy_change": ("accuracy_change", "pt", 100.0),  # trained - base, points
}
DELTA_REF = ("length_change", "accuracy_change")  # compared on the "<ckpt>_vs_base" arm


def log(msg: str) -> None:
    """A progress line of `scaling report` on stderr."""
    print(f"report: {msg}", file=sys.stderr, flush=True)


def variant_name(v: str) -> str:
    return VARIANT_NAMES.get(v, v)


@dataclass
class EffectTrend:
    """One effect of the method against size for one benchmark and one variant group."""

    benchmark: str
    budget: int
    arm: str  # "<ckpt>_vs_base"
    metric: str  # length_change_frac | accuracy_change
    variant: str  # plan.json thinking mode ("" when the study has one variant)
    sizes: list[str]  # size keys of the group, in report order
    fit: TrendFit | None
    verdict: str  # grows | shrinks | unsure | no trend | not fitted
    reason: str
    predictions: list[tuple[str, float, float, float, float]] = field(default_factory=list)  # (size, params, v, lo, hi)


@dataclass(frozen=True)
class RefEntry:
    """One published number (a row of a reference YAML)."""

    size: str
    benchmark: str
    budget: int | str  # tokens, or "max" = the study's largest budget for that benchmark
    checkpoint: str  # base | trained (the arm "<ckpt>_vs_base" for length_change / accuracy_change)
    metric: str  # a key of REF_METRICS
    value: float  # in the metric's unit (REF_METRICS)
    source: str
    precision: float = 0.0  # the last printed digit (0.01 for 13.33, 100 for "14.9k"); 0 = exact


@dataclass
class RefRow:
    """A reference number next to the measured one: measured - reference in the same unit."""

    entry: RefEntry
    size: str  # study size key
    budget: int
    measured: float  # nan when the study has no such estimate
    diff: float  # measured, rounded to the reference's precision, minus the reference


@dataclass
class StudyAnalysis:
    """Everything the report shows about one study."""

    name: str
    path: Path
    study: StudyRecords
    ms: MetricSet
    fits: list[TrendFit]
    phases: list[PhaseSplit]
    alerts: list[Alert]
    convention: str
    failures: list[str] = field(default_factory=list)
    predictions: list[tuple[str, TrendFit, tuple[float, float, float]]] = field(default_factory=list)
    headline: list[EffectTrend] = field(default_factory=list)
    variants: dict[str, list[str]] = field(default_factory=dict)  # variant -> size keys (report order)
    reference: list[RefRow] = field(default_factory=list)
    reference_file: str = ""
    reference_notes: list[str] = field(default_factory=list)
    along: list[StepPoint] = field(default_factory=list)  # evaluation along training (along.py)
    choices: list[StepChoice] = field(default_factory=list)  # the selected step and its optimism

    def fit(self, metric: str, arm: str, bench: str, budget: int, variant: str | None = None) -> TrendFit | None:
        for f in self.fits:
            if (f.metric, f.arm, f.benchmark, f.budget_tokens) == (metric, arm, bench, budget):
                if variant is None or self.variant_of(f) == variant:
                    return f
        return None

    def variant_of(self, f: TrendFit) -> str:
        facts = self.study.sizes.get(f.points[0].size) if f.points else None
        return facts.variant if facts is not None and len(self.variants) > 1 else ""

    def sizes(self) -> list[str]:
        """Size keys in report order (by parameters in this report's convention)."""
        return self.study.size_order(self.convention)

    def label(self, size: str) -> str:
        return self.study.label(size)

    @property
    def mixed(self) -> bool:
        return len(self.variants) > 1

    @property
    def base(self) -> str:
        return "base" if "base" in self.ms.checkpoints else self.ms.checkpoints[0]

    @property
    def arms(self) -> list[str]:
        return [self.base] + [c for c in self.ms.checkpoints if c != self.base]

    @property
    def effect_arms(self) -> list[str]:
        return [f"{c}_vs_{self.base}" for c in self.arms[1:] if self.base == "base"]


# ---------------------------------------------------------------------------- variants
def variant_groups(study: StudyRecords, convention: str = "active") -> dict[str, list[str]]:
    """variant (plan.json thinking mode) -> size keys, in size order; one group "" when the
    study's sizes are all one variant (or the plan does not say)."""
    order = study.size_order(convention)
    groups: dict[str, list[str]] = {}
    for s in order:
        facts = study.sizes.get(s)
        groups.setdefault(facts.variant if facts is not None else "", []).append(s)
    if len(groups) <= 1:
        return {"": order}
    return groups


# ---------------------------------------------------------------------------- headline
def _effect_trends(an: StudyAnalysis, pts: list[Any], predict: Sequence[str], level: float) -> list[EffectTrend]:
    out: list[EffectTrend] = []
    for bench in an.ms.benchmarks:
        budgets = an.ms.budgets.get(bench, [])
        if not budgets:
            continue
        bud = budgets[-1]
        for arm in an.effect_arms:
            for metric, _name, _unit, _scale in EFFECTS:
                for variant, sizes in an.variants.items():
                    group = [p for p in pts if (p.metric, p.arm, p.benchmark, p.budget_tokens) == (metric, arm, bench, bud)
                             and p.size in sizes]
                    group.sort(key=lambda p: p.params)
                    have = [s for s in sizes if any(p.size == s for p in group)]
                    et = EffectTrend(benchmark=bench, budget=bud, arm=arm, metric=metric, variant=variant, sizes=have,
                                     fit=None, verdict="not fitted", reason="")
                    n_x = len({p.params for p in group})
                    if n_x < 3:
                        et.reason = f"{n_x} distinct size{'s' if n_x != 1 else ''}: a trend needs at least 3"
                        out.append(et)
                        continue
                    try:
                        f = fit_trend(group, forms=("log_linear",), level=level)
                    except FitError as err:
                        et.reason = str(err)
                        out.append(et)
                        continue
                    verdict, reason = trend_verdict(f)
                    et.fit, et.reason = f, reason
                    if verdict == "trend":
                        # grows/shrinks refers to the size of the effect, not to the signed number:
                        # a length change of -40% -> -15% is a shortening that shrinks with size
                        mean = sum(p.value for p in group) / len(group)
                        slope = f.coef["slope_per_decade"]
                        et.verdict = "grows" if (slope > 0) == (mean >= 0) else "shrinks"
                    else:
                        et.verdict = verdict
                    if verdict != "no trend":
                        for text in predict:
                            n = parse_size(text, an.convention)
                            v, lo, hi = fit_predict(f, n)
                            et.predictions.append((text, float(n), v, lo, hi))
                    out.append(et)
    return out


# ---------------------------------------------------------------------------- references
def load_reference(path: str | Path) -> list[RefEntry]:
    """Read a reference YAML (docs/reports.md "Reference results"): a list ``references:`` of
    {size, benchmark, budget, checkpoint, metric, value, source}. Errors name the file and entry."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as err:
        raise RecordError(f"{p}: cannot read the reference file ({err.strerror}); give an existing YAML with --reference") from err
    except yaml.YAMLError as err:
        raise RecordError(f"{p}: not valid YAML ({str(err).splitlines()[0]}); fix the file") from err
    rows = data.get("references") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise RecordError(f"{p}: no 'references:' list; see docs/reports.md (Reference results) for the format")
    out = []
    for i, r in enumerate(rows):
        where = f"{p}: references[{i}]"
        if not isinstance(r, dict):
            raise RecordError(f"{where}: not a mapping; write {{size, benchmark, budget, checkpoint, metric, value, source}}")
        missing = [k for k in ("size", "benchmark", "metric", "value", "source") if r.get(k) in (None, "")]
        if missing:
            raise RecordError(f"{where}: missing {', '.join(missing)}; every entry needs size, benchmark, metric, value, source")
        if r["metric"] not in REF_METRICS:
            raise RecordError(f"{where}.metric: unknown metric {r['metric']!r}; known: {', '.join(REF_METRICS)}")
        budget = r.get("budget", "max")
        if budget != "max" and not (isinstance(budget, int) and budget > 0):
            raise RecordError(f"{where}.budget: {budget!r} is not a token count or 'max'; write e.g. 32768 or max")
        ckpt = str(r.get("checkpoint") or "trained")
        try:
            value = float(r["value"])
        except (TypeError, ValueError):
            raise RecordError(f"{where}.value: {r['value']!r} is not a number; write the published number") from None
        prec = r.get("precision", 0)
        if not isinstance(prec, (int, float)) or isinstance(prec, bool) or prec < 0:
            raise RecordError(f"{where}.precision: {prec!r} is not a non-negative number; write the last printed digit, "
                              "e.g. 0.01 for 13.33 or 100 for 14.9k")
        out.append(RefEntry(size=str(r["size"]), benchmark=str(r["benchmark"]), budget=budget, checkpoint=ckpt,
                            metric=str(r["metric"]), value=value, source=str(r["source"]), precision=float(prec)))
    return out


def default_reference(study_name: str) -> Path | None:
    """The published table a study reproduces by default (``art-paper`` -> Art's AIME 2025)."""
    known = {"art-paper": "art-aime25.yaml"}
    if study_name not in known:
        return None
    p = recipes_root() / "references" / known[study_name]
    return p if p.is_file() else None


def _norm(s: str) -> str:
    return s.strip().lower().replace("_", "-").replace(".", "-")


def match_reference(an: StudyAnalysis, entries: Sequence[RefEntry]) -> tuple[list[RefRow], list[str]]:
    """Reference entries -> rows with measured - reference; notes for entries that match nothing."""
    keys = {}
    for s in an.study.sizes:
        keys[_norm(s)] = s
        keys[_norm(an.label(s))] = s
    rows, notes = [], []
    unmatched: dict[str, int] = {}
    for e in list(entries):
        # a table that prints base and trained accuracy but not the change: the change is their
        # difference (labelled "derived" in its source)
        if e.metric == "accuracy" and e.checkpoint != "base":
            base = next((b for b in entries if b.metric == "accuracy" and b.checkpoint == "base"
                         and (_norm(b.size), b.benchmark, b.budget) == (_norm(e.size), e.benchmark, e.budget)), None)
            has = any(c.metric == "accuracy_change" and c.checkpoint == e.checkpoint
                      and (_norm(c.size), c.benchmark, c.budget) == (_norm(e.size), e.benchmark, e.budget) for c in entries)
            if base is not None and not has:
                entries = [*entries, RefEntry(size=e.size, benchmark=e.benchmark, budget=e.budget, checkpoint=e.checkpoint,
                                              metric="accuracy_change", value=round(e.value - base.value, 10),
                                              source=f"derived: {e.checkpoint} - base accuracy of the reference ({e.source})",
                                              precision=max(e.precision, base.precision))]
    for e in entries:
        size = keys.get(_norm(e.size))
        if size is None or e.benchmark not in an.ms.benchmarks:
            what = f"size {e.size}" if size is None else f"benchmark {e.benchmark}"
            unmatched[what] = unmatched.get(what, 0) + 1
            continue
        budgets = an.ms.budgets[e.benchmark]
        bud = budgets[-1] if e.budget == "max" else int(e.budget)
        metric, _unit, scale = REF_METRICS[e.metric]
        arm = f"{e.checkpoint}_vs_{an.base}" if e.metric in DELTA_REF else e.checkpoint
        est = an.ms.get(size, arm, e.benchmark, bud, metric)
        measured = est.value * scale if est is not None else math.nan
        shown = round(measured / e.precision) * e.precision if e.precision and math.isfinite(measured) else measured
        rows.append(RefRow(entry=e, size=size, budget=bud, measured=measured, diff=round(shown - e.value, 9) + 0.0))
    for what, n in unmatched.items():
        notes.append(f"{n} reference number{'s' if n > 1 else ''} for {what}: not in this study, not shown")
    return rows, notes


# ----------------------------------------------------------------------------- analyse
def _ref(path: Any) -> str:
    """How a printed hint names the study so that it runs as printed (``--runs-dir`` when the
    study is not under ./runs): ``studydir.study_ref``."""
    return study_ref(Path(path))


def analyse(
    study: str | Path,
    *,
    runs_dir: str | Path = "runs",
    convention: str = "active",
    predict: Sequence[str] = (),
    n_boot: int = 1000,
    level: float = 0.95,
    progress: bool = True,
    reference: str | Path | None = None,
) -> StudyAnalysis:
    """collect -> metrics -> fits (per variant) -> headline effects -> phases/alerts -> reference
    for one study. ``reference``: a reference YAML; None = the study's default (art-paper), ""
    = none."""
    t0 = time.perf_counter()
    st = collect(study, runs_dir=runs_dir, columns=METRIC_COLUMNS, progress=progress)
    if st.records.num_rows == 0:
        raise RecordError(
            f"{st.path}: no evaluation records with a DONE marker ({len(st.skipped)} unfinished outputs); "
            f"run `scaling status {_ref(st.path)}` and `scaling resume {_ref(st.path)}`"
        )
    ref_entries: list[RefEntry] = []
    ref_path = default_reference(st.name) if reference is None else (Path(reference) if reference else None)
    if ref_path is not None:
        ref_entries = load_reference(ref_path)  # bad file: one-line error before any work
    main, along_records = split_records(st)  # steps and the held-out benchmark: their own section
    if main is not st.records:
        st = with_records(st, main)
    ms = compute_metrics(st.records, n_boot=n_boot, level=level, progress=progress)
    if progress:
        log(f"{st.name}: metrics for {len(ms.metrics)} groups ({time.perf_counter() - t0:.1f} s)")
    pts = size_points(ms, st.sizes, convention=convention, metrics=FIT_METRICS)
    groups = variant_groups(st, convention)
    failures: list[str] = []
    fits: list[TrendFit] = []
    for variant, sizes in groups.items():
        sub = [p for p in pts if p.size in set(sizes)]
        if len(groups) > 1 and len({st.sizes[s].params(convention) for s in sizes}) < 3:
            failures.append(f"{variant_name(variant)} variant ({', '.join(st.label(s) for s in sizes)}): fewer than 3 "
                            "distinct sizes, not fitted")
            continue
        fits += fit_trends(sub, metrics=FIT_METRICS, level=level, failures=failures)
    if progress:
        log(f"{st.name}: {len(fits)} trend fits, {len(failures)} skipped ({time.perf_counter() - t0:.1f} s)")
    phases = split_phases(st.signals)
    labels = {s: st.label(s) for s in st.sizes}
    alerts = find_alerts(ms, st.signals, phases, labels=labels)
    for s in st.skipped:
        alerts.append(Alert(kind="missing", message=f"{s}: no DONE marker; not included (run `scaling resume {_ref(st.path)}`)"))
    an = StudyAnalysis(
        name=st.name, path=st.path, study=st, ms=ms, fits=fits, phases=phases, alerts=alerts,
        convention=convention, failures=failures, variants=groups,
    )
    for text in predict:
        n = parse_size(text, convention)
        for f in fits:
            if f.metric in HEADLINE:
                an.predictions.append((text, f, fit_predict(f, n)))
    an.headline = _effect_trends(an, pts, predict, level)
    an.along, an.choices = analyse_along(st, along_records, n_boot=n_boot, level=level)
    if ref_path is not None:
        an.reference_file = str(ref_path)
        an.reference, an.reference_notes = match_reference(an, ref_entries)
    return an
