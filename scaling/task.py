"""A seeded synthetic reasoning task for the tiny CPU ladder: multi-step arithmetic word problems.

What it is: "Ann has 7 apples. She gets 5 more. She gives away 3. How many apples does Ann
have now?" -- ``steps`` operations on ``digits``-digit operands, the running total kept
non-negative. The gold answer is an integer that math-verify grades from ``\\boxed{}``.

Why it exists: the method (Art, arXiv 2602.20945) shortens reasoning that is *longer than it
needs to be*. To reproduce that end to end on a laptop we need (1) a task tiny models learn in
minutes and (2) SFT traces that overthink on purpose. Every trace solves the problem step by
step, then adds a random number (0..``max_rechecks``) of redundant re-checks before closing the
thinking block -- the verbosity Paper B (arXiv 2505.07961) observes after SFT distillation. GRPO
with the truncation reward should remove the re-checks and keep the steps.

Splits (all seeded, disjoint by problem text):
  * ``train``  -- ``steps``/``digits`` as given; carries the SFT ``completion`` column.
  * ``test``   -- same distribution, held out.
  * ``ood``    -- harder: ``steps + ood_extra_steps`` operations (does learned brevity transfer?).

Run it:  ``python -m scaling.task --out data/tiny --steps 2 --digits 1``
(writes train.jsonl, test.jsonl, ood.jsonl). Recipes use the URI form instead:
``task://arith?split=test&steps=2&digits=1&n=200&seed=0`` (see :func:`load_task`).

Departs from the papers: they train on DeepScaleR math; this is a stand-in with the same
interface (``id, problem, answer`` rows, ``\\boxed{}`` answers, a ``<think>`` block).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import urllib.parse
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .durable import atomic_write_text
from .errors import RecipeError

TASK_SCHEME = "task://"
SPLITS = ("train", "test", "ood")

_NAMES = (("Ann", "She"), ("Ben", "He"), ("Mia", "She"), ("Tom", "He"), ("Eva", "She"), ("Sam", "He"))
_ITEMS = ("apples", "coins", "books", "cards", "pens", "shells")
_GAIN = ("{p} gets {n} more.", "{p} finds {n} more.", "{p} buys {n} more.")
_LOSS = ("{p} gives away {n}.", "{p} loses {n}.", "{p} sells {n}.")
_RECHECK_OPENERS = ("Wait, let me check again.", "Let me double-check.", "Let me verify once more.")

# split -> offset added to the seed, so the three splits draw from independent streams
_SPLIT_SEED = {"train": 0, "test": 1_000_003, "ood": 2_000_003}


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """The difficulty knobs and sizes of one task instance (every field can be set in a URI).

    steps: operations per problem; digits: digits of each operand (and of the start value);
    max_rechecks: SFT traces repeat the solution 0..max_rechecks extra times (uniform);
    ood_extra_steps: the ``ood`` split uses ``steps + ood_extra_steps`` operations.
    """

    steps: int = 2
    digits: int = 1
    max_rechecks: int = 4
    ood_extra_steps: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name, lo, hi in (("steps", 1, 12), ("digits", 1, 4), ("max_rechecks", 0, 16), ("ood_extra_steps", 0, 8)):
            value = getattr(self, name)
            if not isinstance(value, int) or not lo <= value <= hi:
                raise RecipeError(f"{name}={value!r} must be an integer in [{lo}, {hi}]", key=f"task.{name}")


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One generated problem: its text, the gold answer and the operations that solve it."""

    id: str
    problem: str
    answer: str
    start: int
    ops: tuple[tuple[str, int], ...]  # ("+", 5), ("-", 3), ...
    name: str
    item: str


def _operand(rng: random.Random, digits: int) -> int:
    lo = 1 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(lo, 10**digits - 1)


def make_problem(rng: random.Random, *, steps: int, digits: int, pid: str) -> Problem:
    """Draw one problem; a subtraction is only chosen when the total stays >= 0."""
    name, pronoun = rng.choice(_NAMES)
    item = rng.choice(_ITEMS)
    start = _operand(rng, digits)
    total = start
    ops: list[tuple[str, int]] = []
    sentences = [f"{name} has {start} {item}."]
    for _ in range(steps):
        n = _operand(rng, digits)
        if n <= total and rng.random() < 0.5:
            ops.append(("-", n))
            total -= n
            sentences.append(rng.choice(_LOSS).format(p=pronoun, n=n))
        else:
            ops.append(("+", n))
            total += n
            sentences.append(rng.choice(_GAIN).format(p=pronoun, n=n))
    sentences.append(f"How many {item} does {name} have now?")
    return Problem(
        id=pid, problem=" ".join(sentences), answer=str(total), start=start, ops=tuple(ops), name=name, item=item
    )


def solve_lines(p: Problem) -> list[str]:
    """The step-by-step solution: one line per operation, each a single arithmetic fact."""
    lines = []
    total = p.start
    for op, n in p.ops:
        new = total + n if op == "+" else total - n
        lines.append(f"{total} {op} {n} = {new}.")
        total = new
    return lines


def trace(p: Problem, rechecks: int, rng: random.Random) -> str:
    """The SFT completion: ``<think>`` steps, ``rechecks`` redundant re-checks, ``</think>``, answer.

    >>> p = Problem(id="x", problem="", answer="6", start=3, ops=(("+", 5), ("-", 2)), name="Ann", item="pens")
    >>> print(trace(p, 0, random.Random(0)))
    <think>
    Ann starts with 3.
    3 + 5 = 8.
    8 - 2 = 6.
    So Ann has 6.
    </think>
    <BLANKLINE>
    The answer is \\boxed{6}.
    """
    steps = solve_lines(p)
    out = ["<think>", f"{p.name} starts with {p.start}.", *steps, f"So {p.name} has {p.answer}."]
    for _ in range(rechecks):
        out.append(rng.choice(_RECHECK_OPENERS))
        out.extend(steps)
        out.append(f"Yes, {p.answer}.")
    out.append("</think>")
    return "\n".join(out) + f"\n\nThe answer is \\boxed{{{p.answer}}}."


def generate(split: str, n: int, cfg: TaskConfig = TaskConfig(), *, with_trace: bool | None = None) -> list[dict]:
    """``n`` rows of one split: ``id, problem, answer`` (+ ``completion``, ``rechecks`` for SFT).

    Splits use independent seeded streams; a split never repeats a problem text, and ``test``
    skips every text of the same config's first ``max(n, 2000)`` train problems, so the
    held-out set is disjoint from any train set of that size or smaller.
    """
    if split not in SPLITS:
        raise RecipeError(f"unknown split {split!r}; known: {', '.join(SPLITS)}", key="task.split")
    if n < 1:
        raise RecipeError(f"n={n} must be >= 1", key="task.n")
    steps = cfg.steps + (cfg.ood_extra_steps if split == "ood" else 0)
    exclude: set[str] = set()
    if split == "test":
        exclude = {r["problem"] for r in generate("train", max(n, 2000), cfg, with_trace=False)}
    rng = random.Random(cfg.seed * 7919 + _SPLIT_SEED[split])
    want_trace = split == "train" if with_trace is None else with_trace
    rows: list[dict] = []
    seen: set[str] = set()
    misses = 0  # consecutive duplicates: the space of distinct problems is exhausted
    while len(rows) < n:
        p = make_problem(rng, steps=steps, digits=cfg.digits, pid=f"{split}-{len(rows):06d}")
        if p.problem in seen or p.problem in exclude:
            misses += 1
            if misses > 5000:
                raise RecipeError(
                    f"only {len(rows)} distinct {split} problems found for steps={steps} digits={cfg.digits}; "
                    "lower n or raise steps/digits",
                    key="task.n",
                )
            continue
        misses = 0
        seen.add(p.problem)
        row = {"id": p.id, "problem": p.problem, "answer": p.answer, "steps": steps, "digits": cfg.digits}
        if want_trace:
            # a separate stream per row, so traces never shift the problem stream (train with and
            # without traces holds the same problems, which the test split's exclusion relies on)
            trace_rng = random.Random(f"trace-{cfg.seed}-{split}-{p.id}")
            k = trace_rng.randint(0, cfg.max_rechecks)
            row["rechecks"] = k
            row["completion"] = trace(p, k, trace_rng)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------- task:// URIs
def parse_task_uri(uri: str) -> tuple[str, int, TaskConfig, bool]:
    """``task://arith?split=test&n=200&steps=2&digits=1&seed=0`` -> (split, n, config, trace).

    Unknown parameters are an error that lists the known ones.
    """
    if not uri.startswith(TASK_SCHEME):
        raise RecipeError(f"{uri!r} is not a task URI (expected {TASK_SCHEME}arith?split=...)", key="dataset.source")
    parsed = urllib.parse.urlparse(uri)
    if parsed.netloc != "arith":
        raise RecipeError(f"{uri}: unknown task {parsed.netloc!r}; known: arith", key="dataset.source")
    params = dict(urllib.parse.parse_qsl(parsed.query, strict_parsing=False))
    split = params.pop("split", "train")
    n = params.pop("n", "1000")
    trace_flag = params.pop("trace", "")
    known = {f.name for f in fields(TaskConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise RecipeError(
            f"{uri}: unknown parameter(s) {', '.join(unknown)}; known: split, n, trace, {', '.join(sorted(known))}",
            key="dataset.source",
        )
    try:
        cfg = TaskConfig(**{k: int(v) for k, v in params.items()})
        n_rows = int(n)
    except ValueError as exc:
        raise RecipeError(f"{uri}: parameters must be integers ({exc})", key="dataset.source") from exc
    # the job's rules, here so that `scaling check` refuses what load_task would (one home)
    if split not in SPLITS:
        raise RecipeError(f"{uri}: unknown split {split!r}{_did_you_mean(split, SPLITS)}; use split= one of "
                          f"{', '.join(SPLITS)}", key="dataset.source")
    if n_rows < 1:
        raise RecipeError(f"{uri}: n={n_rows} must be >= 1 (the number of problems); set n= to a positive count",
                          key="dataset.source")
    if trace_flag not in ("", "0", "1", "true", "false", "yes", "no"):
        raise RecipeError(f"{uri}: trace={trace_flag!r} must be 0 or 1", key="dataset.source")
    with_trace = trace_flag in ("1", "true", "yes") or (trace_flag == "" and split == "train")
    return split, n_rows, cfg, with_trace


def _did_you_mean(word: str, known: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def is_task_uri(source: str) -> bool:
    """True when a DatasetSpec.source names a generated task rather than a hub id or a file."""
    return isinstance(source, str) and source.startswith(TASK_SCHEME)


def load_task(uri: str) -> list[dict]:
    """Rows of a ``task://`` URI (the hook ``jobs/data.load_problems`` calls for such sources)."""
    split, n, cfg, with_trace = parse_task_uri(uri)
    return generate(split, n, cfg, with_trace=with_trace)


def task_uri(split: str, n: int, cfg: TaskConfig = TaskConfig()) -> str:
    """The URI that :func:`load_task` turns back into these rows."""
    query = {"split": split, "n": n, **asdict(cfg)}
    return f"{TASK_SCHEME}arith?" + urllib.parse.urlencode(query)


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Write rows as JSON lines atomically (a crash leaves no half file)."""
    target = Path(path)
    atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return target


def write_splits(out_dir: str | Path, cfg: TaskConfig = TaskConfig(), *, n_train: int = 4000,
                 n_test: int = 200, n_ood: int = 200) -> dict[str, Path]:
    """Write ``train.jsonl`` (with traces), ``test.jsonl`` and ``ood.jsonl`` into ``out_dir``."""
    out = Path(out_dir)
    sizes = {"train": n_train, "test": n_test, "ood": n_ood}
    return {s: write_jsonl(out / f"{s}.jsonl", generate(s, sizes[s], cfg)) for s in SPLITS}


def corpus(n: int = 400, cfg: TaskConfig = TaskConfig(max_rechecks=2)) -> list[str]:
    """Sample text (problems + traces) the tiny tokenizer's merges are learned from."""
    rows = generate("train", n, cfg, with_trace=True) + generate("ood", n // 4, cfg, with_trace=True)
    return [r["problem"] + "\n" + r["completion"] for r in rows]


def main(argv: list[str] | None = None) -> int:
    """CLI: write the three splits as JSONL."""
    ap = argparse.ArgumentParser(prog="python -m scaling.task", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    for f in fields(TaskConfig):
        ap.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--n-ood", type=int, default=200)
    args = ap.parse_args(argv)
    cfg = replace(TaskConfig(), **{f.name: getattr(args, f.name) for f in fields(TaskConfig)})
    paths = write_splits(args.out, cfg, n_train=args.n_train, n_test=args.n_test, n_ood=args.n_ood)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
