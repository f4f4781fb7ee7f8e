"""Evaluation along training: the checkpoint schedule and the honest step selection (issue 26, item 3).

What it does
    ``eval.checkpoints`` names the models a study evaluates. Besides ``base`` (the model training
    starts from) and ``trained`` (the final model), it accepts intermediate training steps:

        eval.checkpoints: [base, trained, every 12]     # steps 12, 24, ... below train.max_steps
        eval.checkpoints: [base, trained, step-12, 24]  # explicit steps (``step-N`` or an integer)

    Each step must be a multiple of ``train.save_steps`` (only those checkpoints exist) and below
    ``train.max_steps`` (the final model is ``trained``); ``plan._check`` refuses the others through
    ``schedule_problem``. Step ``N`` is evaluated from the train job's ``checkpoints/checkpoint-N``
    (``jobs/models.resolve_model``) by a run ``<size>/eval-step-N``, after training, an array over
    the benchmarks like ``eval-trained``. A training job with a schedule keeps every checkpoint
    (``save_total_limit`` None instead of 2, ``jobs/train_config.py``): full fine-tuning only, since
    a LoRA checkpoint is an adapter.

    ``eval.select_step: {benchmark: tiny_arith_val, metric: accuracy, budget: 128}`` picks one step
    per size (argmax of ``metric`` at ``budget`` on ``benchmark``; ties -> the earliest step) among
    the scheduled steps and ``trained``. The selection benchmark must not be one of the reported
    ``eval.benchmarks``: choosing a step on the test set and reporting it there is optimistic by
    construction. It is evaluated only on the steps and the trained model, and the report keeps it
    out of every other table. The report states the selection's optimism = (selected - final) on
    each test benchmark, with a paired bootstrap interval (analyse.py).

Standard library only (imported by validate.py and plan.py at planning time).
"""

from __future__ import annotations

import re
from typing import Any

NAMED = ("base", "trained")
SELECT_METRICS = ("accuracy", "pass_at_k", "accuracy_per_1k_tokens")  # higher is better, each
_STEP = re.compile(r"(?:step-)?(\d+)")
_EVERY = re.compile(r"every\s+(\d+)(?:\s+steps?)?")
SPELLING = "base, trained, step-N (or the integer N) or 'every N'"


def step_of(checkpoint: str) -> int | None:
    """``"step-12"`` -> 12; any other checkpoint name -> None."""
    m = re.fullmatch(r"step-(\d+)", str(checkpoint))
    return int(m.group(1)) if m else None


def _parse(entry: Any) -> tuple[str, int]:
    """One entry of eval.checkpoints -> ("named", 0) | ("step", N) | ("every", N); ValueError."""
    text = str(entry).strip()
    if text in NAMED:
        return "named", 0
    m = _STEP.fullmatch(text)
    if m:
        return "step", int(m.group(1))
    m = _EVERY.fullmatch(text)
    if m:
        return "every", int(m.group(1))
    raise ValueError(f"unknown checkpoint {entry!r}; use {SPELLING}")


def checkpoint_problem(entries: list[Any]) -> str | None:
    """The spelling of eval.checkpoints (check time, without the train settings): the message, or None."""
    seen: set[str] = set()
    for e in entries:
        try:
            kind, n = _parse(e)
        except ValueError as err:
            return str(err)
        if kind != "named" and n < 1:
            return f"checkpoint {e!r}: steps start at 1; use e.g. step-12 or 'every 12'"
        key = str(e).strip() if kind == "named" else f"{kind}-{n}"
        if key in seen:
            return f"checkpoint {e!r} is listed twice; list each once"
        seen.add(key)
    return None


def expand_checkpoints(entries: list[Any], max_steps: int) -> list[str]:
    """eval.checkpoints -> the checkpoint names of the eval runs, in the listed order, ``every N``
    expanded in place to step-N, step-2N, ... below ``max_steps``; a step listed twice once."""
    out: list[str] = []
    for e in entries:
        kind, n = _parse(e)
        names = ([str(e).strip()] if kind == "named" else [f"step-{n}"] if kind == "step"
                 else [f"step-{s}" for s in range(n, max(max_steps, 0), n)])
        out += [x for x in names if x not in out]
    return out


def scheduled_steps(entries: list[Any], max_steps: int) -> list[int]:
    """The intermediate steps a schedule evaluates, ascending."""
    return sorted(s for s in (step_of(c) for c in expand_checkpoints(entries, max_steps)) if s is not None)


def schedule_problem(entries: list[Any], *, save_steps: int, max_steps: int, lora: bool) -> str | None:
    """The cross-field rules of a schedule (plan._check): (message naming eval.checkpoints and the fix) or None."""
    problem = checkpoint_problem(entries)
    if problem:
        return problem
    explicit = [_parse(e) for e in entries]
    if not any(kind != "named" for kind, _ in explicit):
        return None
    if max_steps is None or max_steps <= 0:
        return ("eval.checkpoints lists training steps but train.max_steps is not set; set train.max_steps "
                "or drop the steps")
    if lora:
        return ("eval.checkpoints lists training steps but train.finetune=lora saves adapters, not models, at "
                "each step; use train.finetune=full or drop the steps")
    for kind, n in explicit:
        if kind == "every" and n % save_steps:
            return (f"eval.checkpoints 'every {n}' is not a multiple of train.save_steps={save_steps} (only those "
                    f"checkpoints are saved); use 'every {max(save_steps, n - n % save_steps)}' or change "
                    "train.save_steps")
        if kind == "every" and n >= max_steps:
            return (f"eval.checkpoints 'every {n}' has no step below train.max_steps={max_steps}; use a smaller N")
        if kind == "step" and n % save_steps:
            return (f"eval.checkpoints step-{n} is not a multiple of train.save_steps={save_steps}, so no checkpoint "
                    f"is saved there; use step-{max(save_steps, n - n % save_steps)} or change train.save_steps")
        if kind == "step" and n >= max_steps:
            what = "is the final model: use 'trained'" if n == max_steps else "is never reached"
            return (f"eval.checkpoints step-{n} {what} (train.max_steps={max_steps}); list steps below "
                    f"{max_steps}")
    return None


def selection_problem(ev: Any, budgets: list[int], steps: list[int]) -> str | None:
    """The rules of eval.select_step (plan._check): held out, a known metric and budget, steps to choose from."""
    sel = getattr(ev, "select_step", None)
    if sel is None:
        return None
    if not sel.benchmark:
        return "eval.select_step.benchmark is empty; name a held-out benchmark (e.g. tiny_arith_val)"
    if sel.benchmark in ev.benchmarks:
        return (f"eval.select_step.benchmark={sel.benchmark} is a reported test benchmark (eval.benchmarks): a step "
                "chosen on it is optimistic by construction; select on a held-out split (e.g. tiny_arith_val)")
    if sel.metric not in SELECT_METRICS:
        return f"eval.select_step.metric={sel.metric!r} is unknown; use one of {', '.join(SELECT_METRICS)}"
    if sel.budget is not None and sel.budget not in budgets:
        return (f"eval.select_step.budget={sel.budget} is not one of eval.budgets {budgets}; use one of them "
                "or null (the largest)")
    if not steps:
        return ("eval.select_step needs intermediate steps to choose from; add e.g. 'every 12' to "
                "eval.checkpoints")
    return None


def select(values: dict[str, float], ties_first: list[str]) -> str:
    """The argmax of ``values`` (checkpoint -> selection metric); ties -> the earliest in
    ``ties_first`` (checkpoints in step order, ``trained`` last). NaN never wins."""
    best, best_v = "", float("-inf")
    for ck in ties_first:
        v = values.get(ck)
        if v is not None and v == v and v > best_v:
            best, best_v = ck, v
    return best


def step_number(checkpoint: str, max_steps: int) -> int:
    """The training step of a checkpoint of the schedule (``trained`` = max_steps, ``base`` = 0)."""
    s = step_of(checkpoint)
    return s if s is not None else (0 if checkpoint == "base" else int(max_steps))


__all__ = ["NAMED", "SELECT_METRICS", "step_of", "checkpoint_problem", "expand_checkpoints", "scheduled_steps",
           "schedule_problem", "selection_problem", "select", "step_number"]
