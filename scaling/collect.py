"""Study directory -> Arrow tables of evaluation records and training signals.

    from scaling.collect import collect
    study = collect("runs/qwen3-ladder")      # or collect("qwen3-ladder", runs_dir="runs")
    study.records   # pyarrow.Table, EvalRecord columns, one row per (problem, sample, budget)
    study.signals   # pyarrow.Table, TrainSignal columns, one row per logged training step
    study.sizes     # size key -> SizeFacts(params_total, params_active, family, label)

Only outputs whose directory holds a ``DONE`` marker are read (``studydir.is_done``): a job
writes its Parquet file first and the marker last, so an unmarked directory is a job that is
still running, crashed, or was killed, and its rows are never trusted. Skipped directories are
listed in ``StudyRecords.skipped`` so the report can say what is missing.

Every file's ``schema_version`` is checked (``records.check_schema``). Files are read with
pyarrow and concatenated; nothing here builds per-row Python objects. The string columns of the
records table come back *dictionary-encoded* (``dictionary<int32, string>``, one dictionary for
the whole table): decoding 3M repeated strings is the slow part of reading, and metrics.py wants
integer codes anyway. ``records.column("size").cast(pyarrow.string())`` gives plain strings.

Model sizes come from the study's ``plan.json`` (each run's ``model.params_total`` /
``params_active``); a study without a plan falls back to parsing the size key (``8b``,
``30b_a3b``) and says so in ``StudyRecords.notes``.

``write_synthetic_study`` (bottom) writes a study with a known truth in the same layout, for
tests, perf/aggregate_speed.py and demos.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RecordError
from .records import EvalRecord, TrainSignal, arrow_schema, check_schema


@dataclass(frozen=True, kw_only=True)
class SizeFacts:
    """What the aggregator needs to know about one size (from plan.json)."""

    size: str
    label: str
    family: str
    params_total: int
    params_active: int
    # thinking mode of the model (plan.json model.thinking: hybrid | always | none; "" unknown).
    # Sizes of one study with different modes (Qwen3 hybrid vs *-Thinking-2507 vs *-Instruct-2507)
    # are different variants: the report fits each variant's sizes separately.
    variant: str = ""

    def params(self, convention: str = "active") -> int:
        if convention not in ("active", "total"):
            raise ValueError(f"params convention must be 'active' or 'total', not {convention!r}")
        return self.params_active if convention == "active" else self.params_total


@dataclass(frozen=True, kw_only=True)
class StudyRecords:
    """Everything collect() read from one study directory."""

    name: str
    path: Path
    records: Any  # pyarrow.Table with EvalRecord columns
    signals: Any  # pyarrow.Table with TrainSignal columns
    sizes: dict[str, SizeFacts]  # size key -> facts, in plan order
    skipped: list[str] = field(default_factory=list)  # output dirs without DONE (relative paths)
    notes: list[str] = field(default_factory=list)  # fallbacks taken while reading

    def size_order(self, convention: str = "active") -> list[str]:
        """Sizes that have records or signals, ordered by parameters in ``convention`` (active or
        total, the report's ``--params``), then plan order."""
        import pyarrow.compute as pc

        present: set[str] = set()
        for table in (self.records, self.signals):
            if table.num_rows:
                present.update(pc.unique(table.column("size")).to_pylist())
        keys = [s for s in self.sizes if s in present] + sorted(present - set(self.sizes))
        return sorted(keys, key=lambda s: (self.sizes[s].params(convention) if s in self.sizes else 0, keys.index(s)))

    def label(self, size: str) -> str:
        """The one display label of a size (the family's: ``0.6B``, ``30B-A3B-Thinking-2507``)."""
        facts = self.sizes.get(size)
        return facts.label if facts is not None else size_label(size)


def size_label(size: str) -> str:
    """A display label from a size key: ``0_6b`` -> ``0.6B``, ``30b_a3b`` -> ``30B-A3B``,
    ``4b_instruct_2507`` -> ``4B-instruct-2507`` (used when plan.json has no label)."""
    import re

    m = re.match(r"^(\d+)(?:_(\d+))?([kmbt])(?:_a(\d+)(?:_(\d+))?([kmbt]))?(.*)$", size, re.IGNORECASE)
    if not m:
        return size
    num = m[1] + (f".{m[2]}" if m[2] else "") + m[3].upper()
    if m[4]:
        num += "-A" + m[4] + (f".{m[5]}" if m[5] else "") + m[6].upper()
    return num + m[7].replace("_", "-")


def resolve_study_dir(study: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A study given as a directory path, or as a name under ``runs_dir``."""
    p = Path(study)
    if p.is_dir():
        return p
    q = Path(runs_dir) / str(study)
    if q.is_dir():
        return q
    raise RecordError(f"study {study!s}: no such directory (looked at {p} and {q}); give a study path or --runs-dir")


def _is_done(d: Path) -> bool:
    from .studydir import is_done

    return bool(is_done(d))


def _read(path: Path, cls: type, columns: list[str], *, dictionary: bool) -> Any:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except Exception as err:  # pyarrow raises ArrowInvalid/OSError for a corrupt file
        raise RecordError(f"{path}: cannot read Parquet ({err}); rerun the job that wrote it") from err
    check_schema(schema.metadata, cls, str(path))
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise RecordError(f"{path}: missing columns {missing}; rerun the job with this version of scaling")
    if dictionary:
        strings = [f.name for f in schema if f.name in columns and str(f.type) == "string"]
        pf = pq.ParquetFile(path, read_dictionary=strings)
    from .records import check_column_types

    return check_column_types(pf.read(columns=columns), cls, str(path))


def _target_schema(cls: type, dictionary: bool) -> Any:
    import pyarrow as pa

    schema = arrow_schema(cls)
    if not dictionary:
        return schema
    fields = [pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.type == pa.string() else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def _concat(tables: list[Any], cls: type, dictionary: bool = False, columns: list[str] | None = None) -> Any:
    import pyarrow as pa

    schema = _target_schema(cls, dictionary)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    if not tables:
        return schema.empty_table()
    plain = schema.remove_metadata()
    cast = [t.replace_schema_metadata(None) for t in tables]
    cast = [t if t.schema.equals(plain) else t.cast(plain) for t in cast]
    out = pa.concat_tables(cast)
    if dictionary:
        out = out.unify_dictionaries()
    return out.replace_schema_metadata(schema.metadata)


def size_facts_from_plan(plan_path: Path) -> dict[str, SizeFacts]:
    """size -> SizeFacts from a plan.json (runs[].size and runs[].model.params_*)."""
    try:
        data = json.loads(plan_path.read_text())
    except (OSError, ValueError) as err:
        raise RecordError(f"{plan_path}: cannot read the plan ({err}); relaunch or restore plan.json") from err
    out: dict[str, SizeFacts] = {}
    for run in data.get("runs", []) if isinstance(data, dict) else []:
        model = run.get("model") or {}
        size = run.get("size") or model.get("size") or str(run.get("run_id", "")).split("/")[0]
        if not size or size in out:
            continue
        total, active = model.get("params_total"), model.get("params_active")
        if not total:
            raise RecordError(f"{plan_path}: runs[{run.get('run_id')}].model.params_total is missing; re-plan the study")
        out[size] = SizeFacts(
            size=size,
            label=str(model.get("label") or size),
            family=str(model.get("family") or ""),
            params_total=int(total),
            params_active=int(active or total),
            variant=str(model.get("thinking") or ""),
        )
    return out


def collect(
    study: str | Path,
    *,
    runs_dir: str | Path = "runs",
    columns: list[str] | tuple[str, ...] | None = None,
    progress: bool = False,
) -> StudyRecords:
    """Read every marked records/signals file of a study (see module docstring).
    ``columns`` restricts the EvalRecord columns read (metrics.METRIC_COLUMNS is what
    compute_metrics needs); default: all of them."""
    root = resolve_study_dir(study, runs_dir)
    eval_cols = [f.name for f in arrow_schema(EvalRecord)]
    if columns is not None:
        unknown = [c for c in columns if c not in eval_cols]
        if unknown:
            raise ValueError(f"unknown EvalRecord columns {unknown}; known: {eval_cols}")
        eval_cols = [c for c in eval_cols if c in columns]
    sig_cols = [f.name for f in arrow_schema(TrainSignal)]
    skipped: list[str] = []
    notes: list[str] = []
    rec_tables, sig_tables = [], []
    rec_files = sorted(root.glob("*/eval-*/*/records.parquet"))
    for i, f in enumerate(rec_files):
        if not _is_done(f.parent):
            skipped.append(str(f.parent.relative_to(root)))
            continue
        rec_tables.append(_read(f, EvalRecord, eval_cols, dictionary=True))
        if progress and (i + 1) % 20 == 0:
            print(f"collect: {root.name}: read {i + 1}/{len(rec_files)} records files", file=sys.stderr)
    for f in sorted(root.glob("*/train/signals.parquet")):
        if not _is_done(f.parent):
            skipped.append(str(f.parent.relative_to(root)))
            continue
        sig_tables.append(_read(f, TrainSignal, sig_cols, dictionary=False))
    # job dirs with a run.yaml but no output at all are missing too
    for d in sorted(root.glob("*/eval-*")) + sorted(root.glob("*/train")):
        if d.is_dir() and not any(d.glob("*/records.parquet")) and not (d / "signals.parquet").exists():
            skipped.append(str(d.relative_to(root)))
    plan_path = root / "plan.json"
    if plan_path.is_file():
        sizes = size_facts_from_plan(plan_path)
    else:
        sizes = {}
        notes.append(f"{plan_path} not found: parameter counts parsed from size keys")
    records = _concat(rec_tables, EvalRecord, dictionary=True, columns=eval_cols)
    signals = _concat(sig_tables, TrainSignal)
    import pyarrow.compute as pc

    seen = set()
    for t in (records, signals):
        if t.num_rows:
            seen.update(pc.unique(t.column("size")).to_pylist())
    for s in sorted(seen - set(sizes)):
        from .fit import parse_size

        try:
            total = parse_size(s, "total")
            active = parse_size(s, "active")
        except ValueError as err:
            raise RecordError(
                f"{root}: size {s!r} has records but no entry in plan.json and its key is not a size "
                "like 8b or 30b_a3b; restore plan.json"
            ) from err
        sizes[s] = SizeFacts(size=s, label=size_label(s), family="", params_total=total, params_active=active)
        if plan_path.is_file():
            notes.append(f"size {s} not in plan.json: parameter count parsed from its key")
    if progress:
        print(
            f"collect: {root.name}: {records.num_rows} eval rows from {len(rec_tables)} files, "
            f"{signals.num_rows} training steps, {len(skipped)} unfinished outputs skipped",
            file=sys.stderr,
        )
    return StudyRecords(
        name=root.name, path=root, records=records, signals=signals, sizes=sizes, skipped=skipped, notes=notes
    )


# ------------------------------------------------------------------- synthetic studies
def _mark_done(d: Path, info: dict[str, Any]) -> None:
    from .studydir import mark_done

    mark_done(d, info)


def _const(value: str, n: int) -> Any:
    import numpy as np
    import pyarrow as pa

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
    """
    import numpy as np
    import pyarrow as pa

    from .records import to_table
    from .studydir import atomic_write_table, atomic_write_text

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
                    _mark_done(d, {"rows": n, "synthetic": True})
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
            _mark_done(d, {"rows": int(steps.size), "synthetic": True})
    return root
