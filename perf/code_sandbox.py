"""Code-sandbox throughput on this machine (issue 24): programs per second and per-execution
overhead of scaling/sandbox.py, against a plain ``python -c pass`` subprocess.

    python perf/code_sandbox.py              # 100 programs per measurement
    python perf/code_sandbox.py -n 300

Measures (wall clock, this machine's cores):
* plain: ``subprocess.run([python, "-I", "-S", "-c", "pass"])`` one after another;
* sandboxed trivial program (``print(1)``) run one after another, and through ``run_many`` with
  workers=2;
* the grader's choice (scaling/codegrade.py): a 20-test stdin problem graded in ONE execution
  (all tests inside, the harness) against one sandboxed execution per test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from scaling import codegrade, sandbox  # noqa: E402


def _rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<48} {n / seconds:8.1f} programs/s   {1000 * seconds / n:7.1f} ms each")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100, help="programs per measurement")
    args = ap.parse_args()
    problem = sandbox.sandbox_problem()
    if problem:
        print(f"no sandbox here: {problem}")
        return 1
    n = args.n
    exe, _ = sandbox._interpreter()
    print(f"cores: {os.cpu_count()}   bwrap: {sandbox.bwrap_binary()}   sandboxed python: {exe}   uid: {os.geteuid()}")

    t = time.perf_counter()
    for _ in range(n):
        subprocess.run([exe, "-I", "-S", "-c", "pass"], check=True)
    plain = time.perf_counter() - t
    _rate("plain `python -I -S -c pass` subprocess", n, plain)

    t = time.perf_counter()
    runs = [sandbox.run_program("print(1)") for _ in range(n)]
    seq = time.perf_counter() - t
    assert all(r.status == "ok" for r in runs)
    _rate("sandboxed print(1), sequential", n, seq)

    t = time.perf_counter()
    runs = sandbox.run_many(["print(1)"] * n, workers=2)
    par = time.perf_counter() - t
    assert all(r.status == "ok" for r in runs)
    _rate("sandboxed print(1), run_many workers=2", n, par)
    print(f"sandbox overhead over the plain subprocess: {1000 * (seq - plain) / n:.1f} ms per execution")

    tests = [{"input": f"{i} {i + 1}\n", "output": f"{2 * i + 1}\n"} for i in range(20)]
    gold = json.dumps({"kind": "stdin", "fn_name": None, "time_limit_s": None, "tests": tests})
    response = "<think>.</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    k = max(5, n // 10)
    t = time.perf_counter()
    grades = codegrade.grade_code_many([response] * k, [gold] * k, workers=1)
    one = time.perf_counter() - t
    assert all(g.correct for g in grades)
    t = time.perf_counter()
    for _ in range(k):
        runs = [sandbox.run_program("a, b = map(int, input().split())\nprint(a + b)", stdin=x["input"]) for x in tests]
        assert all(codegrade.stdout_matches(r.stdout, x["output"]) for r, x in zip(runs, tests))
    per_test = time.perf_counter() - t
    print(f"20-test problem, all tests in one execution:      {1000 * one / k:7.1f} ms per response")
    print(f"20-test problem, one execution per test:          {1000 * per_test / k:7.1f} ms per response")
    return 0


if __name__ == "__main__":
    sys.exit(main())
