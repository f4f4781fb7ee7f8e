"""The prepared GPU check (issue 22): the training path on one GPU, measured against the planner.

What it does: builds a Qwen3 with 0.6B's real architecture (recipes/families/qwen3/0_6b.yaml:
hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128, MLP 3072, vocab 151936) and random
weights on the device (no hub; the tiny ladder's tokenizer), and a Qwen3-30B-A3B shape at reduced
depth (MOE_LAYERS layers of 128 experts), then runs each phase in its own process, with the
project's own builders (jobs/train_config.make_grpo_config / model_dtype / lora_config, jobs/sft
.make_sft_config, jobs/distributed.write_accelerate_config):

  sft          SFT, 5 steps, fp32 master weights + bf16 autocast (TRL SFTTrainer)
  grpo         GRPO, 5 steps, transformers generation, full FT on ZeRO-0: fp32 master weights + bf16
               autocast, beta > 0 (TRL's reference model, bf16)
  grpo_zero2   GRPO, 1 step under DeepSpeed ZeRO-2 on 1 GPU (accelerate launch; skipped with the
               reason when DeepSpeed does not import or build)
  grpo_lora    GRPO, 1 step, LoRA on a bf16 base
  grpo_moe     GRPO, 1 step, LoRA on the fused experts of the 30B-A3B shape at reduced depth

For each it records the measured peak memory (torch.cuda.max_memory_allocated; with ``--cpu`` the
process's peak RSS) beside ``scaling/capacity.py``'s estimate for the same shape
(``capacity.train_memory``; target within 15% on GPU) and tokens/s (TRL's ``num_tokens`` over the
training time), and writes one JSON file, ``$OUT/gpu_check.json`` (OUT defaults to
./gpu_check_out).

Run it:  ``bash perf/gpu_check.sh`` on a GPU machine (installs the wheels it carries first; see
docs/training.md, "The prepared GPU check"), or ``python perf/gpu_check.py --cpu`` for the dry
mode: the same code with tiny shapes on CPU (tests/integration/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PHASES = ("sft", "grpo", "grpo_zero2", "grpo_lora", "grpo_moe")
STEPS = {"sft": 5, "grpo": 5, "grpo_zero2": 1, "grpo_lora": 1, "grpo_moe": 1}
MOE_LAYERS = 2  # the 30B-A3B shape at reduced depth: 2 of its 48 layers (~1.9B parameters)
TARGET = 0.15  # the target: measured peak within 15% of the estimate (GPU)
PHASE_TIMEOUT_S = {"gpu": 240, "cpu": 300}
# (max_prompt_length, rollout_limit, prompts_per_step, num_generations, sft max_length) per mode
SHAPE = {"gpu": (256, 256, 2, 4, 512), "cpu": (128, 16, 2, 4, 128)}


# ------------------------------------------------------------------------------ models
def model_facts(cpu: bool) -> dict[str, Any]:
    """{"dense": ModelFacts, "moe": ModelFacts}: the real Qwen3 facts from recipes/ (GPU) or the
    tiny ladder's (``--cpu``)."""
    from scaling.paramcount import resolve_facts

    if cpu:
        from scaling.jobs.tiny import tiny_facts

        return {"dense": resolve_facts(tiny_facts("0_1m")), "moe": resolve_facts(tiny_facts("1_3m_a0_4m"))}
    from scaling.recipe import load_study

    study = load_study(REPO / "recipes" / "qwen3-ladder.yaml", sizes=["0_6b", "30b_a3b"])
    dense = study.settings["0_6b"].model
    moe = dataclasses.replace(study.settings["30b_a3b"].model, num_layers=MOE_LAYERS, params_total=None,
                              params_active=None, params_embedding=None, size="30b_a3b_2l")
    return {"dense": resolve_facts(dense), "moe": resolve_facts(moe)}


def build_model(facts: Any, out: Path, device: str) -> str:
    """Random weights of ``facts`` built on ``device`` and saved in bf16 (the dtype of the real
    checkpoints) with the tiny tokenizer; the jobs' loaders pick the training dtype."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from scaling.jobs.tiny import _config, build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out)
    config = _config(facts, tok)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
                                               do_sample=True, temperature=0.6, top_p=0.95, top_k=20)
    model.save_pretrained(str(out))
    del model
    return str(out)


# ------------------------------------------------------------------------------ a phase
def phase_run(phase: str, facts: Any, model_dir: str, cpu: bool) -> Any:
    """The RunSpec of a phase (what a plan would write into run.yaml)."""
    from scaling.records import (DatasetSpec, Finetune, Resources, RewardSpec, RunSpec, SftSettings, Shaping, Stage,
                                 TrainSettings, VllmMode)
    from scaling.task import task_uri

    prompt, rollout, prompts, n, sft_len = SHAPE["cpu" if cpu else "gpu"]
    res = Resources(nodes=1, gpus_per_node=0 if cpu else 1, tasks_per_node=1, cpus_per_task=2, mem_gb=8,
                    timeout_min=30, tensor_parallel=1, data_parallel=1)
    if phase == "sft":
        sft = SftSettings(enabled=True, dataset=DatasetSpec(source="task://arith?split=train&n=200&steps=2&digits=1"
                                                            "&max_rechecks=3&seed=0"),
                          batch_size=4, max_length=sft_len, max_steps=STEPS[phase], learning_rate=1e-5)
        return RunSpec(study="gpu_check", run_id=f"{facts.size}/sft", size=facts.size, stage=Stage.sft, model=facts,
                       model_source=model_dir, sft=sft, resources=res, seed=0)
    lora = phase in ("grpo_lora", "grpo_moe")
    train = TrainSettings(
        rollout_limit=rollout, num_generations=n, prompts_per_step=prompts, mini_batch_prompts=prompts,
        learning_rate=1e-5 if lora else 1e-6, max_steps=STEPS[phase], finetune=Finetune.lora if lora else Finetune.full,
        zero_stage=2 if phase == "grpo_zero2" else 0, vllm_mode=VllmMode.none, per_device_batch=n, beta=0.001,
        max_prompt_length=prompt, lora_rank=16, lora_alpha=32, save_steps=10_000, logging_steps=1,
        vllm_is_mode="token_truncate", gradient_checkpointing=True,
        dataset=DatasetSpec(source=task_uri("train", 32), prompt_suffix=" Answer in \\boxed{}."),
        reward=RewardSpec(shaping=Shaping.truncation, target_length=rollout))
    return RunSpec(study="gpu_check", run_id=f"{facts.size}/train", size=facts.size, stage=Stage.train, model=facts,
                   model_source=model_dir, train=train, resources=res, seed=0)


def estimate(run: Any) -> dict[str, float]:
    """capacity.train_memory for the phase's shape (one GPU), by part, in GiB."""
    from scaling import capacity
    from scaling.records import Finetune

    if run.sft is not None:
        m = capacity.train_memory(run.model, finetune=Finetune.full, zero_stage=0, num_gpus=1,
                                  seq_tokens=run.sft.max_length, per_device_batch=run.sft.batch_size,
                                  lora_rank=64, lora_targets=[], beta=0.0)
    else:
        t = run.train
        m = capacity.train_memory(run.model, finetune=t.finetune, zero_stage=int(t.zero_stage or 0), num_gpus=1,
                                  seq_tokens=t.max_prompt_length + t.rollout_limit,
                                  per_device_batch=int(t.per_device_batch), lora_rank=t.lora_rank,
                                  lora_targets=list(t.lora_targets), beta=t.beta)
    parts = {f.name: round(getattr(m, f.name), 6) for f in dataclasses.fields(m)}
    return {"estimate_gb": round(m.total_gb, 6), "estimate_parts_gb": parts}


def run_phase(phase: str, model_dir: str, cpu: bool) -> dict[str, Any]:
    """One phase in this process: train, then measure. Returns the phase's record."""
    import torch

    facts = model_facts(cpu)["moe" if phase == "grpo_moe" else "dense"]
    run = phase_run(phase, facts, model_dir, cpu)
    device = "cpu" if cpu else "cuda"
    rec: dict[str, Any] = {"phase": phase, "size": facts.size, "params": facts.params_total, "steps": STEPS[phase],
                           **estimate(run)}
    work = Path(model_dir).parent / f"job_{phase}"
    work.mkdir(parents=True, exist_ok=True)
    if not cpu:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    trainer = _sft_trainer(run, work, device) if phase == "sft" else _grpo_trainer(run, work, device)
    rec["load_s"] = round(time.time() - t0, 2)
    out = trainer.train()
    rec["train_s"] = round(float(out.metrics.get("train_runtime", time.time() - t0)), 2)
    tokens = max([h.get("num_tokens", 0) for h in trainer.state.log_history] + [0])
    rec["tokens"] = int(tokens)
    rec["tokens_per_s"] = round(tokens / rec["train_s"], 1) if rec["train_s"] else None
    rec["global_step"] = int(trainer.state.global_step)
    params = list(trainer.model.parameters())
    rec["trainable_dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in params if p.requires_grad})
    rec["reference_model"] = getattr(trainer, "ref_model", None) is not None
    if cpu:
        rec["measured"] = "peak RSS of the phase process (CPU dry mode: not comparable to the estimate)"
        rec["peak_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    else:
        rec["measured"] = "torch.cuda.max_memory_allocated"
        rec["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        rec["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    rec["ratio"] = round(rec["peak_gb"] / rec["estimate_gb"], 3) if rec["estimate_gb"] else None
    rec["within_target"] = (abs(rec["ratio"] - 1) <= TARGET) if (rec["ratio"] and not cpu) else None
    rec["ok"] = rec["global_step"] == STEPS[phase]
    return rec


def _sft_trainer(run: Any, work: Path, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from scaling.jobs.sft import make_sft_config, sft_dataset
    from scaling.jobs.train_config import model_dtype

    tok = AutoTokenizer.from_pretrained(run.model_source)
    model = AutoModelForCausalLM.from_pretrained(run.model_source, dtype=getattr(torch, model_dtype(run, device)))
    cfg = make_sft_config(run, work, device)
    cfg.save_strategy, cfg.logging_steps = "no", 1
    return SFTTrainer(model=model, args=cfg, train_dataset=sft_dataset(run, tok), processing_class=tok)


def _grpo_trainer(run: Any, work: Path, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.jobs.models import without_router_logits
    from scaling.jobs.train import masking_trainer_class, train_dataset
    from scaling.jobs.train_config import lora_config, make_grpo_config, model_dtype
    from scaling.records import Finetune
    from scaling.rewards import ShapedReward

    t = run.train
    tok = AutoTokenizer.from_pretrained(run.model_source)
    model = without_router_logits(AutoModelForCausalLM.from_pretrained(
        run.model_source, dtype=getattr(torch, model_dtype(run, device))))
    cfg = make_grpo_config(run, work, device)
    cfg.save_strategy = "no"
    reward = ShapedReward(t.reward, t.rollout_limit, t.num_generations, require_think_end=False,
                          eos_token_ids=[tok.eos_token_id], tokenizer=tok)
    return masking_trainer_class()(
        model=model, reward_funcs=[reward], args=cfg, train_dataset=train_dataset(run, tok, work),
        processing_class=tok, peft_config=lora_config(run) if t.finetune is Finetune.lora else None)


# ------------------------------------------------------------------------------ driver
def _zero2_command(model_dir: str, part: Path, cpu: bool) -> list[str] | str:
    """The accelerate launch command of the ZeRO-2 phase (the job's own accelerate/DeepSpeed
    files), or why it cannot run here."""
    try:
        import deepspeed  # noqa: F401  (import builds nothing; ops JIT-compile when first used)
    except Exception as err:  # ImportError, or a build/CUDA mismatch raised at import
        return f"DeepSpeed does not import here: {type(err).__name__}: {err}"
    if cpu:
        return "DeepSpeed ZeRO-2 needs a GPU (the dry mode records the reason instead of a step)"
    from scaling.jobs.distributed import write_accelerate_config

    facts = model_facts(cpu)["dense"]
    run = phase_run("grpo_zero2", facts, model_dir, cpu)
    cfg = write_accelerate_config(run, Path(model_dir).parent / "accelerate_zero2.yaml")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg), str(Path(__file__)),
            "--phase", "grpo_zero2", "--model-dir", model_dir, "--part", str(part)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python perf/gpu_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="dry mode: tiny shapes on CPU, the same code")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                    help="directory of gpu_check.json (default: $OUT, else ./gpu_check_out)")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    ap.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--part", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase:  # a child: one phase, its record to --part
        try:
            rec = run_phase(args.phase, args.model_dir, args.cpu)
        except Exception as err:
            rec = {"phase": args.phase, "ok": False, "error": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc()[-4000:]}
        if int(os.environ.get("RANK", "0")) == 0:
            Path(args.part).write_text(json.dumps(rec, indent=1))
        return 0

    import torch

    cpu = args.cpu
    if not cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --cpu for the dry mode", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {"mode": "cpu" if cpu else "gpu", "target": TARGET, "started_utc": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "env": _env(torch), "phases": []}
    facts = model_facts(cpu)
    phases = [p for p in args.phases.split(",") if p]
    dirs: dict[str, str] = {}
    for key, f in facts.items():
        if any((p == "grpo_moe") == (key == "moe") for p in phases):
            t0 = time.time()
            dirs[key] = build_model(f, work / f"model_{key}", "cpu" if cpu else "cuda")
            report[f"build_{key}_s"] = round(time.time() - t0, 1)
    if not cpu:
        torch.cuda.empty_cache()
    for phase in phases:
        part = work / f"{phase}.json"
        part.unlink(missing_ok=True)
        model_dir = dirs["moe" if phase == "grpo_moe" else "dense"]
        base = [sys.executable, str(Path(__file__)), "--phase", phase, "--model-dir", model_dir, "--part", str(part)]
        cmd: list[str] | str = _zero2_command(model_dir, part, cpu) if phase == "grpo_zero2" else base
        if cpu and isinstance(cmd, list):
            cmd.append("--cpu")
        t0 = time.time()
        if isinstance(cmd, str):  # the reason it cannot run here
            rec = {"phase": phase, "ok": False, "skipped": cmd}
        else:
            env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
            try:
                proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True,
                                      timeout=PHASE_TIMEOUT_S["cpu" if cpu else "gpu"])
                tail = (proc.stdout + proc.stderr)[-3000:]
                rec = json.loads(part.read_text()) if part.is_file() else {
                    "phase": phase, "ok": False, "error": f"exit {proc.returncode}", "log_tail": tail}
            except subprocess.TimeoutExpired:
                rec = {"phase": phase, "ok": False, "error": f"timed out after {PHASE_TIMEOUT_S['cpu' if cpu else 'gpu']} s"}
        rec["wall_s"] = round(time.time() - t0, 1)
        report["phases"].append(rec)
        print(_line(rec), flush=True)
    report["total_s"] = round(time.time() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"gpu_check: wrote {out / 'gpu_check.json'} ({report['total_s']} s)")
    return 0


def _line(rec: dict[str, Any]) -> str:
    if rec.get("skipped"):
        return f"{rec['phase']:<11} skipped: {rec['skipped']}"
    if not rec.get("ok") and "peak_gb" not in rec:
        return f"{rec['phase']:<11} FAILED: {rec.get('error')}"
    return (f"{rec['phase']:<11} peak {rec['peak_gb']:.3g} GB ({rec['measured'].split(' (')[0]}) vs capacity.py "
            f"{rec['estimate_gb']:.3g} GB (x{rec['ratio']:.2f}) | {rec['tokens_per_s']} tokens/s | "
            f"steps {rec['global_step']}/{rec['steps']}")


def _env(torch: Any) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0)
                           if torch.cuda.is_available() else platform.processor() or platform.machine()}
    for pkg in ("transformers", "trl", "peft", "accelerate", "deepspeed", "datasets", "math-verify"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = None
    return env


if __name__ == "__main__":
    sys.exit(main())
