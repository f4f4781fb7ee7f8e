"""Graceful stops of a real training job under the real supervisor (issue 22, findings 5 and 6).

Each test runs ``supervise.SupervisedBody`` -- the training body every checkpointable Slurm job
runs on each of its nodes -- in its own Python process (it installs signal handlers), with the real
``scaling.jobs.train`` worker on the tiny model. A stand-in for submitit's handler of the warning
signal (SIGUSR2) is installed first, as submitit does on the node; the warning is then sent to the
supervisor process, as Slurm's ``--signal`` does.

* finding 5: two "nodes" on localhost (two supervisors, each with its own ``accelerate launch``,
  meeting at the rendezvous the multi-node builder sets). After the stop, node 1 must exit 0:
  before the fix its workers exited 138, node 1 raised, and on ``KillOnBadExit=1`` clusters srun
  could then kill node 0's task before its ``scontrol requeue``;
* finding 6: the warning reaches the supervisor as soon as the worker process exists, long before
  the worker can have installed its handler (it has not even imported torch). Before the fix the
  worker ignored the forwarded SIGUSR1 and trained to the end; now the stop-request file makes it
  save at the first step.

About 40 s (one process) and 70 s (two nodes) on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_accelerate_real import REPO, _env, _free_port, _train_job

pytestmark = pytest.mark.integration

# The node side of a job: submitit's SIGUSR2 handler is there before the body runs (a stand-in that
# only records the call: this is not Slurm, nothing can be requeued); the warning is sent when the
# supervisor has started its worker and installed its own handler ("startup"), or once the run has
# logged a step ("logged:<signals.jsonl>").
_DRIVER = r"""
import os, signal, sys, threading, time
from scaling.supervise import SupervisedBody

body = SupervisedBody("scaling.jobs.train:main", sys.argv[1])
mode = sys.argv[2]

def stand_in(signum, frame):
    print("[driver] submitit's handler called", flush=True)

signal.signal(signal.SIGUSR2, stand_in)

def warn():
    while getattr(body, "_child_pid", None) is None or signal.getsignal(signal.SIGUSR2) is stand_in:
        time.sleep(0.002)
    if mode.startswith("logged:"):
        path = mode.split(":", 1)[1]
        while not (os.path.exists(path) and open(path).read().strip()):
            time.sleep(0.1)
    print(f"[driver] warning signal (worker alive: {os.path.exists(f'/proc/{body._child_pid}')})", flush=True)
    os.kill(os.getpid(), signal.SIGUSR2)

threading.Thread(target=warn, daemon=True).start()
try:
    body()
except RuntimeError as err:
    print(f"[driver] body raised: {err}", flush=True)
    sys.exit(3)
print("[driver] body returned", flush=True)
"""


def _stops(job: Path) -> list[dict]:
    path = job / "stops.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_warning_during_worker_startup_is_honoured_at_the_first_step(tmp_path, tiny_qwen3_dir):
    job = _train_job(tmp_path, tiny_qwen3_dir, nodes=1, gpus=0)
    _steps(job, 6)
    res = subprocess.run([sys.executable, "-c", _DRIVER, str(job / "run.yaml"), "startup"], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert "[driver] warning signal (worker alive: True)" in out, out[-3000:]
    stops = _stops(job)
    assert [s["step"] for s in stops] == [1], f"the warning during start-up was lost (stops {stops})\n" + out[-3000:]
    assert (job / "checkpoints" / "checkpoint-1" / "trainer_state.json").is_file()
    assert not (job / "DONE").exists()
    # the worker exited 0 after the save; rank 0 reports the stop (outside Slurm nothing requeues)
    assert res.returncode == 3 and "stopped after a stop signal" in out, out[-3000:]


def test_two_node_stop_every_node_exits_zero_after_the_save(tmp_path, tiny_qwen3_dir):
    job = _train_job(tmp_path, tiny_qwen3_dir, nodes=2, gpus=1)
    _steps(job, 40)
    port = str(_free_port())
    envs = [_env(SLURM_JOB_ID="7", SLURM_JOB_NODELIST="localhost,localhost", SLURM_NODEID=str(rank),
                 MASTER_PORT=port) for rank in (0, 1)]
    mode = f"logged:{job / 'signals.jsonl'}"
    procs = [subprocess.Popen([sys.executable, "-c", _DRIVER, str(job / "run.yaml"), mode], cwd=REPO, env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for e in envs]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=400)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    both = "\n----\n".join(o[-3000:] for o in outs)
    stops = _stops(job)
    assert len(stops) == 1 and 1 <= stops[0]["step"] < 40, both
    assert (job / "checkpoints" / f"checkpoint-{stops[0]['step']}" / "rng_state_1.pth").is_file(), both
    assert procs[1].returncode == 0 and "[driver] body returned" in outs[1], both  # finding 5
    assert procs[0].returncode == 3 and "stopped after a stop signal" in outs[0], both  # rank 0: the requeue's side
    assert not any("failed (exitcode" in o or "closing signal" in o for o in outs), both  # finding 4


def _steps(job: Path, steps: int) -> None:
    """More steps than _train_job's 2: the stop must come before the end."""
    import yaml

    data = yaml.safe_load((job / "run.yaml").read_text())
    data["train"]["max_steps"] = steps
    (job / "run.yaml").write_text(yaml.safe_dump(data))
