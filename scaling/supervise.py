"""What runs on the allocation: job bodies, and the supervision of training workers.

Everything here executes on the node (or in this process for the debug executor); the launcher
only builds and pickles the bodies. No scheduler is named here: submitit's requeue glue is
``slurm.CheckpointableBody``, a ``SupervisedBody`` that submitit can checkpoint.

* ``run_entry(entry, run_yaml, item)``: import ``entry`` ("module:function") and call it with the
  run.yaml path (and array item), under the run's one-writer lock;
* ``JobBody``: that call as a picklable object (strings only: no environment, no tokens);
* ``SupervisedBody``: the training body. It starts the workers (``jobs.multinode``) in their own
  sessions and, when the scheduler's warning signal or SIGTERM arrives, writes the stop-request
  file (``SCALING_STOP_FILE``) and sends SIGUSR1 to the workers themselves (the launcher's
  descendants, found in /proc), which save a checkpoint at the end of the step (the first step,
  when the request came during start-up) and exit 0; ``stop_workers`` waits for them (bounded)
  before a requeue;
* ``descendants(pid)``, ``signal_tree(pid, signum)``: the process tree below a pid, and a signal to all of it.

Secrets (``SECRET_ENV_VARS``) reach jobs through the environment only.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import studydir as sd
from .errors import LaunchError
from .records import VllmMode

# Tokens pass to jobs through the environment only; launch refuses to write them anywhere.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# Seconds between Slurm's warning signal and the kill for checkpointable jobs the plan gave no lead
# (``JobSpec.signal_delay_s == 0``; training gets ``capacity.stop_lead_s``: the longest step + the
# checkpoint's write, at least this) (labelled default, not from a paper).
# slurmformat.executor_params passes it as ``--signal``; the workers get all of it but 30 s
# (``SupervisedBody.grace_s``).
SIGNAL_DELAY_CHECKPOINT_S = 300
# The stop request as a file (issue 22, finding 6): a signal the workers cannot hear yet (they
# ignore SIGUSR1/SIGTERM until jobs/train.py installs its handler, during model and vLLM start-up)
# is not lost: the trainer callback (jobs/trainer_hooks.py ``StopOnSignal``) looks for this file at
# every step end. One node-local file per node and attempt (a temporary directory of the supervisor).
STOP_FILE_ENV = "SCALING_STOP_FILE"
STOPS_FILE = "stops.jsonl"  # one line per graceful stop, appended by rank 0 after the save (jobs/train.py)
# torchrun's own signal handling without SIGTERM (its default is SIGTERM,SIGINT,SIGHUP,SIGQUIT:
# torch/distributed/run.py ``--signals-to-handle``, read from PET_SIGNALS_TO_HANDLE). On SIGTERM
# torchrun raises, SIGTERMs its workers and SIGKILLs them 30 s later (elastic/multiprocessing/api.py
# ``_close``), mid-save; without its handler the launcher keeps the SIG_IGN it inherits from us
# and waits for the workers, which save on SIGTERM themselves (issue 22, finding 7).
LAUNCHER_SIGNALS = "SIGINT,SIGHUP,SIGQUIT"


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
    signal arrives (time limit or preemption), every node writes the stop-request file and
    forwards SIGUSR1 to its workers, which save a checkpoint at the end of the step, wait for each
    other and exit 0 (jobs/trainer_hooks.py ``StopOnSignal``); rank 0 then waits for them
    (``stop_workers``), and the scheduler requeues the job, which resumes from
    ``job_dir/checkpoints/checkpoint-*``. The other nodes exit 0 once their workers are done, so
    that srun (``KillOnBadExit=1``) cannot end rank 0's task before its ``scontrol requeue``.

    SIGTERM (preemption without ``send_user_signal``: Slurm's SIGTERM, then SIGKILL after
    ``GraceTime``) stops the workers the same way; rank 0 then requeues like on the warning when
    the job is still RUNNING (a preemption's grace time, ``scancel --signal=TERM``), and not when
    Slurm is already ending it (COMPLETING: ``scancel``, the time limit), where the saved
    checkpoint is for ``scaling resume``.
    """

    stop_lead_s: int = 0  # the job's --signal lead (JobSpec.signal_delay_s; slurm.wrap_body sets it); 0 = default

    @property
    def grace_s(self) -> float:
        """How long rank 0 waits for the workers' save: the lead but 30 s."""
        return float(self.stop_lead_s or SIGNAL_DELAY_CHECKPOINT_S) - 30

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
        stop_dir = tempfile.mkdtemp(prefix="scaling-stop-")
        self._stop_file = os.path.join(stop_dir, "stop")
        stops_before = _line_count(job_dir / STOPS_FILE)
        self._forwarded = False
        self._stopping = False

        def ignore(*signals: int) -> Any:
            def apply() -> None:  # Slurm signals every process of the step; workers hear only our SIGUSR1
                for s in signals:
                    signal.signal(s, signal.SIG_IGN)
            return apply

        server = None
        proc = None
        previous = signal.getsignal(sig)
        previous_term = signal.getsignal(signal.SIGTERM)

        def requeue(frame: Any) -> None:
            """submitit's own stop path (its handler of the warning signal): checkpoint() on rank 0,
            i.e. wait for the workers' save, then ``scontrol requeue`` and exit. Once per attempt."""
            if callable(previous) and not self._stopping:
                self._stopping = True
                previous(sig, frame)

        def forward(signum: int, frame: Any) -> None:
            self._forward()
            requeue(frame)

        def on_term(signum: int, frame: Any) -> None:
            self._forward()
            if callable(previous_term):
                previous_term(signum, frame)  # submitit's: logs "Bypassing signal SIGTERM"
            if _node_rank() == 0 and not self._stopping and _still_running():
                requeue(frame)

        try:
            for role, cmd, extra in procs:
                env = {**os.environ, **extra, STOP_FILE_ENV: self._stop_file}
                if role == "server":  # stays up until the workers are gone (they need it to finish a step)
                    server = subprocess.Popen(cmd, env=env, start_new_session=True,
                                              preexec_fn=ignore(sig, signal.SIGUSR1))
                else:  # the launcher ignores SIGUSR1 (torchrun has no handler for it: it would die) and
                    # SIGTERM (LAUNCHER_SIGNALS); the training workers install their own handler
                    # (jobs/trainer_hooks.py StopOnSignal) and read the stop file
                    env["PET_SIGNALS_TO_HANDLE"] = LAUNCHER_SIGNALS
                    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                            preexec_fn=ignore(sig, signal.SIGUSR1, signal.SIGTERM))
            if proc is None:
                raise RuntimeError(f"{self.entry}: no worker process planned")
            self._child_pid = proc.pid
            signal.signal(sig, forward)
            signal.signal(signal.SIGTERM, on_term)
            rc = proc.wait()
            # the workers stopped at a signal: ours (forwarded), or one they heard themselves
            stopped = self._forwarded or _line_count(job_dir / STOPS_FILE) > stops_before
            if rc == 0 and stopped and not sd.is_done(job_dir) and _node_rank() == 0 and _still_running():
                requeue(None)  # a stop we did not forward (SIGTERM to the workers only): requeue too
        finally:
            signal.signal(signal.SIGTERM, previous_term)
            if server is not None:
                _stop_group(server.pid)
            shutil.rmtree(stop_dir, ignore_errors=True)
        why = " after a stop signal (checkpoint saved; `scaling resume` continues it)" if stopped else ""
        if stopped and _node_rank() != 0:  # the requeue is rank 0's; a failed task here could make srun
            if rc != 0:  # (KillOnBadExit=1) end rank 0's before its scontrol requeue (finding 5)
                print(f"[supervise] node {_node_rank()}: workers exited with status {rc}{why}", flush=True)
            return None
        if rc != 0:
            raise RuntimeError(f"{self.entry} {self.run_yaml} exited with status {rc}{why}")
        if stopped and not sd.is_done(job_dir) and _node_rank() == 0:
            raise RuntimeError(f"{self.entry} {self.run_yaml} stopped{why}")
        return None  # other nodes exit 0 after a stop: rank 0 requeues (finding 5)

    def _forward(self) -> None:
        """The stop request: the stop file (read at every step end, so a request that arrives
        before the workers' handler exists is honoured at the first step), then SIGUSR1 to the
        worker process and every process below it. torchrun (under ``accelerate launch``) starts
        each worker in a new session, so signalling the launcher's process group would miss them;
        the launcher itself ignores SIGUSR1 (see ``__call__``)."""
        pid = getattr(self, "_child_pid", None)
        if pid and not getattr(self, "_forwarded", False):
            self._forwarded = True
            stop_file = getattr(self, "_stop_file", None)
            if stop_file:
                with contextlib.suppress(OSError):
                    Path(stop_file).write_text(f"{int(signal.SIGUSR1)} {time.time():.0f}\n")
            signal_tree(pid, signal.SIGUSR1)

    def stop_workers(self) -> None:
        """Before a requeue: forward the stop signal, wait (bounded by ``grace_s``) for the workers
        to save and exit, then SIGTERM whatever is left."""
        self._forward()
        pid = getattr(self, "_child_pid", None)
        if pid and not _reaped(pid, self.grace_s, poll_s=1.0):
            signal_tree(pid, signal.SIGTERM)

    def __getstate__(self) -> dict[str, Any]:  # only the strings and the lead travel (no pids, no handlers)
        return {"entry": self.entry, "run_yaml": self.run_yaml, "item": self.item, "stop_lead_s": int(self.stop_lead_s)}


def _node_rank() -> int:
    """This task's rank (one task per node): SLURM_PROCID, as submitit's ``global_rank`` reads it,
    else SLURM_NODEID; 0 outside Slurm."""
    for key in ("SLURM_PROCID", "SLURM_NODEID"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 0


def _still_running() -> bool:
    """Whether Slurm still runs this job (``squeue`` state RUNNING): true in a preemption's
    grace time and after ``scancel --signal``; false once Slurm ends it (COMPLETING after
    ``scancel`` or the time limit, measured on the CI cluster), and outside Slurm or when squeue
    does not answer: then nothing is requeued and ``scaling resume`` continues from the checkpoint."""
    job_id = os.environ.get("SLURM_JOB_ID")  # checkpointable bodies are never array tasks (slurm.wrap_body)
    if not job_id:
        return False
    try:
        res = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                             timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and res.stdout.split()[:1] == ["RUNNING"]


def _line_count(path: Path) -> int:
    try:
        return len(path.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return 0


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
