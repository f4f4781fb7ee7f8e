"""What the GRPO (jobs/train.py) and SFT (jobs/sft.py) jobs share around a transformers
``Trainer``: the ``TrainerCallback``s (``trainer_callbacks``: one ``TrainSignal`` per logged step
into signals.jsonl/signals.parquet; a graceful stop on SIGUSR1/SIGTERM that saves a checkpoint
and hands the signal on), the newest checkpoint to resume from, and the final model save.
torch and transformers are imported inside functions only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ..durable import atomic_write_table
from ..records import Finetune, RunSpec, TrainSignal, to_table
from .models import without_router_logits

SIGNALS_JSONL = "signals.jsonl"
SIGNALS_PARQUET = "signals.parquet"
STOPS_JSONL = "stops.jsonl"  # one line per graceful stop (supervise.STOPS_FILE reads it)
STOP_FILE_ENV = "SCALING_STOP_FILE"  # the supervisor's stop-request file (supervise.STOP_FILE_ENV)


def _ratio(logs: dict[str, Any], num: str, den: str) -> float:
    a, b = logs.get(f"signals/{num}"), logs.get(f"signals/{den}")
    if a is None or not b:
        return math.nan
    return float(a) / float(b)


def signal_row(run: RunSpec, step: int, logs: dict[str, Any]) -> TrainSignal | None:
    """One TrainSignal from a TRL log dict (None for logs without rollout metrics).

    TRL supplies reward, reward_std, frac_reward_zero_std, completions/*, entropy, kl and, with
    vLLM rollouts, its importance-sampling metrics (sampling/*); the reward's ``signals/*`` sums
    and counts give the pooled per-class lengths and accuracy.
    """
    if "reward" not in logs:
        return None

    def get(key: str) -> float:
        v = logs.get(key)
        return math.nan if v is None else float(v)

    return TrainSignal(
        run_id=run.run_id,
        size=run.size,
        step=int(step),
        reward_mean=get("reward"),
        reward_std=get("reward_std"),
        accuracy=_ratio(logs, "n_correct", "n"),
        tokens_mean=_ratio(logs, "tokens_sum", "n") if "signals/n" in logs else get("completions/mean_length"),
        tokens_median=get("signals/tokens_median"),
        tokens_positive_mean=_ratio(logs, "tokens_positive_sum", "n_positive"),
        tokens_negative_mean=_ratio(logs, "tokens_negative_sum", "n_negative"),
        tokens_correct_mean=_ratio(logs, "tokens_correct_sum", "n_correct"),
        tokens_incorrect_mean=_ratio(logs, "tokens_incorrect_sum", "n_incorrect"),
        truncated_frac=get("completions/clipped_ratio"),
        zero_std_frac=get("frac_reward_zero_std"),
        entropy=get("entropy"),
        kl=get("kl"),
        # TRL's vLLM importance-sampling metrics (logged only when rollouts come from vLLM)
        is_ratio_min=get("sampling/importance_sampling_ratio/min"),
        is_ratio_mean=get("sampling/importance_sampling_ratio/mean"),
        is_ratio_max=get("sampling/importance_sampling_ratio/max"),
        logp_diff_mean=get("sampling/sampling_logp_difference/mean"),
        logp_diff_max=get("sampling/sampling_logp_difference/max"),
    )


def read_signals(job_dir: Path) -> list[dict[str, Any]]:
    """Rows of signals.jsonl, one per step (a re-logged step after a resume replaces the old one)."""
    path = job_dir / SIGNALS_JSONL
    by_step: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a torn last line from a crash
                continue
            by_step[int(row["step"])] = row
    return [by_step[k] for k in sorted(by_step)]


def write_signals_parquet(job_dir: Path) -> int:
    """Rewrite signals.parquet atomically from signals.jsonl; returns the row count."""
    rows = read_signals(job_dir)
    atomic_write_table(job_dir / SIGNALS_PARQUET, to_table(rows, TrainSignal))
    return len(rows)


def trainer_callbacks(run: RunSpec, job_dir: Path) -> tuple[Any, Any]:
    """(SignalsCallback, StopOnSignal) — TrainerCallbacks built lazily (transformers import)."""
    from transformers import TrainerCallback

    class SignalsCallback(TrainerCallback):
        """Appends one TrainSignal per logged step to signals.jsonl (fsync'ed) and rewrites
        signals.parquet atomically, so every logged step survives a crash."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            row = signal_row(run, state.global_step, logs)
            if row is None:
                return
            with open(job_dir / SIGNALS_JSONL, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(dataclasses.asdict(row), allow_nan=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            write_signals_parquet(job_dir)

    class StopOnSignal(TrainerCallback):
        """SIGUSR1/SIGTERM, or the supervisor's stop-request file (``SCALING_STOP_FILE``, see
        supervise.py: a request made before ``install`` could hear it, during model or vLLM
        start-up) -> save a checkpoint at the end of the current step (the first step, for a
        request made during start-up) and stop. ``hand_over`` then waits for every rank and
        returns, so the workers exit 0 together (torchrun SIGKILLs the rest of a group 30 s after
        one worker fails: a rank 0 still saving would be killed mid-save)."""

        def __init__(self) -> None:
            self.received: int | None = None
            self.previous: dict[int, Any] = {}
            self.stop_file = os.environ.get(STOP_FILE_ENV) or None

        def install(self) -> None:
            """Install the handlers; idempotent (a second call re-installs ours if a library
            replaced them meanwhile, and keeps the handlers from before the first call)."""
            for sig in (signal.SIGUSR1, signal.SIGTERM):
                current = signal.signal(sig, self._handle)
                if sig not in self.previous:
                    self.previous[sig] = current

        def _handle(self, signum, frame):
            print(f"[train] received signal {signum}: saving a checkpoint at the end of this step", flush=True)
            if self.received is None:  # the first one is the cause (the supervisor forwards SIGUSR1 after Slurm's)
                self.received = signum

        def _requested(self) -> None:
            """A stop request the signal handler could not hear (the file outlives the signal)."""
            if self.received is None and self.stop_file and os.path.exists(self.stop_file):
                print(f"[train] stop requested ({self.stop_file}): saving a checkpoint at the end of this step",
                      flush=True)
                self.received = int(signal.SIGUSR1)

        def on_step_end(self, args, state, control, **kwargs):
            self._requested()
            if self._any_rank_received(args):
                if self.received is None:  # another rank heard it first: stop at the same step
                    self.received = int(signal.SIGUSR1)
                control.should_save = True
                control.should_training_stop = True
            return control

        def _any_rank_received(self, args) -> bool:
            """Every rank must stop (and save, a collective) at the SAME step, though the signal
            reaches each process at a slightly different time: one MAX all-reduce of a flag per
            optimiser step (a few bytes; nothing next to a GRPO step)."""
            flag = self.received is not None
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
                return flag
            import torch

            t = torch.tensor([1.0 if flag else 0.0], device=args.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return bool(t.item() > 0)

        def uninstall(self) -> None:
            for sig, handler in self.previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

        def hand_over(self, trainer: Any = None) -> None:
            """After the checkpoint is saved: wait for every rank (a barrier: in DDP only rank 0
            writes the model and optimizer, the others return from ``train()`` at once), record
            the stop in ``stops.jsonl`` (rank 0: step, signal, checkpoint; the supervisor reads it),
            give the signal to whoever handled it before us, and return: the worker exits 0."""
            signum = self.received
            if signum is None:
                return
            if trainer is not None:
                trainer.accelerator.wait_for_everyone()
                if trainer.is_world_process_zero():
                    with open(job_dir / STOPS_JSONL, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"step": int(trainer.state.global_step), "signal": int(signum),
                                             "checkpoint": newest_checkpoint(job_dir)}) + "\n")
                        fh.flush()
                        os.fsync(fh.fileno())
            prev = self.previous.get(signum)
            self.uninstall()
            if callable(prev):
                prev(signum, None)

    return SignalsCallback(), StopOnSignal()


def newest_checkpoint(job_dir: Path) -> str | None:
    """The newest ``checkpoints/checkpoint-<step>`` with a trainer state, or None."""
    ckdir = job_dir / "checkpoints"
    if not ckdir.is_dir():
        return None
    found = []
    for p in ckdir.glob("checkpoint-*"):
        suffix = p.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (p / "trainer_state.json").is_file():
            found.append((int(suffix), p))
    return str(max(found)[1]) if found else None


def save_final_model(trainer: Any, tokenizer: Any, job_dir: Path, finetune: Finetune) -> Path:
    """Save the (LoRA-merged) model + tokenizer to job_dir/model via a temp dir and a rename.

    Full fine-tuning saves through ``trainer.save_model`` on every rank (it gathers ZeRO-3
    shards); LoRA merges the adapter into the base weights on rank 0 (LoRA is planned without
    ZeRO-3, so rank 0 holds the whole model).
    """
    target = job_dir / "model"
    tmp = job_dir / ".model.tmp"
    main_rank = trainer.is_world_process_zero()
    if main_rank:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    without_router_logits(unwrapped)  # the saved config.json is for generation (eval, GRPO rollouts)
    if finetune is Finetune.lora:
        if main_rank:
            model = unwrapped.merge_and_unload() if hasattr(unwrapped, "merge_and_unload") else unwrapped
            model.save_pretrained(tmp)
    else:
        trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if main_rank:
        tokenizer.save_pretrained(tmp)
        for junk in ("training_args.bin",):
            (tmp / junk).unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target
