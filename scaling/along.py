"""Evaluation along training: the curves per size, the selected step and its optimism (issue 26).

    main, along = split_records(study)          # the reported records, the along-training ones
    points, choices = analyse_along(study, along, n_boot=1000, level=0.95)

``split_records`` keeps the intermediate checkpoints (``step-N``) and the ``eval.select_step``
benchmark out of every other part of the report: the headline compares base and trained on the
test benchmarks only. ``analyse_along`` computes, per size with a schedule (collect's ``along``,
from plan.json), the metrics of ``step-N`` and ``trained`` with ``metrics.compute_metrics`` (the
same per-problem bootstrap as the rest of the report, base = ``trained``, so ``step-N_vs_trained``
is a paired difference), then

* the curve: ``StepPoint`` per (checkpoint, benchmark, budget): accuracy, mean length, intervals;
* the selected step: argmax of the selection metric at the selection budget (default: the
  largest) on the held-out benchmark, ties -> the earliest step (``schedule.select``);
* its optimism on each test benchmark at that benchmark's largest budget (``StepChoice``):
  accuracy(selected) - accuracy(final), with the paired bootstrap interval of that difference;
  exactly 0 when the final model is selected. Positive = choosing a step beat simply taking the
  final model on the test set; the held-out choice makes this an honest estimate (the test set
  played no part in the choice).

numpy and pyarrow only (through metrics.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .collect import StudyRecords
from .metrics import compute_metrics
from .records import StepChoice, StepPoint
from .schedule import select, step_number

FINAL = "trained"


def _plain(table: Any) -> Any:
    """Dictionary string columns -> plain strings (a filtered table's dictionaries keep unused values,
    which compute_metrics would count as checkpoints)."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
    return table


def held_out_benchmarks(study: StudyRecords) -> set[str]:
    """The eval.select_step benchmarks of the study (plan.json), by the name the records carry."""
    return {str(a["select_step"]["benchmark"]) for a in study.along.values() if a.get("select_step")}


def split_records(study: StudyRecords) -> tuple[Any, Any]:
    """(records the report shows everywhere, records of the along-training section or None)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rec = study.records
    if not rec.num_rows:
        return rec, None
    ck = rec.column("checkpoint").cast(pa.string())
    bench = rec.column("benchmark").cast(pa.string())
    is_step = pc.starts_with(ck, "step-")
    held = held_out_benchmarks(study)
    is_held = pc.is_in(bench, value_set=pa.array(sorted(held), pa.string())) if held else pc.equal(ck, "\0")
    side = pc.or_(is_step, is_held)
    if not pc.any(is_step).as_py():
        return (rec if not held else _plain(rec.filter(pc.invert(side)))), None
    sizes = pa.array(sorted(study.along), pa.string())
    in_along = pc.and_(pc.or_(is_step, pc.equal(ck, FINAL)), pc.is_in(rec.column("size").cast(pa.string()), value_set=sizes))
    return _plain(rec.filter(pc.invert(side))), _plain(rec.filter(in_along))


def analyse_along(study: StudyRecords, along: Any, *, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> tuple[list[StepPoint], list[StepChoice]]:
    """The curves and the selections (see the module docstring); ([], []) without along records."""
    if along is None or not along.num_rows:
        return [], []
    ms = compute_metrics(along, n_boot=n_boot, level=level, seed=seed, base=FINAL)
    held = held_out_benchmarks(study)
    points: list[StepPoint] = []
    choices: list[StepChoice] = []
    for size, info in study.along.items():
        max_steps = int(info.get("max_steps") or 0)
        ckpts = sorted({m.checkpoint for m in ms.metrics if m.size == size},
                       key=lambda c: step_number(c, max_steps))
        sel = info.get("select_step") or None
        for m in ms.metrics:
            if m.size != size:
                continue
            points.append(StepPoint(
                size=size, checkpoint=m.checkpoint, step=step_number(m.checkpoint, max_steps), benchmark=m.benchmark,
                budget_tokens=m.budget_tokens, held_out=m.benchmark in held, accuracy=m.accuracy,
                accuracy_lo=m.accuracy_lo, accuracy_hi=m.accuracy_hi, tokens_mean=m.tokens_mean,
                tokens_mean_lo=m.tokens_mean_lo, tokens_mean_hi=m.tokens_mean_hi,
                value=float(getattr(m, sel["metric"])) if sel and m.benchmark == sel["benchmark"] else float("nan")))
        if not sel or sel["benchmark"] not in ms.budgets:
            continue
        budget = int(sel.get("budget") or ms.budgets[sel["benchmark"]][-1])
        values = {c: v.value for c in ckpts
                  if (v := ms.get(size, c, sel["benchmark"], budget, sel["metric"])) is not None}
        chosen = select(values, ckpts)
        if not chosen:
            continue
        for bench in ms.benchmarks:
            if bench in held:
                continue
            bud = ms.budgets[bench][-1]
            if chosen == FINAL:
                opt = (0.0, 0.0, 0.0)
            else:
                est = ms.get(size, f"{chosen}_vs_{FINAL}", bench, bud, "accuracy_change")
                if est is None:
                    continue
                opt = (est.value, est.lo, est.hi)
            choices.append(StepChoice(
                size=size, selected=chosen, selected_step=step_number(chosen, max_steps), final_step=max_steps,
                select_benchmark=sel["benchmark"], metric=sel["metric"], select_budget=budget, benchmark=bench,
                budget_tokens=bud, optimism=opt[0], optimism_lo=opt[1], optimism_hi=opt[2]))
    points.sort(key=lambda p: (p.size, p.benchmark, p.budget_tokens, p.step))
    return points, choices


def with_records(study: StudyRecords, records: Any) -> StudyRecords:
    """The same study with another records table (the reported part of split_records)."""
    return dataclasses.replace(study, records=records)


__all__ = ["split_records", "analyse_along", "held_out_benchmarks", "with_records", "FINAL"]
