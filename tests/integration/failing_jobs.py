"""Job bodies that fail the way real runs fail, for the tests of ``scaling status`` / ``scaling logs``
(tests/integration/test_failed_runs.py). Each is a real job entry (``main(run_yaml)``), run by the
real local or debug executor; each prints a few lines first, as a real job does, so the exception
is never the log's only line.

* ``missing_dataset``: the job's own loader (``scaling.jobs.data.load_problems``) on a local file
  that is not there, the error an SFT or GRPO job gives for a wrong ``dataset.source``;
* ``cuda_oom``: ``torch.OutOfMemoryError`` raised on purpose, with PyTorch's CUDA message (there is
  no GPU here to run out of);
* ``bad_checkpoint``: resumes from ``checkpoints/checkpoint-3`` whose ``trainer_state.json`` was cut
  mid-write, read by transformers' own ``TrainerState.load_from_json`` (what ``Trainer.train``
  calls on resume);
* ``killed``: SIGKILLs itself (the kernel's OOM killer, ``kill -9``, a node lost);
* ``hang``: sleeps past its time limit (the executor times it out).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _chatter(run_yaml: str, what: str) -> Path:
    job_dir = Path(run_yaml).parent
    for i in range(3):
        print(f"[{what}] start-up line {i}: {job_dir.name}", flush=True)
    print(f"[{what}] a warning on stderr, not the cause", file=sys.stderr, flush=True)
    return job_dir


def missing_dataset(run_yaml: str) -> None:
    from scaling.jobs.data import load_problems
    from scaling.records import DatasetSpec

    job_dir = _chatter(run_yaml, "sft")
    load_problems(DatasetSpec(source=str(job_dir / "data" / "sft_traces.jsonl")))


def cuda_oom(run_yaml: str) -> None:
    import torch

    _chatter(run_yaml, "train")
    raise torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
        "1.03 GiB is free. Of the allocated memory 75.01 GiB is allocated by PyTorch; lower "
        "train.per_device_batch or raise resources.train.gpus_per_node")


def bad_checkpoint(run_yaml: str) -> None:
    from transformers import TrainerState

    from scaling.jobs.trainer_hooks import newest_checkpoint

    job_dir = _chatter(run_yaml, "train")
    ckpt = job_dir / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "trainer_state.json").write_text('{"global_step": 3, "log_history": [{"loss": 0.4')  # cut mid-write
    newest = newest_checkpoint(job_dir)
    print(f"[train] resuming from {newest}", flush=True)
    TrainerState.load_from_json(os.path.join(newest, "trainer_state.json"))


def killed(run_yaml: str) -> None:
    _chatter(run_yaml, "train")
    print("[train] step 1/10", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def hang(run_yaml: str) -> None:
    _chatter(run_yaml, "eval")
    time.sleep(float(os.environ.get("SCALING_TEST_SLEEP_S", "600")))
