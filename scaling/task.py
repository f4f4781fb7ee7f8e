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
TASKS = ("arith", "code")  # code: "write a Python function" problems (generate_code)
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


# ------------------------------------------------------------------------------- the code task
# "Write a Python function f(x) that adds 7 to x, then subtracts 3. Return the result." -- the
# same operations as arith, asked as a function and graded by running hidden tests (functional
# kind, scaling.codegrade). For the tiny ladder's cross-domain check (issue 24): trained on math,
# does the length change carry over to code? No LiveCodeBench problem is shipped.
CODE_FN = "f"
CODE_TESTS = 5  # hidden tests per problem
CODE_TIME_LIMIT_S = 6.0  # LCB's per-test limit (scaling.codebench.TEST_TIMEOUT_S)


def code_expression(p: Problem) -> str:
    """``x + 7 - 3``: the body of the function."""
    return "x" + "".join(f" {op} {n}" for op, n in p.ops)


def make_code_problem(rng: random.Random, *, steps: int, digits: int, pid: str) -> tuple[Problem, list[int]]:
    """One function-writing problem and its hidden test inputs (distinct integers, some negative)."""
    ops = tuple((rng.choice("+-"), _operand(rng, digits)) for _ in range(steps))
    parts = []
    for k, (op, n) in enumerate(ops):
        if k == 0:
            parts.append(f"adds {n} to x" if op == "+" else f"subtracts {n} from x")
        else:
            parts.append(f"then adds {n}" if op == "+" else f"then subtracts {n}")
    text = f"Write a Python function {CODE_FN}(x) that {', '.join(parts)}. Return the result."
    xs = rng.sample(range(-10 ** digits * 3, 10 ** digits * 3 + 1), CODE_TESTS)
    p = Problem(id=pid, problem=text, answer="", start=0, ops=ops, name=CODE_FN, item="x")
    return p, xs


def _apply(p: Problem, x: int) -> int:
    for op, n in p.ops:
        x = x + n if op == "+" else x - n
    return x


def code_gold(p: Problem, xs: list[int]) -> str:
    """The gold JSON scaling.codegrade grades against (functional kind, LCB's conventions)."""
    tests = [{"input": json.dumps(x), "output": json.dumps(_apply(p, x))} for x in xs]
    return json.dumps({"kind": "functional", "fn_name": CODE_FN, "tests": tests, "time_limit_s": CODE_TIME_LIMIT_S})


def code_trace(p: Problem, rechecks: int, rng: random.Random) -> str:
    """The SFT completion: build the expression step by step, ``rechecks`` checks on an example,
    ``</think>``, then the solution in a ```python fence.

    >>> p = Problem(id="x", problem="", answer="", start=0, ops=(("+", 7), ("-", 3)), name="f", item="x")
    >>> print(code_trace(p, 0, random.Random(0)))
    <think>
    f(x) starts from x.
    Add 7: x + 7.
    Subtract 3: x + 7 - 3.
    So f(x) = x + 7 - 3.
    </think>
    <BLANKLINE>
    ```python
    def f(x):
        return x + 7 - 3
    ```
    """
    out = ["<think>", f"{CODE_FN}(x) starts from x."]
    expr = "x"
    for op, n in p.ops:
        expr += f" {op} {n}"
        out.append(f"{'Add' if op == '+' else 'Subtract'} {n}: {expr}.")
    out.append(f"So {CODE_FN}(x) = {expr}.")
    for _ in range(rechecks):
        x = rng.randint(1, 9)
        out.append(rng.choice(_RECHECK_OPENERS))
        total, line = x, []
        for op, n in p.ops:
            new = total + n if op == "+" else total - n
            line.append(f"{total} {op} {n} = {new}.")
            total = new
        out.append(f"Try x = {x}: " + " ".join(line))
        out.append(f"Yes, {CODE_FN}({x}) = {total}.")
    out.append("</think>")
    return "\n".join(out) + f"\n\n```python\ndef {CODE_FN}(x):\n    return {expr}\n```"


def _code_held_out(ops: tuple[tuple[str, int], ...]) -> bool:
    """True for the quarter of functions the code task's test split owns (stable across versions)."""
    import hashlib

    return hashlib.sha256(repr(ops).encode()).digest()[0] % 4 == 0


def generate_code(split: str, n: int, cfg: TaskConfig = TaskConfig(), *, with_trace: bool | None = None) -> list[dict]:
    """``n`` code-task rows: ``id, problem, answer`` (the gold JSON), ``steps, digits`` (+
    ``completion, rechecks`` for SFT) -- the arith rows' columns; ids start with ``code-``.
    ``test`` holds only functions ``train`` never draws; ``ood`` has ``ood_extra_steps`` more
    operations; test and ood never repeat a problem (so ``n`` is capped by the space: ~81 test
    functions at steps=2, digits=1)."""
    if split not in SPLITS:
        raise RecipeError(f"unknown split {split!r}; known: {', '.join(SPLITS)}", key="task.split")
    if n < 1:
        raise RecipeError(f"n={n} must be >= 1", key="task.n")
    steps = cfg.steps + (cfg.ood_extra_steps if split == "ood" else 0)
    rng = random.Random(f"code-{cfg.seed}-{_SPLIT_SEED[split]}")
    want_trace = split == "train" if with_trace is None else with_trace
    rows: list[dict] = []
    seen: set[str] = set()
    misses = 0
    while len(rows) < n:
        pid = f"code-{split}-{len(rows):06d}"
        p, xs = make_code_problem(rng, steps=steps, digits=cfg.digits, pid=pid)
        # the function space is small (18**2 = 324 two-step functions of 1-digit operands), so train
        # and test partition it by a hash of the operations (test: a quarter; disjoint for any n),
        # and train rows may repeat a function (with other re-checks); test and ood never repeat
        held_out = _code_held_out(p.ops)
        wrong_side = (split == "train" and held_out) or (split == "test" and not held_out)
        if wrong_side or (split != "train" and p.problem in seen):
            misses += 1
            if misses > 5000:
                raise RecipeError(f"only {len(rows)} distinct code {split} problems for steps={steps} "
                                  f"digits={cfg.digits}; lower n or raise steps/digits", key="task.n")
            continue
        misses = 0
        seen.add(p.problem)
        row = {"id": pid, "problem": p.problem, "answer": code_gold(p, xs), "steps": steps, "digits": cfg.digits}
        if want_trace:
            trace_rng = random.Random(f"code-trace-{cfg.seed}-{split}-{pid}")
            k = trace_rng.randint(0, cfg.max_rechecks)
            row["rechecks"] = k
            row["completion"] = code_trace(p, k, trace_rng)
        rows.append(row)
    return rows


def mix_code(split: str, n: int, cfg: TaskConfig, code_frac: float, *, with_trace: bool | None = None) -> list[dict]:
    """``n`` rows: ``round(n * code_frac)`` code rows at seeded places among the arith rows."""
    k = min(n - 1, round(n * code_frac))
    arith = generate(split, n - k, cfg, with_trace=with_trace)
    if k <= 0:
        return arith
    code = generate_code(split, k, cfg, with_trace=with_trace)
    at = set(random.Random(f"mix-{cfg.seed}-{split}-{n}-{k}").sample(range(n), k))
    a, c = iter(arith), iter(code)
    return [next(c) if i in at else next(a) for i in range(n)]


def is_code_row(row: dict) -> bool:
    """True for a code-task row (its id starts with ``code-``)."""
    return str(row.get("id", "")).startswith("code-")


# ------------------------------------------------------------------------------- task:// URIs
def parse_task_uri(uri: str) -> tuple[str, int, TaskConfig, bool]:
    """``task://arith?split=test&n=200&steps=2&digits=1&seed=0`` -> (split, n, config, trace).

    Unknown parameters are an error that lists the known ones. (:func:`parse_task` also returns
    the task's name and ``code_frac``.)
    """
    req = parse_task(uri)
    return req.split, req.n, req.cfg, req.with_trace


@dataclass(frozen=True)
class TaskRequest:
    """A parsed ``task://`` URI: which task, split, how many rows, the knobs, traces, code mix."""

    task: str  # arith | code
    split: str
    n: int
    cfg: TaskConfig
    with_trace: bool
    code_frac: float = 0.0  # arith only: this share of the rows are code-task rows (SFT mixes)


def parse_task(uri: str) -> TaskRequest:
    """The full parse of a ``task://arith?..`` or ``task://code?..`` URI (see :func:`parse_task_uri`)."""
    if not uri.startswith(TASK_SCHEME):
        raise RecipeError(f"{uri!r} is not a task URI (expected {TASK_SCHEME}arith?split=...)", key="dataset.source")
    parsed = urllib.parse.urlparse(uri)
    if parsed.netloc not in TASKS:
        raise RecipeError(f"{uri}: unknown task {parsed.netloc!r}; known: {', '.join(TASKS)}", key="dataset.source")
    params = dict(urllib.parse.parse_qsl(parsed.query, strict_parsing=False))
    split = params.pop("split", "train")
    n = params.pop("n", "1000")
    trace_flag = params.pop("trace", "")
    frac_text = params.pop("code_frac", None) if parsed.netloc == "arith" else None
    known = {f.name for f in fields(TaskConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        extra = "code_frac, " if parsed.netloc == "arith" else ""
        raise RecipeError(
            f"{uri}: unknown parameter(s) {', '.join(unknown)}; known: split, n, trace, {extra}"
            f"{', '.join(sorted(known))}",
            key="dataset.source",
        )
    code_frac = 0.0
    if frac_text is not None:
        try:
            code_frac = float(frac_text)
        except ValueError:
            code_frac = -1.0
        if not 0.0 <= code_frac < 1.0:
            raise RecipeError(f"{uri}: code_frac={frac_text!r} must be a number in [0, 1) (the share of code rows)",
                              key="dataset.source")
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
    return TaskRequest(parsed.netloc, split, n_rows, cfg, with_trace, code_frac)


def _did_you_mean(word: str, known: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def is_task_uri(source: str) -> bool:
    """True when a DatasetSpec.source names a generated task rather than a hub id or a file."""
    return isinstance(source, str) and source.startswith(TASK_SCHEME)


def load_task(uri: str) -> list[dict]:
    """Rows of a ``task://`` URI (the hook ``jobs/data.load_problems`` calls for such sources).

    ``task://arith?..&code_frac=f`` keeps ``n - round(n*f)`` arith rows (the same rows as
    ``n - round(n*f)`` without it) and inserts ``round(n*f)`` code-task rows at seeded places."""
    req = parse_task(uri)
    if req.task == "code":
        return generate_code(req.split, req.n, req.cfg, with_trace=req.with_trace)
    if req.code_frac <= 0:
        return generate(req.split, req.n, req.cfg, with_trace=req.with_trace)
    return mix_code(req.split, req.n, req.cfg, req.code_frac, with_trace=req.with_trace)


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
