"""Grading of model responses: math-verify for math, a letter match for multiple choice.

    from scaling.grade import grade, grade_many
    grade("<think>...</think> so the answer is \\boxed{\\frac12}", "0.5")   # Grade(True, "ok", "\\frac{1}{2}")

What it does and why it looks like this:

* The answer is read from the text **after** ``</think>`` (the thinking block is never graded).
  A response with no ``</think>`` ran out of tokens while thinking: it is never correct when
  ``require_think_end`` (status ``truncated``). Art (arXiv 2602.20945) scores a response cut at
  the budget as incorrect; Art does not name its grader, so we use math-verify (HF).
* math-verify's own time limits use ``signal.alarm`` and are disabled outside the main thread
  (TRL's accuracy reward runs it unbounded). We run math-verify in one **persistent worker
  process** (``python -c`` child speaking JSON lines on its pipes: no fork of a CUDA parent, no
  re-import of ``__main__``, works from threads and daemon processes). Each sample has a
  wall-clock deadline enforced by the parent; on a timeout or a crash the worker is killed and
  restarted and the sample is graded ``timeout`` / ``error``. Inside the worker math-verify's
  own signal limits stay on as a second bound. The restart is counted: after the first timeout a
  spare worker warms up in the background and takes over at the next one, so a batch with k
  timeouts takes at most ``k x timeout_s`` + the other samples' grading + ``BATCH_OVERHEAD``
  (two worker start-ups: the first start and the first restart), as long as one start-up takes
  less than ``timeout_s`` (about 1-2 s here; else each timeout adds the difference).
  tests/unit/test_grade.py measures it.
* Golds are parsed as math-verify's README does, inside ``$...$`` (``gold_text``); an escaped
  dollar (``\\$18.90``) is a currency sign, not a delimiter. A gold that math-verify cannot
  parse at all grades ``error`` (a data problem), never ``wrong``.
* Inputs are capped before they reach the parser (the last ``MAX_ANSWER_CHARS`` characters of the
  answer region, brace nesting at most ``MAX_BRACE_DEPTH``), so megabytes of output, deeply
  nested LaTeX or binary garbage are graded wrong, never crash or hang a job.
* ``kind="choice"`` (GPQA) extracts a letter A-D (``\\boxed{C}``, ``Answer: (C)``, a final
  letter) with bounded regular expressions in-process and compares it with the gold letter.

Status values: ``ok`` (correct) | ``wrong`` | ``no_answer`` | ``timeout`` | ``error`` (the worker
crashed, nesting too deep, or the gold is unparseable) | ``truncated``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["Grade", "grade", "grade_many", "answer_region", "extract_choice", "gold_text", "shutdown_worker"]

MAX_ANSWER_CHARS = 4000  # the tail of the answer region that is parsed (a final answer sits at the end)
MAX_BRACE_DEPTH = 40  # deeper LaTeX nesting is graded "error" without parsing
MAX_GOLD_CHARS = 2000
MAX_ANSWER_REPORT_CHARS = 200  # the extracted answer kept in records
_WORKER_START_TIMEOUT_S = 120.0  # importing sympy on a loaded node can take a while
STATUSES = ("ok", "wrong", "no_answer", "timeout", "error", "truncated")
CHOICE_LETTERS = "ABCD"


@dataclass(frozen=True)
class Grade:
    """The grade of one response. ``correct`` is True only with status ``ok``."""

    correct: bool
    status: str  # ok | wrong | no_answer | timeout | error | truncated
    answer: str  # the extracted answer ("" when none)


# --------------------------------------------------------------------------- pure parts
def answer_region(response: str, *, think_end: str = "</think>", require_think_end: bool = True) -> str | None:
    """The text after the last ``think_end``; None when thinking never closed and it is required.

    Without ``require_think_end`` a response with no ``think_end`` is graded whole (non-thinking
    models)."""
    idx = response.rfind(think_end) if think_end else -1
    if idx < 0:
        return None if require_think_end else response
    return response[idx + len(think_end) :]


def _cap(region: str) -> str:
    """Keep the tail where final answers live; drop NULs and other control garbage."""
    if len(region) > MAX_ANSWER_CHARS:
        region = region[-MAX_ANSWER_CHARS:]
    return region.replace("\x00", "")


def _brace_depth(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch == "{":
            depth += 1
            best = max(best, depth)
        elif ch == "}" and depth:
            depth -= 1
    return best


_BOXED_CHOICE = re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{\s*)?\(?([A-Da-d])\)?\s*\}")
_STATED_CHOICE = re.compile(
    r"(?:answer|choice|option)\s*(?:is|:)?\s*[:\-]?\s*(?:\*\*)?\s*[\(\[]?([A-D])[\)\]]?(?![A-Za-z])", re.IGNORECASE
)
_PAREN_CHOICE = re.compile(r"\(([A-D])\)")
_FINAL_LETTER = re.compile(r"(?:^|[\s\*:])([A-D])[\s\.\)\*]*$")


def extract_choice(region: str) -> str:
    """The chosen letter A-D in an answer region ("" when none): the last ``\\boxed{X}``, else the
    last "answer is X" / "Answer: (X)", else the last "(X)", else a letter ending the text."""
    text = _cap(region)
    for pattern in (_BOXED_CHOICE, _STATED_CHOICE, _PAREN_CHOICE):
        found = pattern.findall(text)
        if found:
            letter = found[-1].upper()
            if letter in CHOICE_LETTERS:
                return letter
    m = _FINAL_LETTER.search(text.strip()[-20:])
    return m.group(1) if m else ""


def _grade_choice(region: str, gold: str) -> Grade:
    letter = extract_choice(region)
    if not letter:
        return Grade(False, "no_answer", "")
    gold_letter = gold.strip().strip("()").upper()[:1]
    ok = letter == gold_letter
    return Grade(ok, "ok" if ok else "wrong", letter)


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def gold_text(gold: str) -> str:
    """How a gold answer is handed to math-verify's ``parse``: inside ``$...$`` (what its README
    does, and what "math-verify called directly" means in tests/unit/test_grade.py), unless the
    gold already carries math delimiters (an unescaped ``$`` or ``\\boxed``). An escaped dollar
    (MATH-500's ``\\$18.90``) is a currency sign, not a delimiter: the gold is still wrapped."""
    if "\\boxed" in gold or _UNESCAPED_DOLLAR.search(gold):
        return gold
    return f"${gold}$"


# ----------------------------------------------------------------------- worker (child side)
def _serve() -> None:  # pragma: no cover - runs in the child process (tested through grade_many)
    """Worker loop: read one JSON task per line on stdin, answer one JSON line on stdout."""
    import logging

    logging.disable(logging.WARNING)
    from math_verify import parse, verify

    sys.setrecursionlimit(4000)
    golds: dict[str, list] = {}
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        task = json.loads(line)
        # math-verify's own (signal) limits sit 1 s past the parent's deadline, so the parent
        # decides every timeout: verify() returns a silent False when its own limit fires, which
        # would grade a sample that ran out of time "wrong" instead of "timeout"
        limit = max(1, int(-(-float(task.get("t", 5)) // 1))) + 1
        try:
            gold = task["gold"]
            parsed_gold = golds.get(gold)
            if parsed_gold is None:
                parsed_gold = parse(gold_text(gold), parsing_timeout=limit) or parse(gold, parsing_timeout=limit)
                if len(golds) > 10000:
                    golds.clear()
                golds[gold] = parsed_gold
            pred = parse(task["resp"], parsing_timeout=limit)
            if not parsed_gold:  # the gold itself cannot be parsed: not the model's fault
                reply = {"status": "error", "answer": str(pred[1] if len(pred) > 1 else pred[0])[:MAX_ANSWER_REPORT_CHARS]
                         if pred else "", "correct": False, "detail": "gold answer not parseable"}
            elif not pred:
                reply = {"status": "no_answer", "answer": "", "correct": False}
            else:
                shown = str(pred[1] if len(pred) > 1 else pred[0])[:MAX_ANSWER_REPORT_CHARS]
                ok = bool(parsed_gold) and bool(verify(parsed_gold, pred, timeout_seconds=limit))
                reply = {"status": "ok" if ok else "wrong", "answer": shown, "correct": ok}
        except Exception as exc:  # math-verify timeouts and parser failures: this sample is wrong
            name = type(exc).__name__
            status = "timeout" if "Timeout" in name else "error"
            reply = {"status": status, "answer": "", "correct": False}
        reply["i"] = task["i"]
        out.write(json.dumps(reply) + "\n")
        out.flush()


# ---------------------------------------------------------------------- worker (parent side)
class _Worker:
    """A persistent math-verify child with per-task deadlines. Not thread-safe: use ``_LOCK``.

    ``wait=False`` starts the process and returns at once (a spare warming up in the
    background); ``wait_ready`` then waits for its ready line."""

    def __init__(self, wait: bool = True) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONHASHSEED", "0")
        # the child imports this very package, even when it is used from an uninstalled checkout
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # The child ignores the stop signals: Slurm signals every process of the job and the
        # supervisor every descendant of the launcher (a graceful stop, issue 22); a grader killed
        # by them crashed the training step before it could save. So that no signal can land
        # between the fork and the child's first line (the interpreter's start-up, ~50 ms: seen in
        # CI as "the math-verify worker did not start"), they are blocked in this thread around
        # the spawn: a blocked mask is inherited through fork and exec, the child sets them to
        # SIG_IGN (which discards any pending one) and only then unblocks them. The child ends on
        # stdin's EOF (its owner exited) or our SIGKILL (``close``).
        stops = {signal.SIGTERM, signal.SIGUSR1}
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            self.proc = subprocess.Popen(
                # -P: the working directory is not put first on sys.path, so a folder named
                # "scaling" there (another checkout) cannot stand in for this package
                [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), "-c",
                 "import signal; stops = {signal.SIGTERM, signal.SIGUSR1}; "
                 "[signal.signal(s, signal.SIG_IGN) for s in stops]; "
                 "signal.pthread_sigmask(signal.SIG_UNBLOCK, stops); "
                 "from scaling.grade import _serve; _serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.owner_pid = os.getpid()  # a forked child must not share our pipes
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.started = time.monotonic()
        self.ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait (at most _WORKER_START_TIMEOUT_S from the start) for the child's ready line."""
        if self.ready:
            return
        first = self._read_line(self.started + _WORKER_START_TIMEOUT_S)
        if first is None:
            self.close()
            raise RuntimeError("scaling.grade: the math-verify worker did not start (is math-verify installed?)")
        self.ready = True

    def _read_line(self, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(timeout=left):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the child died
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def ask(self, task: dict, timeout_s: float) -> dict | None:
        """Send one task; the reply, or None on timeout / crash (the caller restarts us)."""
        try:
            self.proc.stdin.write((json.dumps(task) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        line = self._read_line(time.monotonic() + timeout_s)
        if line is None:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)  # killed: returns at once; the pipes are closed either way
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self._sel.close()


_LOCK = threading.Lock()
_WORKER: _Worker | None = None
# After the first timeout a spare worker is kept warming in the background, so the restart a
# timeout forces costs (almost) nothing: the spare has been starting since the previous restart,
# i.e. for at least one timeout_s. Processes that never time out never start one.
_SPARE: _Worker | None = None
_HAD_TIMEOUT = False


def _worker() -> _Worker:
    global _WORKER, _SPARE
    if _WORKER is not None and _WORKER.owner_pid != os.getpid():
        _WORKER = None  # inherited through fork: the parent owns that worker; start our own
    if _SPARE is not None and _SPARE.owner_pid != os.getpid():
        _SPARE = None
    if _WORKER is None or not _WORKER.alive():
        if _WORKER is not None:
            _WORKER.close()
        _WORKER = None
        if _SPARE is not None and _SPARE.alive():
            _WORKER, _SPARE = _SPARE, None
            _WORKER.wait_ready()
        else:
            _WORKER = _Worker()
    if not _WORKER.ready:  # started in the background after a timeout: its start-up counts here
        try:
            _WORKER.wait_ready()
        except RuntimeError:
            _WORKER = None
            raise
    if _HAD_TIMEOUT and (_SPARE is None or not _SPARE.alive()):
        _SPARE = _Worker(wait=False)  # warms up while this worker grades (never two start-ups at once)
    return _WORKER


def _restart_after_timeout() -> None:
    """The active worker was killed: promote the spare (warming since the last restart), or
    start a replacement without waiting. ``_worker`` starts the next spare once this one is
    ready, so two start-ups never compete for the cores."""
    global _WORKER, _SPARE, _HAD_TIMEOUT
    _HAD_TIMEOUT = True
    if _SPARE is not None and _SPARE.alive() and _SPARE.owner_pid == os.getpid():
        _WORKER, _SPARE = _SPARE, None
    else:
        _WORKER, _SPARE = _Worker(wait=False), None


def shutdown_worker() -> None:
    """Stop the grading worker (it restarts on the next call). Registered at exit."""
    global _WORKER, _SPARE
    with _LOCK:
        for w in (_WORKER, _SPARE):
            if w is not None and w.owner_pid == os.getpid():
                w.close()
        _WORKER = _SPARE = None
        global _HAD_TIMEOUT
        _HAD_TIMEOUT = False


atexit.register(shutdown_worker)


# --------------------------------------------------------------------------------- API
def grade(
    response: str,
    gold: str,
    *,
    kind: str = "math",
    timeout_s: float = 5.0,
    think_end: str = "</think>",
    require_think_end: bool = True,
) -> Grade:
    """Grade one response against its gold answer (see the module docstring)."""
    return grade_many(
        [response], [gold], kind=kind, timeout_s=timeout_s, think_end=think_end, require_think_end=require_think_end
    )[0]


def grade_many(
    responses: Sequence[str],
    golds: Sequence[str],
    *,
    kind: str = "math",
    timeout_s: float = 5.0,
    think_end: str = "</think>",
    require_think_end: bool = True,
) -> list[Grade]:
    """Grade a batch through one bounded worker; never hangs longer than ``timeout_s`` per sample.

    ``kind``: ``math`` (math-verify) or ``choice`` (letter A-D); code benchmarks are graded by
    ``scaling.codegrade.grade_code_many``, which imports this module (so no dispatch back). Raises
    ValueError for a length mismatch or an unknown kind (programming errors, not user input)."""
    if len(responses) != len(golds):
        raise ValueError(f"grade_many: {len(responses)} responses but {len(golds)} golds")
    if kind not in ("math", "choice"):  # code: scaling.codegrade.grade_code_many (it imports this module)
        raise ValueError(f"grade_many: unknown kind {kind!r} (known: math, choice; code is codegrade.grade_code_many)")
    results: list[Grade | None] = [None] * len(responses)
    pending: list[tuple[int, str, str]] = []
    for i, (resp, gold) in enumerate(zip(responses, golds)):
        resp = resp if isinstance(resp, str) else ("" if resp is None else str(resp))
        gold = str(gold if gold is not None else "")
        region = answer_region(resp, think_end=think_end, require_think_end=require_think_end)
        if region is None:
            results[i] = Grade(False, "truncated", "")
            continue
        region = _cap(region)
        if kind == "choice":
            results[i] = _grade_choice(region, gold)
        elif not region.strip():
            results[i] = Grade(False, "no_answer", "")
        elif _brace_depth(region) > MAX_BRACE_DEPTH:
            results[i] = Grade(False, "error", "")
        else:
            pending.append((i, region, gold[:MAX_GOLD_CHARS]))
    if pending:
        with _LOCK:
            for i, region, gold in pending:
                results[i] = _ask_bounded(region, gold, timeout_s)
    return [r for r in results if r is not None]


def _ask_bounded(region: str, gold: str, timeout_s: float) -> Grade:
    """One sample: at most ``timeout_s`` of grading. A timeout kills the worker and restarts it
    in the background (``_restart_after_timeout``), so a batch with k timeouts takes at most
    k x timeout_s + the grading of the other samples + BATCH_OVERHEAD (see grade_many)."""
    global _WORKER
    worker = _worker()
    reply = worker.ask({"i": 0, "resp": region, "gold": gold, "t": timeout_s}, timeout_s)
    if reply is None:
        timed_out = worker.alive()
        worker.close()
        _WORKER = None
        _restart_after_timeout()
        return Grade(False, "timeout" if timed_out else "error", "")
    return Grade(bool(reply["correct"]), str(reply["status"]), str(reply["answer"]))
