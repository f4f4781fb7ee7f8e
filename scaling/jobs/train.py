"""GRPO training with a length-aware reward: one size, one run (TRL ``GRPOTrainer``).

What it does: reads ``run.yaml`` (a ``RunSpec``), loads the prompts (the curated easy set when a
``<size>/curate`` run is done, else ``train.dataset``), renders them with the model's chat
template (Qwen3 thinking mode), builds ``GRPOConfig`` in ONE visible function
(``make_grpo_config``, jobs/train_config.py), the reward (``scaling.rewards.ShapedReward``) and,
for LoRA, the peft config, and trains. Rollouts use vLLM on GPU (colocate, or server for the largest sizes) and
transformers ``generate`` on CPU. It writes ``signals.parquet`` (one ``TrainSignal`` per logged
step, rewritten atomically at every log, so a crash keeps every logged step), checkpoints under
``checkpoints/``, the final (LoRA-merged) model under ``model/``, and ``DONE`` last (the
callbacks, checkpoints and model save it shares with the SFT job are in jobs/trainer_hooks.py).

Run it:  ``python -m scaling.jobs.train runs/<study>/<size>/train/run.yaml``  (this is also the
multi-GPU worker that ``accelerate launch`` starts; see jobs/distributed.py).

Requeue contract: it always resumes from the newest ``checkpoints/checkpoint-*``; on SIGUSR1 or
SIGTERM (to any rank: the ranks agree on the stop step), or the supervisor's stop-request file
(a request made during start-up, before the handler exists, is honoured at the first step), it
finishes the current optimiser step, saves a checkpoint, waits for every rank, appends
``{step, signal, checkpoint}`` to ``stops.jsonl`` and exits 0; the supervisor (supervise.py)
requeues the job — so a requeued job continues and ends with the same total number of steps.

Departs from the paper (Art, arXiv 2602.20945): off-policy staleness S is expressed as TRL's
``steps_per_generation`` (one rollout batch feeds S optimiser steps); the entropy bonus of the
Laser recipe is not applied (TRL's default 0); prompts longer than ``max_prompt_length`` tokens
are dropped (TRL 1.16 has no prompt truncation), and the count is printed.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..durable import is_done, mark_done
from ..errors import JobError
from ..records import Finetune, RunSpec
from ..rewards import ShapedReward
from ..studydir import study_ref
from .common import job_main, read_run, start_job
from .data import build_prompt, load_problems, repair_jsonl
from .models import resolve_model, without_router_logits
from .train_config import lora_config, make_grpo_config, model_dtype
from . import tracking
from .trainer_hooks import SIGNALS_JSONL, newest_checkpoint, save_final_model, trainer_callbacks, write_signals_parquet
from .weight_sync import install_weight_sync_check

CURATED_FILE = "problems.jsonl"  # written by jobs/curate.py into <size>/curate/


# ------------------------------------------------------------------------- run.yaml
def load_run(run_yaml: str | os.PathLike[str]) -> RunSpec:
    """The RunSpec of a train job (jobs/common.read_run)."""
    return read_run(run_yaml, needs=("train",), why="a train job needs them")


# ---------------------------------------------------------------------------- data
def curated_path(run: RunSpec, study_dir: Path) -> Path | None:
    """The curated set of this size when its curate run is done; None when there is none.

    A curate run that is enabled in run.yaml but not done is an error (launch orders it first).
    """
    cdir = study_dir / run.size / "curate"
    if is_done(cdir) and (cdir / CURATED_FILE).is_file():
        return cdir / CURATED_FILE
    if run.curate is not None and run.curate.enabled:
        raise JobError(f"{run.run_id}: curate is enabled but {cdir} is not done; run `scaling resume {study_ref(study_dir)}` first")
    return None


def train_dataset(run: RunSpec, tokenizer: Any, study_dir: Path) -> Any:
    """A ``datasets.Dataset`` with ``prompt`` (chat-templated string), ``answer`` and ``id``."""
    import datasets

    t = run.train
    assert t is not None
    spec = t.dataset
    curated = curated_path(run, study_dir)
    if curated is not None:
        spec = replace(spec, source=str(curated), problem_column="problem", answer_column="answer", id_column="id")
    rows = load_problems(spec)
    out, dropped = [], 0
    for r in rows:
        prompt = build_prompt(tokenizer, r["problem"], suffix=spec.prompt_suffix, enable_thinking=t.enable_thinking)
        if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) > t.max_prompt_length:
            dropped += 1
            continue
        out.append({"prompt": prompt, "answer": r["answer"], "id": r["id"]})
    if dropped:
        print(f"[train] dropped {dropped} prompts longer than max_prompt_length={t.max_prompt_length} tokens")
    if not out:
        raise JobError(f"{run.run_id}: no training prompts left (source {spec.source!r}); check train.dataset")
    return datasets.Dataset.from_list(out)


def masking_trainer_class() -> type:
    """``GRPOTrainer`` with ONE overridden method: completions the reward masked (``None``) get
    their completion mask zeroed, so they leave the policy loss, its token normaliser and the KL
    term — not just the advantage (TRL 1.16 already zeroes the advantage of a ``None`` reward and
    leaves it out of its group's mean/std)."""
    import torch
    from trl import GRPOTrainer

    class MaskingGRPOTrainer(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            flags = [getattr(f, "last_excluded", None) for f in self.reward_funcs]
            flags = [f for f in flags if f is not None and len(f) == out["completion_mask"].shape[0]]
            mask = out["completion_mask"]
            if flags:
                drop = torch.tensor([any(col) for col in zip(*flags)], device=mask.device)
                mask = mask * (~drop).unsqueeze(1).to(mask.dtype)
                out["completion_mask"] = mask
            loss_mask = mask if "tool_mask" not in out else mask * out["tool_mask"]
            out["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()  # every rank calls gather
            return out

    return MaskingGRPOTrainer


# ---------------------------------------------------------------------------- main
def main(run_yaml: str) -> None:
    """Train one size; see the module docstring. Idempotent: a DONE job returns at once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job = start_job(run_yaml, load_run, tag="train")
    if job is None:
        return
    run, job_dir, study_dir = job.run, job.job_dir, job.study_dir
    t = run.train
    assert t is not None
    # the stop handler first: a signal during model or vLLM start-up is kept and honoured at the first step
    signals_cb, stop_cb = trainer_callbacks(run, job_dir)
    stop_cb.install()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_path = resolve_model(run, study_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    track = tracking.setup(run, job_dir, t.report_to)  # logs into job_dir/tracking/, one run id per job
    track.export()
    config = make_grpo_config(run, job_dir, device, track=track)
    dtype = getattr(torch, model_dtype(run, device))  # fp32 master weights where no DeepSpeed stage keeps them
    # MoE: no router loss in GRPO (rollouts generate with this model; see without_router_logits)
    model = without_router_logits(AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype))
    eos = {tokenizer.eos_token_id} | set(_as_list(getattr(model.generation_config, "eos_token_id", None)))
    reward = ShapedReward(
        t.reward,
        int(t.rollout_limit or 0),
        t.num_generations,
        require_think_end=t.enable_thinking and run.model.thinking != "none",
        think_end=run.model.think_end or "</think>",
        eos_token_ids=sorted(e for e in eos if e is not None),
        tokenizer=tokenizer,
        think_start=run.model.think_start or "<think>",
    )
    trainer_cls = masking_trainer_class()
    trainer = trainer_cls(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=train_dataset(run, tokenizer, study_dir),
        processing_class=tokenizer,
        peft_config=lora_config(run) if t.finetune is Finetune.lora else None,
        callbacks=[signals_cb, stop_cb],
    )
    install_weight_sync_check(trainer)  # colocated vLLM: a real sync on CPU, then verified (jobs/weight_sync.py)
    stop_cb.install()  # again, in case the trainer's start-up (vLLM) replaced our handlers
    acc = trainer.accelerator
    if acc.is_main_process:  # what the launcher really started (the distributed tests read this line)
        ds = getattr(acc.state, "deepspeed_plugin", None)
        zero = f", ZeRO-{ds.zero_stage}" if ds is not None else ""
        print(f"[train] {acc.num_processes} process(es), {acc.distributed_type.value} on {device}{zero}", flush=True)
    resume = newest_checkpoint(job_dir)
    repair_jsonl(job_dir / SIGNALS_JSONL)  # a torn line from a crash mid-append
    if resume:
        print(f"[train] resuming from {resume}")
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if stop_cb.received is None:
            stop_cb.uninstall()
    if stop_cb.received is not None:
        stop_cb.hand_over(trainer)  # checkpoint saved: barrier, stops.jsonl, then exit 0 (the supervisor requeues)
        return
    save_final_model(trainer, tokenizer, job_dir, Finetune(t.finetune or Finetune.full))
    if not trainer.is_world_process_zero():
        return
    rows = write_signals_parquet(job_dir)
    mark_done(job_dir, {"steps": int(trainer.state.global_step), "signals": rows, "model": "model"})


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple, set)) else [x]


if __name__ == "__main__":
    job_main(main, "usage: python -m scaling.jobs.train RUN_YAML")
