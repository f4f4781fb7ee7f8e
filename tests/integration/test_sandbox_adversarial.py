"""Issue 24's adversarial programs through the real bubblewrap sandbox and the code grader: each
is graded not correct, contained, finished within a bound, nothing is written outside the
sandbox and no process of it is left. Under CI=true a sandbox that cannot start FAILS this file
(the CI machine has user namespaces); elsewhere it skips with the reason."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from scaling import codegrade, sandbox

pytestmark = pytest.mark.integration

_PROBLEM = sandbox.sandbox_problem()
if _PROBLEM is not None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the bubblewrap sandbox cannot start on this CI machine: {_PROBLEM}", pytrace=False)
    pytest.skip(f"no sandbox here: {_PROBLEM}", allow_module_level=True)

PER_TEST_S = 2.0  # the per-test limit given to the grader here
# One test -> CPU limit ceil(2 + 1) = 3 s, wall 3 + 2 = 5 s; plus start-up and the kill grace.
BOUND_S = 10.0

STDIN_GOLD = json.dumps({"kind": "stdin", "fn_name": None, "time_limit_s": None,
                         "tests": [{"input": "2 3\n", "output": "5\n"}, {"input": "7 8\n", "output": "15\n"}]})
FN_GOLD = json.dumps({"kind": "functional", "fn_name": "add", "time_limit_s": None,
                      "tests": [{"input": "1\n2", "output": "3"}, {"input": "5\n7", "output": "12"}]})


def _respond(code: str) -> str:
    return f"<think>let me try</think>\n```python\n{code}\n```\n"


def _own_leftovers() -> list[int]:
    """Processes whose command line carries this test process's sandbox marker."""
    mark = f"{sandbox.MARKER}:{os.getpid()}:".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _grade(code: str, gold: str = STDIN_GOLD):
    start = time.monotonic()
    [grade] = codegrade.grade_code_many([_respond(code)], [gold], timeout_s=PER_TEST_S, workers=1)
    took = time.monotonic() - start
    deadline = time.monotonic() + 3.0
    while _own_leftovers() and time.monotonic() < deadline:  # the kernel reaps a pid namespace asynchronously
        time.sleep(0.05)
    assert _own_leftovers() == [], "a sandboxed process outlived its execution"
    assert took < BOUND_S, f"took {took:.1f} s"
    assert not grade.correct
    return grade


def test_reference_solutions_pass():
    """The golds are passable: the adversarial failures below are not a broken harness."""
    g1 = codegrade.grade_code_many([_respond("a, b = map(int, input().split())\nprint(a + b)")], [STDIN_GOLD])
    g2 = codegrade.grade_code_many([_respond("def add(a, b):\n    return a + b")], [FN_GOLD])
    assert [g1[0].status, g2[0].status] == ["ok", "ok"]


def test_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert _grade(bomb).status in ("timeout", "runtime_error")  # fork fails: the seccomp filter
    # With forking allowed, RLIMIT_NPROC in the sandbox's user namespace holds the bomb.
    counted = bomb.replace("        os.fork()", "        os.fork()\n        print(os.getpid(), flush=True)")
    run = sandbox.run_program(counted, limits=sandbox.Limits(cpu_s=2, processes=32, fork=True))
    assert run.status == "timeout" and run.wall_s < BOUND_S
    assert 0 < len(set(run.stdout.split())) < 32  # distinct pids that ever ran: under the cap
    deadline = time.monotonic() + 3.0
    while _own_leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _own_leftovers() == []
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


def test_infinite_loop_times_out():
    assert _grade("while True:\n    pass").status == "timeout"


def test_ten_gigabytes_are_refused():
    assert _grade("x = bytearray(10 * 1024 ** 3)\nprint(5)").status == "memory"


def test_no_network_not_even_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                "s.sendall(b'hello')\nprint(5)")
        assert _grade(code).status == "runtime_error"
        with pytest.raises(socket.timeout):
            server.accept()  # no connection ever arrived


def test_writes_to_home_stay_inside(tmp_path):
    host_home = Path(os.path.expanduser("~"))
    name = f"pwned-{secrets.token_hex(4)}"
    targets = [host_home / name, tmp_path / name, Path("/tmp") / name]
    before = sorted(p.name for p in tmp_path.iterdir())
    code = "import os\n" + "".join(
        f"try:\n    open({str(t)!r}, 'w').write('x')\nexcept OSError:\n    pass\n" for t in targets
    ) + f"open(os.path.join(os.path.expanduser('~'), {name!r}), 'w').write('x')\nprint(1)"
    assert _grade(code).status == "failed_test"
    assert not any(t.exists() for t in targets)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_environment_secret_is_not_visible(monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("SCALING_TEST_SECRET", secret)
    code = ("import os\nprint(dict(os.environ))\n"
            "for p in ('/proc/1/environ', '/proc/self/environ', f'/proc/{os.getppid()}/environ'):\n"
            "    try:\n        print(open(p, 'rb').read())\n    except OSError as e:\n        print(e)")
    assert _grade(code).status == "failed_test"
    run = sandbox.run_program(code)
    assert run.status == "ok" and "PATH" in run.stdout  # it did print its environment
    assert secret not in run.stdout + run.stderr


def test_killing_the_parent_harms_nobody():
    me, runner = os.getpid(), os.getppid()
    code = ("import os, signal\n"
            f"for f in (lambda: os.kill(os.getppid(), 9), lambda: os.kill({me}, 9), lambda: os.kill(1, 9),\n"
            f"          lambda: os.killpg({os.getpgid(0)}, 9), lambda: os.kill(-1, 9), lambda: os.killpg(0, 9)):\n"
            "    try:\n        f()\n    except Exception:\n        pass\nprint(5)")
    assert _grade(code).status in ("runtime_error", "failed_test", "timeout")
    assert os.getppid() == runner  # we are alive and our parent (the runner) too
    os.kill(runner, 0)


def test_printing_a_gigabyte_is_cut():
    start = time.monotonic()
    assert _grade("import sys\nfor _ in range(16 * 1024):\n    sys.stdout.write('x' * 65536)").status in (
        "output_limit", "failed_test")
    run = sandbox.run_program("import sys\nfor _ in range(16 * 1024):\n    sys.stdout.write('x' * 65536)")
    assert run.status == "output_limit" and len(run.stdout) <= sandbox.Limits().output_bytes
    assert time.monotonic() - start < BOUND_S


def test_exit_before_the_tests_run():
    assert _grade("import os\nos._exit(0)", FN_GOLD).status == "runtime_error"
    assert _grade("import os\nprint('5')\nos._exit(0)").status in ("runtime_error", "failed_test")


def test_sys_modules_tricks_cannot_fake_a_pass():
    trick = (
        "import sys, json, builtins, types\n"
        "json.dumps = lambda *a, **k: '3'\n"  # every recorded value would read 3
        "fake = types.ModuleType('json'); fake.dumps = json.dumps; fake.loads = json.loads\n"
        "sys.modules['json'] = fake\n"
        "builtins.print = lambda *a, **k: sys.__stdout__.write('PASS\\n')\n"
        "print('all tests passed')\n"
        "def add(a, b):\n    return 3"
    )
    assert _grade(trick, FN_GOLD).status in ("failed_test", "runtime_error")  # the patched json breaks records
    assert _grade("import sys\nsys.stdout.write('PASS\\n' * 3)\nsys.modules.clear()").status in (
        "failed_test", "runtime_error")


def test_sleep_past_the_timeout():
    start = time.monotonic()
    assert _grade("import time\ntime.sleep(60)\nprint(5)").status == "timeout"
    assert time.monotonic() - start < PER_TEST_S + 3.0
