"""Grading of code responses: extract the program, run it on hidden tests in the sandbox, compare
outside (issue 24).

    from scaling.codegrade import grade_code_many
    gold = '{"kind": "stdin", "fn_name": null, "tests": [{"input": "2 3\\n", "output": "5\\n"}]}'
    grade_code_many(["<think>..</think>```python\\nprint(sum(map(int, input().split())))\\n```"], [gold])
    # [Grade(correct=True, status="ok", answer="print(sum(map(int, input().split())))")]

* **Gold** (a JSON string): ``{"kind": "stdin" | "functional", "fn_name": str | null, "tests":
  [{"input": str, "output": str}, ...], "time_limit_s": float | null}``. LiveCodeBench's
  conventions (lcb_runner/evaluation/testing_util.py): a stdin test feeds ``input`` on standard
  input and compares standard output with ``output``; a functional test's ``input`` is one JSON
  argument per line and ``output`` is JSON; the program defines ``class Solution`` with method
  ``fn_name`` (LCB) or a top-level function ``fn_name``. Every solution runs after LCB's
  ``import_string`` (``LCB_PRELUDE``: star imports of the stdlib modules, ``typing`` included,
  and ``sys.setrecursionlimit(50000)``), as in LCB; ``fn_name`` must be defined by the solution
  (LCB would also accept a prelude name such as ``operator.add`` for ``add``).
* **Extraction** (``extract_code``): LCB's ``extract_code`` (lcb_runner/utils/extraction_utils.py
  at commit 28fef95e, the default LM style): the lines containing a ``` fence are found, and the
  code is what lies between the **last two** of them (older LCB took the first two), here in the
  text after ``</think>``.
* **Comparison** (``stdout_matches``), LCB's ``grade_stdio`` rules: strip the whole output, split
  on newlines, strip each line; the line counts must agree; a line matches when equal, or when
  both lines parse as whitespace-separated ``Decimal`` numbers that are equal (``1.0`` = ``1``).
  Functional: the return value (a tuple read as a list, as LCB does) must equal
  ``json.loads(output)``.
* **Security rule:** the expected outputs never enter the sandbox. A harness inside runs the
  program on every test input and writes each test's stdout (stdin kind) or the JSON of each
  return value (functional kind) to a private copy of fd 1, each record framed by a random
  per-execution nonce; the comparison happens here. ``os._exit(0)`` before the tests leaves
  records missing (failed), ``sys.modules``/builtins tricks or printing "PASS" change nothing
  outside, and a forged record would need the expected outputs, which only this process holds.
* **One execution per response**, all its tests inside it (LCB runs all tests of a problem in
  one process too): the harness bounds each test with an interval timer of the per-test limit and
  stops at the first timeout or exception (LCB stops at the first failure); the execution's CPU
  and wall limits are the per-test limit x the test count + start-up. perf/code_sandbox.py
  measures the saving: one sandbox start-up (~15-25 ms here) instead of one per test.

Status values: ``ok`` | ``failed_test`` (a wrong output) | ``runtime_error`` (an exception,
a syntax error, a missing function, an exit before all tests ran) | ``timeout`` | ``memory`` |
``output_limit`` | ``sandbox_error`` | ``no_answer`` (no fenced block) | ``truncated`` (no
``</think>``) | ``error`` (the gold cannot be read: a data problem).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Sequence

from .errors import JobError
from .grade import MAX_ANSWER_REPORT_CHARS, Grade, answer_region
from .sandbox import Limits, run_many, sandbox_problem

__all__ = ["CodeGold", "parse_gold", "extract_code", "stdout_matches", "value_matches", "grade_code_many",
           "CODE_STATUSES", "DEFAULT_TIME_LIMIT_S"]

CODE_STATUSES = ("ok", "failed_test", "runtime_error", "timeout", "memory", "output_limit", "sandbox_error",
                 "no_answer", "truncated", "error")
DEFAULT_TIME_LIMIT_S = 6.0  # LiveCodeBench's per-test timeout (lcb_runner/runner/parser.py: --timeout 6)
STARTUP_S = 1.0  # added to the execution's CPU and wall limits for the interpreter and the harness
MAX_TESTS = 10_000
# LiveCodeBench runs every solution after these lines (``import_string`` in
# lcb_runner/evaluation/testing_util.py): LeetCode starter code uses ``List[int]`` unimported, and
# many solutions rely on the star imports or the recursion limit.
LCB_PRELUDE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
    "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
    "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n"
    "from builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
    "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\n"
    "import statistics\nimport itertools\nimport functools\nimport operator\nimport io\nimport sys\n"
    "import json\nsys.setrecursionlimit(50000)\n"
)
MAX_GOLD_BYTES = 256 << 20


@dataclass(frozen=True)
class CodeGold:
    kind: str  # stdin | functional
    fn_name: str | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    time_limit_s: float | None


def parse_gold(gold: str) -> CodeGold:
    """The gold JSON → CodeGold; ValueError with a one-line reason when it is malformed."""
    if not isinstance(gold, str) or len(gold) > MAX_GOLD_BYTES:
        raise ValueError("gold must be a JSON string")
    try:
        data = json.loads(gold)
    except json.JSONDecodeError as err:
        raise ValueError(f"gold is not JSON ({err.msg} at {err.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("gold must be a JSON object with kind, fn_name, tests")
    kind = data.get("kind")
    if kind not in ("stdin", "functional"):
        raise ValueError(f"gold.kind must be 'stdin' or 'functional', got {kind!r}")
    fn_name = data.get("fn_name")
    if kind == "functional" and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise ValueError(f"gold.fn_name must be a Python identifier for a functional gold, got {fn_name!r}")
    tests = data.get("tests")
    if not isinstance(tests, list) or not tests or len(tests) > MAX_TESTS:
        raise ValueError(f"gold.tests must be a list of 1 to {MAX_TESTS} tests")
    inputs, outputs = [], []
    for i, t in enumerate(tests):
        if not isinstance(t, dict) or not isinstance(t.get("input"), str) or not isinstance(t.get("output"), str):
            raise ValueError(f"gold.tests[{i}] must be {{'input': str, 'output': str}}")
        if kind == "functional":
            try:
                [json.loads(line) for line in t["input"].split("\n")]
                json.loads(t["output"])
            except json.JSONDecodeError:
                raise ValueError(f"gold.tests[{i}]: a functional test's input lines and output must be JSON") from None
        inputs.append(t["input"])
        outputs.append(t["output"])
    limit = data.get("time_limit_s")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 < limit < 1e4):
        raise ValueError(f"gold.time_limit_s must be a positive number of seconds or null, got {limit!r}")
    return CodeGold(kind, fn_name if kind == "functional" else None, tuple(inputs), tuple(outputs),
                    float(limit) if limit is not None else None)


def extract_code(response: str, *, think_end: str = "</think>", require_think_end: bool = True) -> str | None:
    """The code between the last two fence lines after ``think_end`` (LCB's ``extract_code``:
    lines *containing* ```), None when there are fewer than two fences or thinking never closed
    (when required; ``answer_region`` decides, as for math)."""
    region = answer_region(response, think_end=think_end, require_think_end=require_think_end)
    if region is None:
        return None
    lines = region.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return None
    code = "\n".join(lines[fences[-2] + 1 : fences[-1]])
    return code if code.strip() else None


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(x) for x in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdout_matches(got: str, expected: str) -> bool:
    """LCB's ``grade_stdio`` comparison (lcb_runner/evaluation/testing_util.py): stripped lines,
    equal counts, each line equal or equal as a list of Decimals."""
    got_lines, exp_lines = _stripped_lines(got), _stripped_lines(expected)
    if len(got_lines) != len(exp_lines):
        return False
    for g, e in zip(got_lines, exp_lines):
        if g == e:
            continue
        gd, ed = _decimals(g), _decimals(e)
        if gd is None or ed is None or gd != ed:
            return False
    return True


def value_matches(got_json: str, expected_json: str) -> bool:
    """LCB's ``grade_call_based``: ``prediction == json.loads(output)`` (tuples already lists)."""
    try:
        return json.loads(got_json) == json.loads(expected_json)
    except (json.JSONDecodeError, TypeError, RecursionError):
        return False


# The harness runs inside the sandbox as /tmp/main.py. It reads its configuration (the nonce,
# the kind, the inputs; never the outputs) from stdin before the solution runs, keeps a private
# copy of fd 1 for its records, and gives the solution fresh files as fd 0 and fd 1 for each test.
_HARNESS = r'''
import builtins, io, json, os, signal, sys, time
cfg = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogatepass"))
nonce, kind, fn_name, inputs, per_test = cfg["nonce"], cfg["kind"], cfg["fn_name"], cfg["inputs"], cfg["per_test_s"]
prelude = compile(cfg["prelude"], "prelude.py", "exec")
del cfg
base = os.path.dirname(os.path.abspath(__file__))
IN, OUT = os.path.join(base, ".in"), os.path.join(base, ".out")
rec = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="surrogatepass")
def emit(i, payload):
    rec.write(nonce + " " + str(i) + " " + json.dumps(payload) + "\n"); rec.flush()
class _Timeout(BaseException):
    pass
def _alarm(signum, frame):
    raise _Timeout()
signal.signal(signal.SIGALRM, _alarm)
def arm(s):
    signal.setitimer(signal.ITIMER_REAL, s)
def fresh_fd(fd, path, data=None):
    if data is not None:
        with open(path, "wb") as fh:
            fh.write(data)
    new = os.open(path, os.O_RDONLY if data is not None else (os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    if new != fd:  # the solution may have closed fd (open(0) closes it): then os.open returned it
        os.dup2(new, fd); os.close(new)
try:
    code = compile(open(os.path.join(base, "solution.py"), "rb").read(), "solution.py", "exec")
except BaseException as e:
    emit(-1, {"err": type(e).__name__ + ": " + str(e)[:200]}); sys.exit(0)
if kind == "stdin":
    for i, inp in enumerate(inputs):
        fresh_fd(0, IN, inp.encode("utf-8", "surrogatepass")); fresh_fd(1, OUT)
        sys.stdin = open(0, "r", closefd=False); sys.stdout = open(1, "w", closefd=False)
        err, t0 = None, time.perf_counter()
        try:
            arm(per_test)
            g = {"__name__": "__main__", "__builtins__": builtins}
            exec(prelude, g)  # after sys.stdin/stdout are this test's: "from sys import *" binds them
            exec(code, g)
        except SystemExit:
            pass
        except _Timeout:
            err = "timeout"
        except BaseException as e:
            err = type(e).__name__ + ": " + str(e)[:200]
        finally:
            arm(0)
        dt = time.perf_counter() - t0
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        with open(OUT, "rb") as fh:
            out = fh.read().decode("utf-8", "replace")
        emit(i, {"stdout": out, "s": dt, "err": err})
        if err:
            break
else:
    fresh_fd(0, IN, b""); fresh_fd(1, "/dev/null")
    g = {"__name__": "__main__", "__builtins__": builtins}
    try:
        arm(per_test)
        exec(prelude, g)
        before = dict(g)
        exec(code, g)
        if "Solution" in g and g["Solution"] is not before.get("Solution"):
            fn = getattr(g["Solution"](), fn_name)
        elif fn_name in g and g[fn_name] is not before.get(fn_name):  # not the prelude's operator.add
            fn = g[fn_name]
        else:
            raise NameError(fn_name + " is not defined by the solution")
        arm(0)
    except BaseException as e:
        arm(0)
        emit(-1, {"err": "timeout" if isinstance(e, _Timeout) else type(e).__name__ + ": " + str(e)[:200]}); sys.exit(0)
    for i, inp in enumerate(inputs):
        err, value, t0 = None, None, time.perf_counter()
        try:
            args = [json.loads(line) for line in inp.split("\n")]
            arm(per_test)
            res = fn(*args)
            arm(0)
            value = json.dumps(list(res) if isinstance(res, tuple) else res)
        except _Timeout:
            err = "timeout"
        except BaseException as e:
            arm(0)
            err = type(e).__name__ + ": " + str(e)[:200]
        emit(i, {"value": value, "s": time.perf_counter() - t0, "err": err})
        if err:
            break
'''


def _records(stdout: str, nonce: str) -> dict[int, dict]:
    """The harness's records (the first for each index); lines without the nonce are ignored."""
    found: dict[int, dict] = {}
    prefix = nonce + " "
    for line in stdout.split("\n"):
        if not line.startswith(prefix):
            continue
        idx, _, payload = line[len(prefix) :].partition(" ")
        try:
            i, rec = int(idx), json.loads(payload)
        except (ValueError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict):
            found.setdefault(i, rec)
    return found


def _verdict(gold: CodeGold, execution, nonce: str, per_test: float) -> str:
    recs = _records(execution.stdout, nonce)
    if -1 in recs:
        return "timeout" if recs[-1].get("err") == "timeout" else "runtime_error"
    for i, expected in enumerate(gold.outputs):
        rec = recs.get(i)
        if rec is None:  # the execution ended (or was ended) before this test reported
            if execution.status in ("timeout", "memory", "output_limit", "sandbox_error"):
                return execution.status
            return "runtime_error"
        err = rec.get("err")
        if err:
            if err == "timeout":
                return "timeout"
            return "memory" if str(err).startswith("MemoryError") else "runtime_error"
        elapsed = rec.get("s")
        if isinstance(elapsed, (int, float)) and elapsed > per_test:
            return "timeout"
        if gold.kind == "stdin":
            ok = isinstance(rec.get("stdout"), str) and stdout_matches(rec["stdout"], expected)
        else:
            ok = isinstance(rec.get("value"), str) and value_matches(rec["value"], expected)
        if not ok:
            return "failed_test"
    return "ok"


def grade_code_many(
    responses: Sequence[str],
    golds: Sequence[str],
    *,
    think_end: str = "</think>",
    require_think_end: bool = True,
    timeout_s: float | None = None,
    workers: int | None = None,
    allow_unsandboxed: bool = False,
    memory_mb: int = 1024,
) -> list[Grade]:
    """Grade each response against its gold's tests, ``workers`` executions at a time (default
    ``os.cpu_count()``), order preserved. ``timeout_s`` is the per-test limit (None: the gold's
    ``time_limit_s``, else ``DEFAULT_TIME_LIMIT_S``).

    Raises JobError when the sandbox cannot start here and ``allow_unsandboxed`` is False."""
    if len(responses) != len(golds):
        raise ValueError(f"grade_code_many: {len(responses)} responses but {len(golds)} golds")
    if not allow_unsandboxed:
        problem = sandbox_problem()
        if problem is not None:
            raise JobError(f"code grading refuses to run model code without the sandbox: {problem}; "
                           "fix it, or set eval.code.allow_unsandboxed: true (the report will flag it)")
    results: list[Grade | None] = [None] * len(responses)
    items, meta = [], []
    for i, (resp, gold_text) in enumerate(zip(responses, golds)):
        resp = resp if isinstance(resp, str) else ("" if resp is None else str(resp))
        try:
            gold = parse_gold(gold_text)
        except ValueError:
            results[i] = Grade(False, "error", "")
            continue
        if require_think_end and answer_region(resp, think_end=think_end) is None:
            results[i] = Grade(False, "truncated", "")
            continue
        code = extract_code(resp, think_end=think_end, require_think_end=require_think_end)
        if code is None:
            results[i] = Grade(False, "no_answer", "")
            continue
        per_test = float(timeout_s if timeout_s is not None else gold.time_limit_s or DEFAULT_TIME_LIMIT_S)
        n = len(gold.inputs)
        total = per_test * n + STARTUP_S
        expected_bytes = sum(len(o) for o in gold.outputs) if gold.kind == "stdin" else 0
        limits = Limits(cpu_s=math.ceil(total), wall_s=total + 2.0, memory_mb=memory_mb,
                        output_bytes=max(1 << 20, 4 * expected_bytes + 512 * n + (64 << 10)))
        nonce = secrets.token_hex(16)
        config = json.dumps({"nonce": nonce, "kind": gold.kind, "fn_name": gold.fn_name,
                             "inputs": list(gold.inputs), "per_test_s": per_test, "prelude": LCB_PRELUDE})
        items.append({"source": _HARNESS, "stdin": config, "limits": limits, "extra_files": {"solution.py": code}})
        meta.append((i, gold, nonce, per_test, code))
    executions = run_many(items, workers=workers or os.cpu_count(), allow_unsandboxed=allow_unsandboxed)
    for (i, gold, nonce, per_test, code), execution in zip(meta, executions):
        if execution.status == "sandbox_error":
            status = "sandbox_error"
        else:
            status = _verdict(gold, execution, nonce, per_test)
        results[i] = Grade(status == "ok", status, code[:MAX_ANSWER_REPORT_CHARS])
    return [r if r is not None else Grade(False, "error", "") for r in results]
