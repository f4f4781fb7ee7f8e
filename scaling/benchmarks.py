"""The benchmark registry: ``recipes/benchmarks/<name>.yaml`` -> ``BenchmarkSpec``.

    from scaling.benchmarks import load_benchmark, known_benchmarks
    load_benchmark("aime25")          # BenchmarkSpec(source="math-ai/aime25", split="test", ...)
    known_benchmarks()                # ["aime24", "aime25", "amc", ...]

Adding a benchmark is a few lines of YAML (see docs/evaluation.md)::

    # recipes/benchmarks/my_bench.yaml
    source: my-org/my-bench      # hub dataset id
    split: test
    problem_column: question
    answer_column: answer

A local file overrides the hub: ``path: /data/my_bench.jsonl`` in the YAML (relative paths are
resolved against the YAML's folder), or give a ``.jsonl`` / ``.parquet`` / ``.yaml`` path where a
benchmark name is expected. Extra registry folders: ``SCALING_BENCHMARKS_PATH`` (``os.pathsep``
separated). This module is stdlib + yaml only: plan validation imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from .errors import JobError, RecipeError
from .records import DatasetSpec
from .yamlscan import MAX_RECIPE_BYTES, scan_yaml  # the recipe caps: size, aliases, depth, duplicates

__all__ = [
    "BenchmarkSpec",
    "load_benchmark",
    "known_benchmarks",
    "benchmark_dirs",
    "to_dataset_spec",
    "gold_answer",
    "format_choice_problem",
    "DEFAULT_MATH_SUFFIX",
]

DEFAULT_MATH_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."  # Art's suffix
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
GRADERS = ("math", "choice", "code")
CODE_KEYS = ("release", "start_date", "end_date")


@dataclass(frozen=True, kw_only=True)
class BenchmarkSpec:
    """One evaluation dataset: where it lives, which columns hold what, how it is graded.

    Read from ``recipes/benchmarks/<name>.yaml`` by ``load_benchmark``; used by
    ``jobs/evaluate.py`` (loading, prompts, grading) and ``prefetch`` (downloads) and by plan
    validation (names)."""

    name: str
    source: str = ""  # hub dataset id
    path: str = ""  # local .jsonl/.parquet file; overrides source when set
    split: str = "test"
    subset: str | None = None  # hub config name
    problem_column: str = "problem"
    answer_column: str = "answer"
    id_column: str | None = None  # None: the row index
    grader: str = "math"  # math | choice | code
    prompt_suffix: str = DEFAULT_MATH_SUFFIX
    answer_after: str | None = None  # gold = text after the last occurrence (GSM8K: "####")
    correct_column: str | None = None  # choice: column of the correct option text (GPQA)
    incorrect_columns: list[str] = field(default_factory=list)  # choice: the distractors
    max_problems: int | None = None
    release: str | None = None  # code (LiveCodeBench): v1..v6, the cumulative release_vN files
    start_date: str | None = None  # code: first contest_date kept (ISO date, inclusive)
    end_date: str | None = None  # code: contest_date before this (ISO date, exclusive)
    description: str = ""
    citation: str = ""
    file: str = ""  # the YAML it came from ("" for a bare data path)

    @property
    def location(self) -> str:
        """What is loaded: the local path if set, else the hub id."""
        return self.path or self.source


_FIELDS = {f.name for f in dataclasses.fields(BenchmarkSpec)} - {"name", "file"}


def benchmark_dirs() -> list[Path]:
    """Registry folders, in lookup order: ``SCALING_BENCHMARKS_PATH`` entries, then the repo's."""
    dirs = [Path(p) for p in os.environ.get("SCALING_BENCHMARKS_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[1] / "recipes" / "benchmarks")
    return dirs


def known_benchmarks() -> list[str]:
    """Names of every registered benchmark (YAML stems), sorted."""
    names: set[str] = set()
    for d in benchmark_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def load_benchmark(name: str) -> BenchmarkSpec:
    """The spec of a registered benchmark, a benchmark YAML path, or a local data file.

    Raises RecipeError naming the known benchmarks when the name is unknown, and naming the
    file and key when a YAML is malformed."""
    if "://" in name:  # a generated set such as task://arith?split=test (scaling.task)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.split("://", 1)[1]).strip("_.")[:80] or "task"
        if name.startswith("task://code"):  # the tiny code task (scaling.task): graded by running it
            return BenchmarkSpec(name=safe, source=name, split="test", grader="code", prompt_suffix="")
        return BenchmarkSpec(name=safe, source=name, split="test")
    p = Path(name)
    if p.suffix in DATA_SUFFIXES:
        if not p.exists():
            raise RecipeError(f"benchmark file {name} does not exist (give an existing .jsonl/.parquet path)")
        return BenchmarkSpec(name=p.stem, path=str(p.resolve()), split="train")
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise RecipeError(f"benchmark file {name} does not exist")
        return _from_yaml(p.stem, p)
    for d in benchmark_dirs():
        f = d / f"{name}.yaml"
        if f.is_file():
            return _from_yaml(name, f)
    known = ", ".join(known_benchmarks()) or "(none)"
    raise RecipeError(f"unknown benchmark {name!r}; known: {known} (or add recipes/benchmarks/{name}.yaml)")


def _from_yaml(name: str, f: Path) -> BenchmarkSpec:
    try:
        if f.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(f"file is larger than {MAX_RECIPE_BYTES // 1024} KiB; is this the right file?", path=str(f))
        text = f.read_text()
        scan_yaml(text, str(f))
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"not valid YAML: {str(exc).splitlines()[0]}", path=str(f)) from exc
    except ValueError as exc:  # a date-like scalar that is no date (2024-13-01): yaml raises ValueError
        raise RecipeError(f"not valid YAML: {exc} (a YYYY-MM-DD value must be a real date)", path=str(f)) from exc
    if not isinstance(data, dict):
        raise RecipeError("a benchmark file must be a mapping of keys", path=str(f))
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise RecipeError(f"unknown key (known: {', '.join(sorted(_FIELDS))})", path=str(f), key=unknown[0])
    if data.get("grader", "math") not in GRADERS:
        raise RecipeError(f"grader must be one of {', '.join(GRADERS)}, not {data['grader']!r}", path=str(f),
                          key="grader")
    _check_code_keys(data, f)
    if not data.get("source") and not data.get("path"):
        raise RecipeError("set source (hub id) or path (local file)", path=str(f), key="source")
    if data.get("grader") == "choice" and not (data.get("correct_column") and data.get("incorrect_columns")):
        if "answer_column" not in data:
            raise RecipeError(
                "a choice benchmark needs correct_column + incorrect_columns, or an answer_column of letters",
                path=str(f),
                key="correct_column",
            )
    for key in ("incorrect_columns",):
        if key in data and not (isinstance(data[key], list) and all(isinstance(c, str) and c for c in data[key])):
            raise RecipeError("must be a list of column names", path=str(f), key=key)
    # what the job reads as column names and text must be strings (an empty `problem_column:` is
    # None in YAML and used to fail only inside the evaluation job)
    for key in ("problem_column", "answer_column"):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise RecipeError(f"must be a non-empty column name, got {data[key]!r}; remove the key for the "
                              f"default {getattr(BenchmarkSpec, key)!r}", path=str(f), key=key)
    for key in ("id_column", "correct_column", "answer_after", "subset"):
        if data.get(key) is not None and not (isinstance(data[key], (str, int)) and str(data[key]).strip()):
            raise RecipeError(f"must be a non-empty name or null, got {data[key]!r}", path=str(f), key=key)
    for key in ("prompt_suffix", "description", "citation", "path", "source", "split"):
        if key in data and data[key] is not None and not isinstance(data[key], (str, int, float)):
            raise RecipeError(f"must be text, got {type(data[key]).__name__}", path=str(f), key=key)
    if data.get("split") is None and "split" in data:
        raise RecipeError("must be a split name (e.g. test)", path=str(f), key="split")
    mp = data.get("max_problems")
    if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 1):
        raise RecipeError(f"must be a positive integer or null, got {mp!r}", path=str(f), key="max_problems")
    local = data.get("path")
    if local:
        lp = Path(os.path.expandvars(os.path.expanduser(str(local))))
        data["path"] = str(lp if lp.is_absolute() else (f.parent / lp).resolve())
    data = {k: (str(v) if k in ("source", "split", "subset", "id_column", "correct_column", "answer_after",
                                "prompt_suffix", "release", "start_date", "end_date") and v is not None else v)
            for k, v in data.items()}
    if data.get("grader") == "code":
        data.setdefault("prompt_suffix", "")  # LCB's prompt carries its own instructions
    return BenchmarkSpec(name=name, file=str(f), **data)


def _check_code_keys(data: dict, f: Path) -> None:
    """release/start_date/end_date: only for grader code; a known release; ISO dates, start < end."""
    from .codebench import RELEASES, parse_date

    for key in CODE_KEYS:
        if data.get(key) is None:
            continue
        if data.get("grader", "math") != "code":
            raise RecipeError(f"{key} is a code-benchmark key; set grader: code or remove it", path=str(f), key=key)
        if isinstance(data[key], bool) or not isinstance(data[key], (str, int, float, date)):
            raise RecipeError(f"must be text, got {type(data[key]).__name__}", path=str(f), key=key)
    rel = data.get("release")
    if rel is not None and str(rel).removeprefix("release_") not in (*RELEASES, "latest"):
        raise RecipeError(f"unknown LiveCodeBench release {rel!r}; use one of {', '.join(RELEASES)}", path=str(f),
                          key="release")
    if rel is not None:
        data["release"] = str(rel).removeprefix("release_")
    dates = {}
    for key in ("start_date", "end_date"):
        if data.get(key) is not None:
            try:
                dates[key] = parse_date(data[key], key=key)
            except RecipeError:
                raise RecipeError(f"{data[key]!r} is not an ISO date; write YYYY-MM-DD (e.g. 2024-10-01)",
                                  path=str(f), key=key) from None
            data[key] = dates[key].isoformat()
    if len(dates) == 2 and dates["start_date"] >= dates["end_date"]:
        raise RecipeError(f"end_date {dates['end_date']} must be after start_date {dates['start_date']} "
                          "(end is exclusive)", path=str(f), key="end_date")


def to_dataset_spec(spec: BenchmarkSpec, *, max_rows: int | None = None) -> Any:
    """The ``records.DatasetSpec`` that ``jobs.data.load_problems`` reads (local path wins)."""
    limit = max_rows if max_rows is not None else spec.max_problems
    return DatasetSpec(
        source=spec.location,
        split=spec.split,
        subset=spec.subset,
        problem_column=spec.problem_column,
        answer_column=spec.correct_column or spec.answer_column,
        id_column=spec.id_column,
        prompt_suffix=spec.prompt_suffix,
        max_rows=limit,
    )


def gold_answer(value: Any, spec: BenchmarkSpec) -> str:
    """The gold answer as a string: lists joined with ", " (OlympiadBench), text after
    ``answer_after`` (GSM8K's "#### 72"), floats like 142.0 written as 142 (AMC)."""
    if isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = "" if value is None else str(value)
    if spec.answer_after and spec.answer_after in text:
        text = text.rsplit(spec.answer_after, 1)[1]
    return text.strip().replace(",", "") if spec.answer_after else text.strip()


def format_choice_problem(row: dict[str, Any], spec: BenchmarkSpec, *, seed: int, problem_id: str) -> tuple[str, str]:
    """(problem text with lettered options, gold letter) for a choice benchmark.

    The options are shuffled with a stable per-problem seed (sha256 of seed and problem id), so
    every sample and every rerun sees the same order. Rows that already carry a letter answer
    (no ``correct_column``) are returned unchanged."""
    question = str(_get(row, spec.problem_column, "problem")).strip()
    if not spec.correct_column:
        return question, str(_get(row, spec.answer_column, "answer")).strip()
    correct = str(_get(row, spec.correct_column, "answer")).strip()
    options = [correct] + [str(_get(row, c, c)).strip() for c in spec.incorrect_columns]
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(options)
    letters = "ABCDEFGH"[: len(options)]
    lines = [question, ""] + [f"{letters[i]}) {opt}" for i, opt in enumerate(options)]
    return "\n".join(lines), letters[options.index(correct)]


def _get(row: dict[str, Any], key: str, fallback: str) -> Any:
    """A column by its dataset name, or by the name ``load_problems`` renamed it to."""
    if key in row:
        return row[key]
    if fallback in row:
        return row[fallback]
    raise JobError(f"benchmark row has no column {key!r} (columns: {', '.join(sorted(row))}); fix the benchmark YAML")
