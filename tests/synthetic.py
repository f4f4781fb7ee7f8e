"""Synthetic studies and trends with a known truth, for tests and perf scripts (not results).

    from tests.synthetic import points_from_truth, write_synthetic_study
    root = write_synthetic_study(tmp / "runs" / "syn", sizes={"0_6b": (0.6e9, 0.6e9), ...})
    truth = points_from_truth("log_linear", {"value_at_ref": 0.4, "slope_per_decade": 0.1}, params)

``write_synthetic_study`` writes records.parquet + DONE, signals.parquet + DONE and plan.json in
the exact layout the jobs write, so ``scaling.collect`` reads it like a launched study.
Importable as ``tests.synthetic`` with the repository root on ``sys.path`` (``python -m pytest``
from the root; test files and perf/aggregate_speed.py insert it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from scaling.durable import atomic_write_table, atomic_write_text, mark_done
from scaling.fit import form_values
from scaling.records import EvalRecord, TrainSignal, to_table
from scaling.sizes import size_label


def points_from_truth(
    form: str, coef: dict[str, float], params: Sequence[float], *, x_ref: float | None = None
) -> np.ndarray:
    """Values of a known trend at ``params`` (used to plant truth in tests and perf scripts)."""
    x = np.log10(np.asarray(params, dtype=np.float64))
    return form_values(form, coef, x, float(x.mean()) if x_ref is None else x_ref)


def _const(value: str, n: int) -> Any:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])).cast(pa.string())


def write_synthetic_study(
    root: str | Path,
    *,
    sizes: dict[str, tuple[float, float]] | None = None,
    checkpoints: tuple[str, ...] = ("base", "trained"),
    benchmarks: tuple[str, ...] = ("math500",),
    budgets: tuple[int, ...] = (2048, 4096, 8192, 16384, 32768),
    samples: int = 8,
    problems: int = 100,
    accuracy: Any = None,
    length_median: Any = None,
    problem_spread: float = 0.15,
    train_steps: int = 200,
    seed: int = 0,
    done: bool = True,
    labels: dict[str, str] | None = None,
    variants: dict[str, str] | None = None,
    stages: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> Path:
    """Write a study directory of synthetic records with a *known* truth, in the exact layout
    the jobs write (records.parquet + DONE per benchmark, signals.parquet + DONE per size,
    plan.json). For tests, perf/aggregate_speed.py and demos; nothing here is a result.

    Truth: problem p of size s, checkpoint c is solved with probability
    q = accuracy(params_active, c) + d_p, d_p ~ U(-problem_spread, problem_spread) (so the
    expected accuracy over problems is exactly ``accuracy(...)``) when its response finishes
    within the budget. Full response length ~ lognormal with median ``length_median(params, c)``
    (x1.5 for incorrect responses); a response longer than the budget is truncated: unfinished
    and incorrect. One length per (problem, sample), truncated per budget (the truncation protocol).
    Training signals: length falls exponentially from 2x to 1x the trained median (time constant
    train_steps/8), reward rises, truncation falls.
    ``labels`` / ``variants`` (size -> label / thinking mode) go into plan.json like a family's.
    ``stages`` (size -> {"sft" | "train": {"sft": SftSettings-like dict, "train": TrainSettings-like
    dict, "model_source": ...}}) adds those runs to plan.json with their stage, as a plan writes them.
    """
    root = Path(root)
    sizes = sizes or {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "4b": (4e9, 4e9), "8b": (8e9, 8e9)}
    acc_fn = accuracy or (lambda n, c: 0.25 + 0.15 * np.log10(n / 1e9) + (0.03 if c != "base" else 0.0))
    len_fn = length_median or (lambda n, c: (9000.0 - 1500.0 * np.log10(n / 1e9)) * (0.6 if c != "base" else 1.0))
    # a mapping {size: {checkpoint: value}} plants a value per size (variants that share a size)
    per_size: dict[str, float] = {}
    if isinstance(acc_fn, dict):
        acc_map, acc_fn = acc_fn, (lambda n, c: per_size["acc"][c])  # noqa: E731
    else:
        acc_map = None
    if isinstance(len_fn, dict):
        len_map, len_fn = len_fn, (lambda n, c: per_size["len"][c])  # noqa: E731
    else:
        len_map = None

    def planted(size: str) -> None:
        if acc_map is not None:
            per_size["acc"] = acc_map[size]
        if len_map is not None:
            per_size["len"] = len_map[size]

    rng = np.random.default_rng(seed)
    runs = []
    for size, (total, active) in sizes.items():
        label = (labels or {}).get(size) or size_label(size)
        model = {"family": "synthetic", "size": size, "label": label, "params_total": int(total), "params_active": int(active)}
        if variants and size in variants:
            model["thinking"] = variants[size]
        runs.append({"run_id": f"{size}/train", "size": size, "model": model})
        for stage, fields in ((stages or {}).get(size) or {}).items():
            run = {"run_id": f"{size}/{stage}", "size": size, "stage": stage, "model": model, **fields}
            if stage == "train":
                runs[-1] = run  # the size's train run, now with its settings
            else:
                runs.insert(len(runs) - 1, run)
    atomic_write_text(root / "plan.json", json.dumps({"study": root.name, "runs": runs}, indent=1))
    B = np.array(budgets, dtype=np.int64)
    nb = len(B)
    for bench in benchmarks:
        offsets = rng.uniform(-problem_spread, problem_spread, size=problems)
        pids = pa.array([f"{bench}-{i:04d}" for i in range(problems)])
        for size, (total, active) in sizes.items():
            planted(size)
            for ckpt in checkpoints:
                q = np.clip(acc_fn(active, ckpt) + offsets, 0.0, 1.0)
                rows = problems * samples
                prob = np.repeat(np.arange(problems), samples)
                sample = np.tile(np.arange(samples), problems)
                solved = rng.random(rows) < q[prob]
                med = len_fn(active, ckpt)
                full = np.exp(rng.normal(np.log(med), 0.5, rows)) * np.where(solved, 1.0, 1.5)
                full = np.maximum(full.astype(np.int64), 1)
                # rows ordered (problem, sample, budget)
                full_r, solved_r = np.repeat(full, nb), np.repeat(solved, nb)
                bud = np.tile(B, rows)
                fin = full_r <= bud
                corr = solved_r & fin
                resp = np.minimum(full_r, bud)
                n = rows * nb
                grade = np.where(corr, 0, np.where(fin, 1, 2)).astype(np.int32)
                cols = {
                    "run_id": _const(f"{size}/eval-{ckpt}", n),
                    "model": _const("synthetic", n),
                    "size": _const(size, n),
                    "checkpoint": _const(ckpt, n),
                    "benchmark": _const(bench, n),
                    "problem_id": pa.DictionaryArray.from_arrays(
                        pa.array(np.repeat(prob, nb).astype(np.int32)), pids
                    ).cast(pa.string()),
                    "sample": pa.array(np.repeat(sample, nb)),
                    "budget_tokens": pa.array(bud),
                    "finished": pa.array(fin),
                    "correct": pa.array(corr),
                    "grade": pa.DictionaryArray.from_arrays(
                        pa.array(grade), pa.array(["ok", "wrong", "truncated"])
                    ).cast(pa.string()),
                    "response_tokens": pa.array(resp),
                    "thinking_tokens": pa.array((resp * 9) // 10),
                    "decoded_tokens": pa.array(np.repeat(np.minimum(full, B[-1]), nb)),
                    "answer": _const("", n),
                }
                d = root / size / f"eval-{ckpt}" / bench
                atomic_write_table(d / "records.parquet", to_table(cols, EvalRecord))
                if done:
                    mark_done(d, {"rows": n, "synthetic": True})
    for size, (total, active) in sizes.items():
        if train_steps <= 0 or len(checkpoints) < 2:
            break
        planted(size)
        steps = np.arange(0, train_steps, dtype=np.int64)
        target = len_fn(active, "trained")
        tau = max(train_steps / 8.0, 1.0)
        decay = np.exp(-steps / tau)
        L = target * (1.0 + decay) * (1.0 + rng.normal(0, 0.02, steps.size))
        reward = np.clip(acc_fn(active, "trained") * (0.7 + 0.3 * (1 - decay)) + rng.normal(0, 0.02, steps.size), 0, 1)
        sig = {
            "run_id": [f"{size}/train"] * steps.size,
            "size": [size] * steps.size,
            "step": steps,
            "reward_mean": reward,
            "reward_std": np.full(steps.size, 0.4),
            "accuracy": reward,
            "tokens_mean": L,
            "tokens_median": L * 0.95,
            "tokens_positive_mean": L * 0.8,
            "tokens_negative_mean": L * 1.2,
            "tokens_correct_mean": L * 0.8,
            "tokens_incorrect_mean": L * 1.2,
            "truncated_frac": 0.4 * decay,
            "zero_std_frac": np.full(steps.size, 0.2),
            "entropy": 0.5 + 0.1 * (1 - decay),
            "kl": 0.001 * steps,
        }
        d = root / size / "train"
        cols = {k: v if isinstance(v, list) else v.tolist() for k, v in sig.items()}
        atomic_write_table(d / "signals.parquet", to_table(cols, TrainSignal))
        if done:
            mark_done(d, {"rows": int(steps.size), "synthetic": True})
    return root
