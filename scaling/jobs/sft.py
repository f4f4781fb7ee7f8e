"""Optional SFT stage ("supervision", Paper B arXiv 2505.07961): fine-tune on reasoning traces
with TRL ``SFTTrainer`` before RL.

What it does: loads ``sft.dataset`` (problem column -> prompt through the model's chat
template, ``sft.text_column`` -> completion, the trace including its ``<think>`` block), trains
with the loss on the completion only (TRL's prompt-completion format; the EOS token is appended
by TRL), resumes from the newest ``checkpoints/checkpoint-*``, saves on SIGUSR1/SIGTERM like
the train job, saves the model to ``job_dir/model`` and writes ``DONE`` last.

Run it:  ``python -m scaling.jobs.sft runs/<study>/<size>/sft/run.yaml``.

The tiny demo uses it to make small random models verbose reasoners first, so that GRPO has
something to shorten. Departs from Paper B: its SFT data and hyper-parameters are not public;
ours come from the recipe (``sft.*``) and are labelled there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .. import numerics
from ..durable import mark_done
from ..errors import JobError
from ..records import Finetune, RunSpec
from .common import job_main, read_run, start_job
from .data import build_prompt, load_problems
from .models import resolve_model
from .train_config import model_dtype, world_size
from . import tracking
from .trainer_hooks import newest_checkpoint, save_final_model, trainer_callbacks


def load_sft_run(run_yaml: str | os.PathLike[str]) -> RunSpec:
    return read_run(run_yaml, needs=("sft",), why="an SFT job needs sft.dataset and sft.text_column")


def sft_dataset(run: RunSpec, tokenizer: Any) -> Any:
    """``datasets.Dataset`` of {prompt (chat-templated string), completion (trace)}."""
    import datasets

    s = run.sft
    assert s is not None
    rows = load_problems(s.dataset)
    if s.text_column not in rows[0]:
        raise JobError(
            f"sft.text_column: column {s.text_column!r} not in {s.dataset.source!r}; "
            f"columns are {', '.join(sorted(rows[0]))}"
        )
    thinking = run.model.thinking != "none"
    out = [
        {
            "prompt": build_prompt(tokenizer, r["problem"], suffix=s.dataset.prompt_suffix, enable_thinking=thinking),
            "completion": str(r[s.text_column]),
        }
        for r in rows
    ]
    return datasets.Dataset.from_list(out)


# bf16 autocast on CPU pays only for wide enough matrices: measured in docs/tiny-ladder.md
# ("Where the time goes"), 1 thread, batch 8 of the SFT traces, CPU time per optimiser step,
# fp32 -> bf16 autocast: 0_1m (hidden 48) 72 -> 115 ms (slower), 1m (hidden 128) 301 -> 269 ms,
# 3m (hidden 192) 812 -> 694 ms.
CPU_BF16_MIN_HIDDEN = 128  # labelled default: the smallest measured width where bf16 was faster
# On CPU a step of 8 sequences runs as 2 micro-batches of 4 (gradient accumulation; the same step
# and loss normalisation): each micro-batch is padded to its own longest trace, so less padding.
# Measured (docs/tiny-ladder.md, 60 SFT steps, 1 thread): 3m 34.3 -> 29.7 CPU-s, 1m 16.5 -> 15.6;
# micro-batches of 2 (32.2 s) or 1 (36.5 s) cost more per-call overhead than they save.
CPU_MAX_PER_DEVICE = 4  # labelled default, measured


def sft_bf16(run: RunSpec, device: str) -> bool:
    """bf16 mixed precision for SFT: always on CUDA; on CPU only with hardware bf16 (or
    ``SCALING_CPU_BF16=1``; ``=0`` forces fp32: ``scaling/numerics.py``) and a model at least
    ``CPU_BF16_MIN_HIDDEN`` wide (narrower ones were slower in bf16: fp32 there)."""
    if device == "cuda":
        return True
    return numerics.cpu_bf16_allowed() and int(run.model.hidden_size or 0) >= CPU_BF16_MIN_HIDDEN


def numerics_env(threads: int) -> dict[str, Any]:
    """What decides the floating-point path of a CPU run, recorded in the job's DONE marker so
    that two runs that disagree can be told apart (docs/tiny-ladder.md, "Determinism"): the
    library versions, the thread count, the CPU model and whether bf16 is in hardware."""
    from importlib.metadata import PackageNotFoundError, version
    import platform

    out: dict[str, Any] = {"threads": threads, "cpu": platform.processor() or platform.machine(), **numerics.describe()}
    try:
        out["cpu"] = next(
            line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    for pkg in ("torch", "transformers", "trl", "accelerate", "datasets", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def make_sft_config(run: RunSpec, out_dir: str | os.PathLike[str], device: str, track: Any = None) -> Any:
    """RunSpec -> TRL ``SFTConfig`` (global batch = sft.batch_size = per_device × accum × world)."""
    from trl import SFTConfig

    s = run.sft
    assert s is not None
    world = world_size(run, device)
    if s.batch_size < 1 or s.batch_size % world:
        raise JobError(f"{run.run_id}: sft.batch_size={s.batch_size} must be a positive multiple of {world} processes")
    share = s.batch_size // world
    cuda = device == "cuda"
    cap = 8 if cuda else CPU_MAX_PER_DEVICE  # rule: <= 8 sequences per device (CPU: 4, less padding)
    per_device = max(d for d in range(1, min(share, cap) + 1) if share % d == 0)
    logs = track.config_kwargs() if track is not None else {"report_to": "none"}  # jobs/tracking.py
    return SFTConfig(
        output_dir=str(Path(out_dir) / "checkpoints"),
        seed=run.seed,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps,
        learning_rate=s.learning_rate,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=share // per_device,
        max_length=s.max_length,
        completion_only_loss=True,
        lr_scheduler_type="cosine",  # labelled default for SFT
        warmup_steps=0.03,  # labelled default: 3% warm-up
        save_strategy="steps",
        save_steps=200,
        save_total_limit=2,
        logging_steps=10,
        **logs,  # report_to, run_name, project
        bf16=sft_bf16(run, device),  # CPU: torch.autocast(bf16) with fp32 master weights
        use_cpu=not cuda,
        gradient_checkpointing=cuda,
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_num_workers=0,
    )


def main(run_yaml: str) -> None:
    """Run the SFT stage; idempotent (a DONE job returns at once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    job = start_job(run_yaml, load_sft_run, tag="sft")
    if job is None:
        return
    run, job_dir, study_dir = job.run, job.job_dir, job.study_dir
    threads = torch.get_num_threads()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_path = resolve_model(run, study_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # fp32 master weights: SFT runs without DeepSpeed, bf16 only through autocast (train_config.model_dtype)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, model_dtype(run, device)))
    _, stop_cb = trainer_callbacks(run, job_dir)
    track = tracking.setup(run, job_dir, run.sft.report_to)  # logs into job_dir/tracking/, one run id per job
    track.export()
    trainer = SFTTrainer(
        model=model,
        args=make_sft_config(run, job_dir, device, track=track),
        train_dataset=sft_dataset(run, tokenizer),
        processing_class=tokenizer,
        callbacks=[stop_cb],
    )
    stop_cb.install()
    try:
        trainer.train(resume_from_checkpoint=newest_checkpoint(job_dir))
    finally:
        if stop_cb.received is None:
            stop_cb.uninstall()
    if stop_cb.received is not None:
        stop_cb.hand_over(trainer)  # barrier, stops.jsonl, exit 0
        return
    save_final_model(trainer, tokenizer, job_dir, Finetune.full)
    if trainer.is_world_process_zero():
        mark_done(job_dir, {"steps": int(trainer.state.global_step), "model": "model",
                            "bf16": bool(trainer.args.bf16), "env": numerics_env(threads)})


if __name__ == "__main__":
    job_main(main, "usage: python -m scaling.jobs.sft RUN_YAML")
