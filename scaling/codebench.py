"""Code benchmarks: LiveCodeBench ``code_generation_lite`` rows read straight from their files.

    from scaling.codebench import load_lcb, code_problems
    rows = load_lcb("/data/lcb", release="v5", start_date="2024-10-01", end_date="2025-02-01")
    for p in code_problems(spec): p.id, p.system, p.user, p.gold     # gold: JSON for scaling.codegrade

Why not ``datasets.load_dataset("livecodebench/code_generation_lite")``: the dataset is a loading
script, which ``datasets>=4`` no longer runs (LiveCodeBench#108, lighteval#1009). Its data are
plain JSONL files (``test.jsonl`` .. ``test6.jsonl``), so this module reads them (or parquet
exports of them) itself. Standard library only (pyarrow inside ``_read_parquet``).

Private tests are ``base64(zlib(pickle(json string)))``. The anchors call ``pickle.loads`` on
them, which runs whatever the pickle says; here they go through :class:`StrOnlyUnpickler`, which
resolves no global at all (so no ``os.system`` reduce can run) and must yield a ``str``, which is
then ``json.loads``-ed.

Sources (read 2026-12-08):
  * release files: the dataset's loading script ``code_generation_lite.py`` maps
    ``release_vN`` to the cumulative files ``test.jsonl, test2.jsonl, .., testN.jsonl`` and ``vN``
    to ``testN.jsonl`` alone; NVIDIA NeMo Evaluator's LCB page: release_v5 = "problems released
    between May 2023 and Jan 2025 containing 880 problems".
  * windows: the Qwen3 technical report evaluates LCB v5 on 2024.10-2025.02; the Qwen3-2507 model
    cards use v6 on 2025.02-2025.05 (issue 24). ``start_date`` is inclusive, ``end_date`` exclusive,
    on ``contest_date`` (LCB's runner filters ``start_date <= contest_date`` / ``contest_date <= end``
    on datetimes; a date at 00:00 makes the two readings agree for date-only values).
  * prompt: ``lcb_runner/prompts/code_generation.py`` (``PromptConstants.SYSTEM_MESSAGE_GENERIC``,
    ``FORMATTING_MESSAGE_WITH_STARTER_CODE``, ``FORMATTING_WITHOUT_STARTER_CODE``,
    ``get_generic_question_template_answer``).
  * tests: ``lcb_runner/benchmarks/code_generation.py`` (public + private tests, ``metadata.func_name``,
    functional vs stdin); per-test timeout 6 s (``lcb_runner`` ``--timeout 6``).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .errors import JobError, RecipeError

__all__ = [
    "LCB_SOURCE", "RELEASES", "WINDOWS", "TEST_TIMEOUT_S", "SYSTEM_MESSAGE", "FORMAT_WITH_STARTER",
    "FORMAT_WITHOUT_STARTER", "CodeProblem", "StrOnlyUnpickler", "decode_private_tests", "release_files",
    "read_rows", "in_window", "load_lcb", "lcb_prompt", "lcb_gold", "code_problems", "parse_date", "window_text",
]

LCB_SOURCE = "livecodebench/code_generation_lite"
RELEASES = ("v1", "v2", "v3", "v4", "v5", "v6")
# the windows issue 24 names (Qwen3 report: v5; Qwen3-2507 cards: v6); start inclusive, end exclusive
WINDOWS = {"v5": ("2024-10-01", "2025-02-01"), "v6": ("2025-02-01", "2025-05-01")}
TEST_TIMEOUT_S = 6.0  # LCB's per-test timeout
MAX_PRIVATE_BYTES = 1 << 30  # a decompressed private-test blob above this is refused (zip bomb)

SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests."
)
FORMAT_WITH_STARTER = (
    "You will use the following starter code to write the solution to the problem and enclose your code "
    "within delimiters."
)
FORMAT_WITHOUT_STARTER = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, "
    "it reads the inputs, runs the algorithm and writes output to STDOUT."
)


@dataclass(frozen=True)
class CodeProblem:
    """One code problem as the evaluation job needs it."""

    id: str
    user: str  # the user turn
    system: str | None  # the system turn (LCB's generic message), None for the tiny task
    gold: str  # JSON: {"kind", "fn_name", "tests": [{"input", "output"}], "time_limit_s"}


# ------------------------------------------------------------------------ private tests
class StrOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves no global: a pickle that names any class or function (the only
    way a pickle can call code, e.g. ``os.system`` through REDUCE) is refused before it runs."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        raise pickle.UnpicklingError(f"global {module}.{name} refused (only a pickled str is allowed)")

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise pickle.UnpicklingError("persistent ids refused")


def decode_private_tests(blob: Any, *, where: str = "private_test_cases") -> list[dict]:
    """LCB's private tests: plain JSON, else ``base64(zlib(pickle(json string)))`` (LCB tries the
    two in that order). Raises JobError (one line, naming ``where``) for anything else, including
    a pickle that is not a bare string."""
    if isinstance(blob, list):
        return blob
    if blob is None or blob == "":
        return []
    text = blob.decode() if isinstance(blob, bytes) else str(blob)
    try:
        tests = json.loads(text)
    except ValueError:
        try:
            raw = base64.b64decode(text.encode("utf-8"), validate=False)
            d = zlib.decompressobj()
            data = d.decompress(raw, MAX_PRIVATE_BYTES)
            if d.unconsumed_tail:
                raise JobError(f"{where}: decompressed tests exceed {MAX_PRIVATE_BYTES >> 20} MiB; refused")
            value = StrOnlyUnpickler(io.BytesIO(data)).load()
        except JobError:
            raise
        except pickle.UnpicklingError as exc:
            raise JobError(f"{where}: unsafe pickle refused ({exc}); the file is not LCB's format") from exc
        except Exception as exc:  # binascii / zlib / truncated pickle
            raise JobError(f"{where}: cannot decode ({type(exc).__name__}: {exc}); expected base64(zlib(pickle(json)))") from exc
        if not isinstance(value, str):
            raise JobError(f"{where}: the pickle holds a {type(value).__name__}, not a JSON string; refused")
        try:
            tests = json.loads(value)
        except ValueError as exc:
            raise JobError(f"{where}: the unpickled text is not JSON ({exc})") from exc
    if not isinstance(tests, list):
        raise JobError(f"{where}: tests must be a JSON list, got {type(tests).__name__}")
    return tests


# ------------------------------------------------------------------------------ reading
def release_files(release: str) -> list[str]:
    """The JSONL files of a release: ``v5`` (= ``release_v5``) is cumulative, test.jsonl..test5.jsonl."""
    r = str(release).removeprefix("release_")
    if r == "latest":
        r = RELEASES[-1]
    if r not in RELEASES:
        raise RecipeError(f"unknown LiveCodeBench release {release!r}; known: {', '.join(RELEASES)}", key="release")
    n = RELEASES.index(r) + 1
    return ["test.jsonl"] + [f"test{i}.jsonl" for i in range(2, n + 1)]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise JobError(f"{path}:{lineno}: not a JSON line ({exc})") from exc
    return rows


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_rows(location: str | Path, *, release: str | None = None) -> list[dict]:
    """Rows of a local LCB copy: one .jsonl/.parquet file, or a folder holding the release's
    ``test*.jsonl`` files (the hub repo's layout; ``release`` picks them, default every file)."""
    p = Path(location).expanduser()
    if p.is_dir():
        if release:
            files = [p / f for f in release_files(release)]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise JobError(f"{p}: release {release} needs {', '.join(missing)}; run `scaling prefetch` or copy them")
        else:
            files = sorted(p.glob("test*.jsonl")) or sorted(p.glob("*.parquet"))
            if not files:
                raise JobError(f"{p}: no test*.jsonl or .parquet files")
    elif p.is_file():
        files = [p]
    else:
        raise JobError(f"LiveCodeBench data {p} does not exist; give a file, a folder of test*.jsonl, or the hub id")
    rows: list[dict] = []
    for f in files:
        rows.extend(_read_parquet(f) if f.suffix == ".parquet" else _read_jsonl(f))
    return rows


def _hub_files(release: str | None) -> Path:
    """The release's JSONL files from the hub (or the local HF cache), as one folder."""
    from huggingface_hub import hf_hub_download

    folder: Path | None = None
    for name in release_files(release or RELEASES[-1]):
        try:
            local = Path(hf_hub_download(LCB_SOURCE, name, repo_type="dataset"))
        except Exception as exc:  # offline, missing file, auth: one line
            raise JobError(f"cannot get {LCB_SOURCE}/{name} ({type(exc).__name__}); run `scaling prefetch RECIPE` "
                           "where there is internet, or set path: to a local copy") from exc
        folder = local.parent
    assert folder is not None
    return folder


def parse_date(value: Any, *, key: str = "start_date") -> date:
    """An ISO date (``2024-10-01``; a datetime is cut to its date)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError as exc:
        raise RecipeError(f"{value!r} is not an ISO date; write YYYY-MM-DD", key=key) from exc


def in_window(row: dict, start: date | None, end: date | None) -> bool:
    """``start <= contest_date < end`` (either bound may be None)."""
    d = parse_date(row.get("contest_date"), key="contest_date")
    return (start is None or d >= start) and (end is None or d < end)


def load_lcb(location: str, *, release: str | None = None, start_date: Any = None, end_date: Any = None,
             max_problems: int | None = None) -> list[dict]:
    """LCB rows of ``location`` (a local file/folder, or the hub id) in the date window, in file order."""
    where = Path(location).expanduser()
    if not where.exists() and location == LCB_SOURCE:
        where = _hub_files(release)
    rows = read_rows(where, release=release if where.is_dir() else None)
    start = parse_date(start_date) if start_date else None
    end = parse_date(end_date, key="end_date") if end_date else None
    rows = [r for r in rows if in_window(r, start, end)]
    return rows[:max_problems] if max_problems else rows


# ------------------------------------------------------------------------ prompts, golds
def lcb_prompt(row: dict) -> str:
    """LCB's user turn (``get_generic_question_template_answer``)."""
    text = f"### Question:\n{row['question_content']}\n\n"
    starter = row.get("starter_code") or ""
    if starter:
        text += f"### Format: {FORMAT_WITH_STARTER}\n```python\n{starter}\n```\n\n"
    else:
        text += f"### Format: {FORMAT_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return text + "### Answer: (use the provided format with backticks)\n\n"


def _metadata(row: dict) -> dict:
    meta = row.get("metadata") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except ValueError as exc:
            raise JobError(f"LCB row {row.get('question_id')}: metadata is not JSON ({exc})") from exc
    return meta if isinstance(meta, dict) else {}


def lcb_gold(row: dict) -> str:
    """The gold JSON scaling.codegrade grades against: public then private tests, LCB's kind."""
    qid = row.get("question_id", "?")
    public = row.get("public_test_cases") or []
    if isinstance(public, str):
        try:
            public = json.loads(public) if public.strip() else []
        except ValueError as exc:
            raise JobError(f"LCB row {qid}: public_test_cases is not JSON ({exc})") from exc
    private = decode_private_tests(row.get("private_test_cases"), where=f"LCB row {qid}: private_test_cases")
    tests = list(public) + list(private)
    fn_name = _metadata(row).get("func_name") or None
    functional = bool(fn_name) or any(t.get("testtype") == "functional" for t in tests)
    return json.dumps({
        "kind": "functional" if functional else "stdin",
        "fn_name": fn_name,
        "tests": [{"input": str(t["input"]), "output": str(t["output"])} for t in tests],
        "time_limit_s": TEST_TIMEOUT_S,
    })


def code_problems(spec: Any, *, max_problems: int | None = None) -> list[CodeProblem]:
    """The problems of a ``grader: code`` BenchmarkSpec: a ``task://code`` set (prompt = the problem
    text + the spec's suffix, gold = its ``answer`` JSON) or LiveCodeBench rows (LCB's prompt)."""
    from .task import is_task_uri, load_task

    limit = max_problems if max_problems is not None else spec.max_problems
    if is_task_uri(spec.location):
        rows = load_task(spec.location)[: limit or None]
        suffix = (spec.prompt_suffix or "").strip()
        return [CodeProblem(str(r["id"]), f"{r['problem'].rstrip()} {suffix}".strip(), None, r["answer"]) for r in rows]
    rows = load_lcb(spec.location, release=spec.release, start_date=spec.start_date, end_date=spec.end_date,
                    max_problems=limit)
    if not rows:
        raise JobError(f"benchmark {spec.name}: no LiveCodeBench problem in {spec.location} for release "
                       f"{spec.release} between {spec.start_date} and {spec.end_date}; widen the window")
    return [CodeProblem(str(r.get("question_id") or i), lcb_prompt(r), SYSTEM_MESSAGE, lcb_gold(r))
            for i, r in enumerate(rows)]


def window_text(spec: Any) -> str:
    """``LCB v5, 2024-10-01..2025-02-01`` for the plan and the report ("" for non-code benchmarks)."""
    if getattr(spec, "grader", "") != "code" or not (spec.release or spec.start_date or spec.end_date):
        return ""
    parts = [f"release {spec.release}"] if spec.release else []
    if spec.start_date or spec.end_date:
        parts.append(f"{spec.start_date or '…'}..{spec.end_date or '…'} (contest_date)")
    return ", ".join(parts)
