"""The report as one document, in reading order: title and lead, the headline (verdicts, one
table per benchmark and arm, reference numbers, the headline figure), the warnings grouped by kind,
then the detail (summary, accuracy vs budget, trends and predictions, length distributions, the
two training phases, how the numbers were made, every metric and fit folded).

Data flow: ``analyse`` -> ``blocks`` (tables) + ``figures`` (PNG) -> here: ``build`` returns the
list of ``blocks.Block`` that ``report`` renders to report.md / report.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from . import figures
from .analyse import HEADLINE, StudyAnalysis, log
from .blocks import (
    Block,
    fits_table,
    headline_alt,
    headline_table,
    metrics_table,
    phases_table,
    predictions_table,
    along_sizes,
    along_table,
    optimism_lines,
    reference_blocks,
    summary_table,
    variant_sentence,
    verdict_table,
)
from .fit import AICC_MARGIN, LOSO_MAX, R2_MIN, trend_verdict
from .signals import ALERT_KINDS, PHASE_RULE
from .tracking_read import study_curves


def _safe(name: str) -> str:
    """A figure's file name from its id (letters, digits, ``-_.``; anything else ``_``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# ------------------------------------------------------------------ what each arm is
def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _base_arm(st: dict[str, Any]) -> str:
    """How the base arm of one size was made, from its plan.json runs (stage -> run)."""
    sft = (st.get("sft") or {}).get("sft")
    if not sft:
        src = next((r.get("model_source") for r in st.values() if r.get("model_source")), "")
        return "the released checkpoint" + (f" ({src})" if src else "")
    steps = sft.get("max_steps")
    length = f"{steps} steps" if isinstance(steps, int) and steps > 0 else f"{_num(sft.get('epochs'))} epochs"
    data = (sft.get("dataset") or {}).get("source") or "?"
    return f"after SFT, {length} (lr {_num(sft.get('learning_rate'))}, batch {_num(sft.get('batch_size'))}, {data})"


def _trained_arm(st: dict[str, Any]) -> str:
    """How the trained arm of one size was made (its GRPO run in plan.json)."""
    tr = (st.get("train") or {}).get("train")
    if not tr:
        return "no GRPO run in the plan"
    rw = tr.get("reward") or {}
    return (f"GRPO, reward {rw.get('shaping', '?')}, L_T {_num(rw.get('target_length', '?'))} tokens, "
            f"{_num(tr.get('max_steps'))} steps, lr {_num(tr.get('learning_rate'))}, "
            f"{_num(tr.get('num_generations'))} rollouts per prompt, {_num(tr.get('prompts_per_step'))} prompts per step")


def arms_blocks(a: StudyAnalysis) -> list[Block]:
    """What each arm is, from the study's plan.json: once when every size shares it, else per size."""
    stages = a.study.stages
    sizes = [s for s in a.sizes() if s in stages]
    if not sizes:
        return [Block("p", text=f"{a.name}: no plan.json, so the report cannot say how the arms were made.", cls="note")]
    items = []
    for arm, fn in [(a.base, _base_arm)] + [(c, _trained_arm) for c in a.arms[1:]]:
        texts = {s: fn(stages[s]) for s in sizes}
        if len(set(texts.values())) == 1:
            items.append(f"{arm}: {texts[sizes[0]]}")
        else:
            items += [f"{arm} ({a.label(s)}): {t}" for s, t in texts.items()]
    return [Block("p", text=f"What each arm is ({a.name}, from plan.json):"), Block("ul", items=items)]


# ------------------------------------------------------------------ warnings and method
def _warning_blocks(ans: list[StudyAnalysis]) -> list[Block]:
    by_kind: dict[str, list[str]] = {}
    for a in ans:
        for al in a.alerts:
            by_kind.setdefault(al.kind, []).append((f"[{a.name}] " if len(ans) > 1 else "") + al.message)
    n = sum(len(v) for v in by_kind.values())
    blocks = [Block("h2", text=f"Warnings ({n})", name="warnings")]
    if not by_kind:
        return blocks + [Block("p", text="none")]
    blocks.append(Block("p", text="Grouped by kind; open a group to read each warning. They say which points to trust "
                                  "less; docs/reports.md (Warnings) has every threshold.", cls="note"))
    for kind, msgs in by_kind.items():
        blocks.append(Block("details", text=f"{kind} ({len(msgs)}): {ALERT_KINDS.get(kind, '')}",
                            children=[Block("ul", items=msgs)]))
    return blocks


def _method_text(an: StudyAnalysis) -> list[Block]:
    lvl = f"{an.ms.level:.0%}"
    return [
        Block("p", text=(
            f"Accuracy is mean@k: the mean over problems of the fraction of the k samples that are correct; a response cut "
            f"at the budget has no answer and counts as incorrect. Accuracies are in percent, their changes in points (pt); "
            f"length change = trained / base mean length − 1, in percent (negative = shorter). Intervals are {lvl} "
            f"percentile bootstrap intervals over problems ({an.ms.n_boot} resamples, seed {an.ms.seed}); the same problem "
            "resamples are used for every size, checkpoint and budget of a benchmark, so differences and trends are paired."
        )),
        Block("p", text=(
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
def _tracker_blocks(ans: Sequence[StudyAnalysis]) -> list[Block]:
    """One line per SFT/GRPO job that reported to trackio / TensorBoard / W&B: where its curves
    are and the command that shows them (train.report_to / sft.report_to; jobs/tracking.py)."""
    lines = [f"{a.name} {line}" if len(ans) > 1 else line for a in ans for line in study_curves(a.path)]
    if not lines:
        return []
    return [Block("details", text=f"Training curves in the trackers ({len(lines)})", children=[Block("ul", items=lines)])]


def _along_blocks(ans: list[StudyAnalysis], rendered: dict[str, Block]) -> list[Block]:
    """The section "Along training" (issue 26): only for studies with an eval.checkpoints schedule."""
    with_along = [a for a in ans if a.along]
    if not with_along:
        return []
    blocks = [Block("h2", text="Along training", name="along-training"),
              Block("p", text="Intermediate checkpoints (eval.checkpoints step-N / 'every N') evaluated after training. "
                              "The step is selected per size on the held-out eval.select_step benchmark (argmax, ties -> "
                              "earliest), never on a reported test benchmark; its optimism is the selected minus the final "
                              "accuracy on each test benchmark, with a paired bootstrap interval over problems. These "
                              "checkpoints and the held-out benchmark appear in no other section.")]
    for a in with_along:
        for size in along_sizes(a):
            blocks.append(Block("h3", text=f"{a.name}: {a.label(size)}" if len(ans) > 1 else a.label(size)))
            blocks.append(along_table(a, size))
        lines = optimism_lines(a)
        blocks.append(Block("ul", items=lines) if lines else
                      Block("p", text=f"{a.name}: no eval.select_step: no step selected.", cls="note"))
        if f"along_training_{a.name}" in rendered:
            blocks.append(rendered[f"along_training_{a.name}"])
    return blocks


def code_benchmark_notes(ans: list[StudyAnalysis]) -> list[str]:
    """One line per code benchmark: its LiveCodeBench release and contest-date window, and a flag
    when any of its evaluations ran model code without the sandbox (``eval.code.allow_unsandboxed``),
    read from the evaluation jobs' DONE records (``<study>/<size>/<eval run>/<benchmark>/DONE``)."""
    from .durable import read_done  # here: only a study with code benchmarks needs it

    out = []
    for a in ans:
        for b in a.ms.benchmarks:
            infos = [i for d in sorted(Path(a.path).glob(f"*/*/{b}")) if (i := read_done(d)) and i.get("grader") == "code"]
            if not infos:
                continue
            i = infos[0]
            window = ", ".join(x for x in (f"release {i['release']}" if i.get("release") else "",
                                           f"contest_date {i.get('start_date') or '…'}..{i.get('end_date') or '…'} "
                                           "(end exclusive)" if i.get("start_date") or i.get("end_date") else "") if x)
            text = f"{b}: code benchmark, graded by running the program on hidden tests" + (f"; {window}" if window else "")
            unsafe = sum(bool(x.get("unsandboxed")) for x in infos)
            if unsafe:
                text += (f". WARNING: {unsafe} of {len(infos)} evaluations ran model code WITHOUT the sandbox "
                         "(eval.code.allow_unsandboxed: true)")
            out.append((f"{a.name}: " if len(ans) > 1 else "") + text + ".")
    return out


def build(ans: list[StudyAnalysis], predict: Sequence[str], progress: bool) -> list[Block]:
    title = "Scaling report: " + " vs ".join(a.name for a in ans)
    blocks = [Block("h1", text=title)]
    benches = list(dict.fromkeys(b for a in ans for b in a.ms.benchmarks))
    n_alerts = sum(len(a.alerts) for a in ans)
    lead = []
    for a in ans:
        k = sorted({m.k for m in a.ms.metrics})
        lead.append(f"{a.name}: {len(a.sizes())} sizes, {', '.join(a.ms.benchmarks)}, "
                    f"{'/'.join(map(str, k))} samples per problem, parameters {a.convention}")
    warn = f"{n_alerts} warning{'s' if n_alerts != 1 else ''} (below the headline)" if n_alerts else "no warnings"
    blocks.append(Block("p", text="; ".join(lead) + f". {warn}.", cls="lead"))
    code = code_benchmark_notes(ans)  # issue 24: a code benchmark's release and window, an unsandboxed run
    if code:
        blocks.append(Block("ul", items=code))
    for a in ans:
        blocks += arms_blocks(a)

    # 1. the headline: does the effect grow or shrink with size, and how sure are we?
    blocks.append(Block("h2", text="Headline: does the method's effect grow or shrink with size?", name="headline-section"))
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
        if a.along:
            figs.append((f"along_training_{a.name}", f"Accuracy and length against training step: {a.name}",
                         lambda a=a: figures.along_training(a)))
    rendered: dict[str, Block] = {}
    for i, (name, caption, fn) in enumerate(figs):
        if progress:
            log(f"figure {i + 1}/{len(figs)}: {name}")
        rendered[name] = Block("img", name=_safe(name) + ".png", text=caption, alt=caption, png=fn())
    index = 0
    for a in ans:
        if not a.effect_arms:
            blocks.append(Block("p", text=f"{a.name}: no trained checkpoint next to base; no effect to show."))
            continue
        if len(ans) > 1:
            blocks.append(Block("h3", text=a.name))
        blocks.append(verdict_table(a))
        if a.mixed:
            blocks.append(Block("p", text=variant_sentence(a), cls="note"))
        for b in a.ms.benchmarks:
            for arm in a.effect_arms:
                blocks.append(Block("h3", text=f"{b} at {a.ms.budgets[b][-1]:,} tokens"
                                                + (f" ({arm.replace('_vs_', ' vs ')})" if len(a.effect_arms) > 1 else "")))
                blocks.append(headline_table(a, b, arm, index))
                index += 1
        blocks += reference_blocks(a)
    blocks.append(Block("p", text="Length change: trained vs base mean length at the largest budget (negative = shorter); "
                                  "accuracy change in points; [intervals] are paired bootstrap intervals over problems. "
                                  "Rows follow the parameter count used for the fits.", cls="note"))
    for b in benches:
        if f"headline_{b}" in rendered:
            img = rendered[f"headline_{b}"]
            img.alt = " ".join(headline_alt(a, b) for a in ans if b in a.ms.benchmarks and a.effect_arms)
            img.text = (f"{b}: length change (%) and accuracy change (pt) against size; every point named; lines: "
                        "log-linear trends with bootstrap bands and slope intervals (no line: no trend); hollow stars: "
                        "predictions for sizes not in the study" + ("; crosses: reference numbers" if any(a.reference for a in ans) else ""))
            blocks.append(img)

    # 2. warnings, grouped and folded
    blocks += _warning_blocks(ans)

    # 3. the detail
    blocks.append(Block("h2", text="Summary at the largest budget"))
    for a in ans:
        for b in a.ms.benchmarks:
            blocks.append(Block("h3", text=f"{a.name}: {b} (budget {a.ms.budgets[b][-1]:,})"))
            blocks.append(summary_table(a, b))
    blocks.append(Block("h2", text="Accuracy vs budget (base vs trained)"))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("accuracy_vs_budget_")]
    blocks.append(Block("h2", text="Trends against model size"))
    blocks.append(Block("p", text="Points: measured values with bootstrap intervals, named by size. Lines: fitted trends with "
                                  "bootstrap bands (dotted and faint: no trend). Hollow stars: predictions for sizes not in "
                                  "the study, with observation intervals."))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("size_trends_")]
    for r in rendered.values():
        if r.name.startswith("size_trends_"):
            r.alt = r.text + ". Points: " + ", ".join(dict.fromkeys(a.label(s) for a in ans for s in a.sizes())) + "."
    head = [(a, f) for a in ans for f in a.fits
            if f.metric in HEADLINE and (f.budget_tokens == 0 or f.budget_tokens == a.ms.budgets[f.benchmark][-1])]
    strong = [(a, f) for a, f in head if trend_verdict(f)[0] != "no trend"]
    weak = [(a, f) for a, f in head if trend_verdict(f)[0] == "no trend"]
    blocks.append(Block("h3", text="Trend fits (largest budget, and AUC over budgets)"))
    blocks.append(fits_table(ans, strong) if strong else Block("p", text="No fit passes the trend rule."))
    if weak:
        blocks.append(Block("details", text=f"Fits with no trend, kept out of the headline ({len(weak)})",
                            children=[fits_table(ans, weak)]))
    if predict:
        blocks.append(Block("h3", text="Predictions"))
        blocks.append(predictions_table(ans))
    blocks.append(Block("h2", text="Length distributions by correctness"))
    blocks += [rendered[n] for n, _, _ in figs if n.startswith("lengths_")]
    blocks.append(Block("h2", text="Training: two phases"))
    blocks.append(Block("p", text="Length adaptation, then reasoning refinement (Art, arXiv 2602.20945). Our rule: "
                                  + PHASE_RULE.format(tol=0.10, hold="h") + " (h = 5% of the logged steps, at least 3; "
                                  "the length is smoothed by a running median over about 5% of the steps)."))
    for a in ans:
        if not a.phases:
            blocks.append(Block("p", text=f"{a.name}: no training signals with a DONE marker."))
            continue
        blocks.append(phases_table(a))
        if f"training_{a.name}" in rendered:
            blocks.append(rendered[f"training_{a.name}"])
    blocks += _tracker_blocks(ans)  # issue 26: where each run's tracker curves are
    blocks += _along_blocks(ans, rendered)
    blocks.append(Block("h2", text="How the numbers were made"))
    blocks += _method_text(ans[0])
    for a in ans:
        blocks.append(Block("details", text=f"All metrics per budget: {a.name} ({len(a.ms.metrics)} rows)",
                            children=[metrics_table(a)]))
        blocks.append(Block("details", text=f"All trend fits: {a.name} ({len(a.fits)})",
                            children=[fits_table([a], [(a, f) for f in a.fits], criterion=True)]))
        if a.failures:
            blocks.append(Block("details", text=f"Fits skipped: {a.name} ({len(a.failures)})",
                                children=[Block("ul", items=a.failures)]))
    return blocks
