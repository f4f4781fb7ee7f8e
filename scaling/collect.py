"""Study directory -> Arrow tables of evaluation records and training signals.

    from scaling.collect import collect
    study = collect("runs/qwen3-ladder")      # or collect("qwen3-ladder", runs_dir="runs")
    study.records   # pyarrow.Table, EvalRecord columns, one row per (problem, sample, budget)
    study.signals   # pyarrow.Table, TrainSignal columns, one row per logged training step
    study.sizes     # size key -> SizeFacts(params_total, params_active, family, label)

Only outputs whose directory holds a ``DONE`` marker are read (``durable.is_done``): a job
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

``tests/synthetic.py`` (``write_synthetic_study``) writes a study with a known truth in the same
layout, for tests and perf/aggregate_speed.py.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .durable import is_done
from .errors import RecordError
from .records import EvalRecord, TrainSignal, arrow_schema, check_column_types, check_schema
from .sizes import parse_size, size_label


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
    # size key -> stage (sft | train) -> that run of plan.json (model_source, sft, train): what each arm is
    stages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # size key -> {"max_steps": int, "select_step": {benchmark, metric, budget} | None}: evaluation
    # along training (scaling/schedule.py), from plan.json; {} for a study without a schedule
    along: dict[str, dict[str, Any]] = field(default_factory=dict)

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


def stages_from_plan(plan_path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """size -> {"sft" | "train": {"model_source", "sft", "train"}} from a plan.json: the runs that
    make the base and trained arms (the report's header says what each arm is). An unreadable
    plan gives {} (size_facts_from_plan has already said why)."""
    try:
        data = json.loads(plan_path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for run in data.get("runs", []) if isinstance(data, dict) else []:
        stage, size = run.get("stage"), run.get("size")
        if stage in ("sft", "train") and size:
            out.setdefault(size, {})[stage] = {k: run.get(k) for k in ("model_source", "sft", "train")}
        elif size:
            out.setdefault(size, {}).setdefault("", {"model_source": run.get("model_source")})
    return out


def along_from_plan(plan_path: Path) -> dict[str, dict[str, Any]]:
    """size -> {"max_steps", "select_step"} for the sizes whose plan evaluates intermediate steps
    (an eval run with checkpoint step-N); an unreadable plan gives {}."""
    try:
        data = json.loads(plan_path.read_text())
    except (OSError, ValueError):
        return {}
    runs = data.get("runs", []) if isinstance(data, dict) else []
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.get("stage") == "eval" and str(run.get("checkpoint", "")).startswith("step-") and run.get("size"):
            out.setdefault(run["size"], {"select_step": (run.get("eval") or {}).get("select_step"), "max_steps": 0})
    for run in runs:
        if run.get("stage") == "train" and run.get("size") in out:
            out[run["size"]]["max_steps"] = int((run.get("train") or {}).get("max_steps") or 0)
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
        name=root.name, path=root, records=records, signals=signals, sizes=sizes, skipped=skipped, notes=notes,
        stages=stages_from_plan(plan_path) if plan_path.is_file() else {},
        along=along_from_plan(plan_path) if plan_path.is_file() else {},
    )
