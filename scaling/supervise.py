"""What runs on the allocation: job bodies, and the supervision of training workers.

Everything here executes on the node (or in this process for the debug executor); the launcher
only builds and pickles the bodies. No scheduler is named here: submitit's requeue glue is
``slurm.CheckpointableBody``, a ``SupervisedBody`` that submitit can checkpoint.

* ``run_entry(entry, run_yaml, item)``: import ``entry`` ("module:function") and call it with the
  run.yaml path (and array item), under the run's one-writer lock;
* ``JobBody``: that call as a picklable object (strings only: no environment, no tokens);
* ``SupervisedBody``: the training body. It starts the workers (``jobs.multinode``) in their own
  sessions and, when the scheduler's warning signal arrives, sends SIGUSR1 to the workers
  themselves (the launcher's descendants, found in /proc), which save a checkpoint and exit;
  ``stop_workers`` waits for them (bounded) before a requeue;
* ``descendants(pid)``, ``signal_tree(pid, signum)``: the process tree below a pid, and a signal to all of it.

Secrets (``SECRET_ENV_VARS``) reach jobs through the environment only.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import studydir as sd
from .errors import LaunchError
from .records import VllmMode

# Tokens pass to jobs through the environment only; launch refuses to write them anywhere.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# Seconds between Slurm's warning signal and the kill for checkpointable (training) jobs: time for
# the largest sizes to write a ZeRO-3 checkpoint (labelled default, not from a paper).
# slurmformat.executor_params passes it as ``--signal``; the workers get all of it but 30 s
# (``SupervisedBody.grace_s``).
SIGNAL_DELAY_CHECKPOINT_S = 300


# ----------------------------------------------------------------------------- bodies
def run_entry(entry: str, run_yaml: str, item: str | None = None) -> Any:
    """Import ``entry`` ("package.module:function") and call it with the run.yaml path (and item)."""
    module_name, _, func_name = entry.partition(":")
    if not module_name or not func_name:
        raise LaunchError(f"job entry {entry!r} is not 'module:function'")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    if func is None:
        raise LaunchError(f"job entry {entry!r}: {module_name} has no {func_name}")
    # one live writer per run (item): a twin job stops here. Every job body, including the
    # training workers a SupervisedBody starts, comes through this function; of a multi-process
    # job only global rank 0 takes the lock (the other ranks are the same writer).
    with sd.writer_lock(Path(run_yaml).parent, item):
        return func(run_yaml) if item is None else func(run_yaml, item)


@dataclass
class JobBody:
    """What runs on the allocation: a picklable call of ``entry`` with the run.yaml path.

    Only strings are pickled (no environment, no tokens); the entry is imported on the node.
    """

    entry: str
    run_yaml: str
    item: str | None = None

    def __call__(self) -> Any:
        return run_entry(self.entry, self.run_yaml, self.item)


# ------------------------------------------------------------------------- supervision
def _preempt_signal() -> int:
    """The signal Slurm sends before the time limit (submitit's ``--signal``; USR2 unless
    SUBMITIT_PREEMPT_SIGNAL says otherwise)."""
    return int(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")))


class SupervisedBody(JobBody):
    """Training job body (``JobSpec.checkpointable``).

    Runs the worker (``jobs.multinode.worker_command``: ``accelerate launch`` on each node for
    multi-GPU runs, else one Python process) in its own process group. When Slurm's warning
    signal arrives (time limit or preemption), every node forwards SIGUSR1 to its workers, which
    save a checkpoint at the end of the step and exit (jobs/trainer_hooks.py ``StopOnSignal``); rank 0
    then waits for them (``stop_workers``), and the scheduler requeues the job, which resumes from
    ``job_dir/checkpoints/checkpoint-*``.
    """

    grace_s: float = SIGNAL_DELAY_CHECKPOINT_S - 30

    def __call__(self) -> Any:
        from .jobs.common import read_run
        from .jobs.multinode import worker_processes

        run = read_run(self.run_yaml)
        job_dir = Path(self.run_yaml).parent
        model_path = None
        if run.train is not None and run.train.vllm_mode == VllmMode.server:
            from .jobs.models import resolve_model

            model_path = resolve_model(run, job_dir.parents[1])
        procs = worker_processes(run, dict(os.environ), job_dir, entry=self.entry, model_path=model_path)
        sig = _preempt_signal()

        def ignore(*signals: int) -> Any:
            def apply() -> None:  # Slurm signals every process of the step; workers hear only our SIGUSR1
                for s in signals:
                    signal.signal(s, signal.SIG_IGN)
            return apply

        server = None
        proc = None
        try:
            for role, cmd, extra in procs:
                env = {**os.environ, **extra}
                if role == "server":  # stays up until the workers are gone (they need it to finish a step)
                    server = subprocess.Popen(cmd, env=env, start_new_session=True,
                                              preexec_fn=ignore(sig, signal.SIGUSR1))
                else:  # the launcher ignores SIGUSR1 (torchrun has no handler for it: it would die);
                    # the training workers install their own handler (jobs/trainer_hooks.py StopOnSignal)
                    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                            preexec_fn=ignore(sig, signal.SIGUSR1))
            if proc is None:
                raise RuntimeError(f"{self.entry}: no worker process planned")
            self._child_pid = proc.pid
            self._forwarded = False
            previous = signal.getsignal(sig)

            def forward(signum: int, frame: Any) -> None:
                self._forward()
                if callable(previous):
                    previous(signum, frame)  # submitit: checkpoint() on rank 0, then requeue

            signal.signal(sig, forward)
            rc = proc.wait()
        finally:
            if server is not None:
                _stop_group(server.pid)
        if rc != 0:
            why = " after a stop signal (checkpoint saved; `scaling resume` continues it)" if self._forwarded else ""
            raise RuntimeError(f"{self.entry} {self.run_yaml} exited with status {rc}{why}")
        return None

    def _forward(self) -> None:
        """SIGUSR1 to the worker process and every process below it. torchrun (under
        ``accelerate launch``) starts each worker in a new session, so signalling the launcher's
        process group would miss them; the launcher itself ignores SIGUSR1 (see ``__call__``)."""
        pid = getattr(self, "_child_pid", None)
        if pid and not getattr(self, "_forwarded", False):
            self._forwarded = True
            signal_tree(pid, signal.SIGUSR1)

    def stop_workers(self) -> None:
        """Before a requeue: forward the stop signal, wait (bounded by ``grace_s``) for the workers
        to save and exit, then SIGTERM whatever is left."""
        self._forward()
        pid = getattr(self, "_child_pid", None)
        if pid and not _reaped(pid, self.grace_s, poll_s=1.0):
            signal_tree(pid, signal.SIGTERM)

    def __getstate__(self) -> dict[str, Any]:  # only the strings travel (no pids, no handlers)
        return {"entry": self.entry, "run_yaml": self.run_yaml, "item": self.item}


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (children first), read from /proc (Linux): the workers that
    ``accelerate launch``/torchrun started in their own sessions."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may contain spaces
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in sorted(children.get(todo.pop(0), [])):
            out.append(child)
            todo.append(child)
    return out


def signal_tree(pid: int, signum: int) -> list[int]:
    """Send ``signum`` to ``pid`` (and its process group, when it leads one) and to each of its
    descendants; returns the pids."""
    pids = [pid, *descendants(pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signum)
    return pids


def _stop_group(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM a process group, then SIGKILL it after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if _reaped(pid, grace_s, poll_s=0.5):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _reaped(pid: int, grace_s: float, *, poll_s: float) -> bool:
    """Wait up to ``grace_s`` for our child ``pid`` to exit (reaping it); True if it did or is gone."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        time.sleep(poll_s)
    return False
