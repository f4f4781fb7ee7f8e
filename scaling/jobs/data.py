"""Training/evaluation prompts: load problems from a hub id, a local JSONL/Parquet file, or a
generated ``task://`` set, and render them with the model's chat template.

``load_problems(spec)`` returns dicts with ``id``, ``problem``, ``answer`` (+ every other column),
mapped from ``spec.problem_column`` / ``answer_column`` / ``id_column`` (recipe keys under
``train.dataset``). ``build_prompt`` applies the chat template as a single user turn with the
method's suffix (Art: "Let's think step by step and output the final answer within \\boxed{}.")
and Qwen3's ``enable_thinking`` switch.

Run it to inspect a dataset spec:  ``python -m scaling.jobs.data SOURCE [--split train] [-n 3]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import JobError, RecipeError
from ..records import DatasetSpec
from ..task import is_task_uri, load_task, parse_task_uri

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def source_problem(source: str) -> str | None:
    """What a job refuses about a dataset source before loading anything, as one message without
    the key (None: it may load). The one home of the rule: ``_load_rows`` raises it, and
    ``scaling check`` (validate.check_size) refuses the recipe with it. A ``task://`` URI must parse
    (``task.parse_task_uri``: known parameters, split, n >= 1); a local path (a .jsonl/.json/.parquet
    name, or anything that exists) must be a file of a known format. A relative path is read from
    the working directory, which a job shares with the command that launched it. Hub ids are checked
    only by loading them (no network here)."""
    if not source:
        return "is empty; set it to a hub id, a .jsonl/.parquet path or a task:// URI"
    if is_task_uri(source):
        try:
            parse_task_uri(source)
        except RecipeError as err:
            return err.reason
        return None
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if suffix in LOCAL_FORMATS or path.exists():
        if not path.is_file():
            return (f"{path} does not exist (a local file must be .jsonl or .parquet; a relative path is read "
                    f"from the directory you launch from, here {Path.cwd()}); give an existing file, a hub id "
                    "or a task:// URI")
        if suffix not in LOCAL_FORMATS:
            return f"{path}: unknown format {suffix!r}; use .jsonl or .parquet"
    return None


def _load_rows(spec: DatasetSpec) -> list[dict[str, Any]]:
    """Raw rows of ``spec.source`` (no column mapping yet)."""
    source = spec.source
    problem = source_problem(source)
    if problem is not None:
        raise JobError(f"dataset.source: {problem}")
    if is_task_uri(source):
        return load_task(source)
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    import datasets

    if suffix in LOCAL_FORMATS or path.exists():
        ds = datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=str(path), split="train")
    else:
        try:
            ds = datasets.load_dataset(source, spec.subset, split=spec.split)
        except Exception as exc:  # datasets raises many kinds; the user needs one line
            raise JobError(
                f"dataset.source: cannot load hub dataset {source!r} (subset={spec.subset!r}, split={spec.split!r}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                "check the id/split, or run `scaling prefetch RECIPE` (your recipe) where there is internet"
            ) from exc
    return [dict(r) for r in ds]


def load_problems(spec: DatasetSpec) -> list[dict[str, Any]]:
    """Rows with ``id``, ``problem``, ``answer`` (strings) plus the source's other columns.

    Missing columns raise a JobError naming the recipe key and the columns that exist.
    Without ``id_column`` the id is the row index (stable for a fixed source). ``max_rows`` keeps
    the first rows.
    """
    if spec.max_rows is not None and spec.max_rows < 1:  # rows[:-5] would silently drop the last five
        raise JobError(f"dataset.max_rows: must be >= 1 or null (every row), got {spec.max_rows}")
    rows = _load_rows(spec)
    if spec.max_rows is not None:
        rows = rows[: spec.max_rows]
    if not rows:
        raise JobError(f"dataset.source: {spec.source!r} has no rows (split={spec.split!r})")
    cols = set(rows[0])
    for key, col in (("problem_column", spec.problem_column), ("answer_column", spec.answer_column)):
        if col not in cols:
            raise JobError(
                f"dataset.{key}: column {col!r} not in {spec.source!r}; columns are {', '.join(sorted(cols))}"
            )
    if spec.id_column is not None and spec.id_column not in cols:
        raise JobError(
            f"dataset.id_column: column {spec.id_column!r} not in {spec.source!r}; columns are {', '.join(sorted(cols))}"
        )
    out = []
    for i, r in enumerate(rows):
        row = dict(r)
        row["problem"] = str(r[spec.problem_column])
        row["answer"] = str(r[spec.answer_column])
        row["id"] = str(r[spec.id_column]) if spec.id_column is not None else str(r.get("id", i))
        out.append(row)
    return out


def build_prompt(tokenizer: Any, problem: str, *, suffix: str, enable_thinking: bool, system: str | None = None) -> str:
    """The chat-template string of one single-turn problem (generation prompt appended).

    ``enable_thinking`` is Qwen3's switch (False inserts an empty thinking block); templates that
    do not know it ignore the extra variable. ``system`` adds a system turn first (LiveCodeBench's
    generic message, scaling.codebench). A tokenizer without a chat template is an error.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise JobError(
            f"tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "use a chat/instruct checkpoint or set one in its tokenizer_config.json"
        )
    content = f"{problem.rstrip()} {suffix.strip()}".strip() if suffix else problem
    messages = [{"role": "user", "content": content}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=enable_thinking,
    )


def repair_jsonl(path: str | Path) -> int:
    """Cut a torn last line (a crash mid-append) so the next append starts on a fresh line.

    Returns the number of bytes removed. Jobs that log progress as JSONL call it before appending.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
    return len(data) - keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaling.jobs.data", description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--split", default="train")
    parser.add_argument("--problem-column", default="problem")
    parser.add_argument("--answer-column", default="answer")
    parser.add_argument("-n", type=int, default=3)
    args = parser.parse_args(argv)
    spec = DatasetSpec(
        source=args.source, split=args.split, problem_column=args.problem_column, answer_column=args.answer_column
    )
    rows = load_problems(spec)
    print(f"{len(rows)} rows; columns: {', '.join(sorted(rows[0]))}")
    for r in rows[: args.n]:
        print(f"[{r['id']}] {r['problem'][:200]!r} -> {r['answer']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
