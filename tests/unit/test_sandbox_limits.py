"""scaling.sandbox: the limits and statuses of one execution, the environment and file system a
program sees, and run_many's order. Skips where bwrap cannot start (the adversarial integration
test fails there under CI=true instead)."""

from __future__ import annotations

import os
import subprocess

import pytest

from scaling import sandbox
from scaling.sandbox import Limits, run_many, run_program

needs_sandbox = pytest.mark.skipif(sandbox.sandbox_problem() is not None,
                                   reason=f"no sandbox here: {sandbox.sandbox_problem()}")


def test_limits_defaults_and_checks():
    assert Limits().wall_s == Limits().cpu_s + sandbox.WALL_MARGIN_S
    assert Limits(cpu_s=1, wall_s=9).wall_s == 9
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)


@needs_sandbox
def test_ok_stdin_and_exit_codes():
    run = run_program("print(input()[::-1])", stdin="abc\n")
    assert (run.status, run.returncode, run.stdout) == ("ok", 0, "cba\n")
    assert run_program("raise SystemExit(3)").status == "error"
    assert run_program("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)").status == "killed"


@needs_sandbox
def test_what_the_program_sees():
    code = ("import os, resource\nprint(sorted(os.environ))\nprint(os.getcwd(), os.listdir('/tmp'))\n"
            "print(resource.getrlimit(resource.RLIMIT_NPROC)[0], resource.getrlimit(resource.RLIMIT_CORE)[0])\n"
            "print(open('/tmp/data.txt').read())\n"
            "try:\n    open('/usr/x', 'w')\nexcept OSError as e:\n    print('ro', e.errno)")
    run = run_program(code, extra_files={"data.txt": "hello"}, limits=Limits(processes=17))
    lines = run.stdout.splitlines()
    assert run.status == "ok", run.stderr
    assert lines[0] == "['HOME', 'LANG', 'PATH', 'PWD']"
    assert lines[1] == "/tmp ['data.txt', 'main.py']"
    assert lines[2] == "17 0"
    assert lines[3] == "hello"
    assert lines[4].startswith("ro ")
    with pytest.raises(ValueError, match="plain file name"):
        run_program("pass", extra_files={"../x": ""})


@needs_sandbox
def test_cpu_wall_memory_output_file_size():
    assert run_program("while True:\n    pass", limits=Limits(cpu_s=1)).status == "timeout"
    slow = run_program("import time\ntime.sleep(30)", limits=Limits(cpu_s=1, wall_s=1.5))
    assert slow.status == "timeout" and slow.wall_s < 5
    assert run_program("x = bytearray(2 << 30)", limits=Limits(memory_mb=256)).status == "memory"
    out = run_program("import sys\nwhile True:\n    sys.stdout.write('y' * 4096)", limits=Limits(output_bytes=10_000))
    assert out.status == "output_limit" and len(out.stdout) == 10_000
    big = run_program("open('/tmp/f', 'wb').write(b'z' * (3 << 20))", limits=Limits(file_size_mb=1))
    assert big.status == "error" and "File too large" in big.stderr  # Python ignores SIGXFSZ: EFBIG


@needs_sandbox
def test_processes_are_capped():
    code = ("import os\nkids = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        import time; time.sleep(3); os._exit(0)\n    kids += 1\nprint(kids)")
    # 20 host processes of the uid the sandbox runs as (nobody when we are root): RLIMIT_NPROC
    # counts per user namespace, so they do not eat into the sandbox's 8.
    as_sandbox = {"user": sandbox.NOBODY, "group": sandbox.NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    others = [subprocess.Popen(["sleep", "30"], **as_sandbox) for _ in range(20)]
    try:
        run = run_program(code, limits=Limits(processes=8, fork=True))
    finally:
        for p in others:
            p.kill()
            p.wait()
    assert run.status == "ok" and 4 <= int(run.stdout) < 8  # bwrap's init and the program count too


@needs_sandbox
def test_new_processes_are_refused_but_threads_run():
    fork = "import os\ntry:\n    os.fork()\n    print('forked')\nexcept OSError as e:\n    print(e.errno)"
    assert run_program(fork).stdout.split() == ["1"]  # EPERM from the seccomp filter
    spawn = "import subprocess\ntry:\n    subprocess.run(['true'])\nexcept OSError as e:\n    print(e.errno)"
    assert run_program(spawn).stdout.split() == ["1"]
    threads = "from concurrent.futures import ThreadPoolExecutor\nprint(sum(ThreadPoolExecutor(8).map(abs, range(-9, 0))))"
    assert run_program(threads).stdout.split() == ["45"]


@needs_sandbox
def test_run_many_keeps_order():
    items = [f"print({i})" for i in range(6)] + [{"source": "print(input())", "stdin": "x"}]
    runs = run_many(items, workers=2)
    assert [r.stdout.strip() for r in runs] == [str(i) for i in range(6)] + ["x"]
    assert run_many([]) == []


def test_unsandboxed_applies_the_same_limits():
    run = run_program("import resource, os\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20, os.environ.get('HOME') != None)",
                      limits=Limits(memory_mb=300), allow_unsandboxed=True)
    assert run.status == "ok" and run.stdout.split()[0] == "300"
    assert run_program("while True:\n    pass", limits=Limits(cpu_s=1), allow_unsandboxed=True).status == "timeout"
    assert "SCALING" not in run_program("import os; print(os.environ)", allow_unsandboxed=True).stdout
