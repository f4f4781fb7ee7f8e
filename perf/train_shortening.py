"""Does the truncation reward shorten completions? A short CPU run on a tiny Qwen3.

What it does:
  1. builds a tiny Qwen3 (``scaling.jobs.tiny``) and makes it a verbose reasoner with the SFT
     stage (``scaling.jobs.sft``) on arithmetic traces that re-check their work 0-4 times
     (``scaling.task``), so completions range from ~40 to ~170 tokens;
  2. measures mean completion length and accuracy on held-out prompts (H4's generator, the
     same one evaluation uses);
  3. trains GRPO (``scaling.jobs.train``) with the truncation reward R = 1[correct]·1[len <= L_T],
     L_T below the SFT model's typical length, L_R above it;
  4. measures again and prints mean length / accuracy before and after.

Run it:  ``python perf/train_shortening.py [--out DIR] [--sft-steps 300] [--grpo-steps 30] [--lr 2e-4]``
(about 10-20 minutes on 2 shared CPU cores with the defaults).

Not a result about real models: the tiny model only learns to drop re-checks.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from scaling.records import (
    DatasetSpec,
    Finetune,
    RewardSpec,
    RunSpec,
    SftSettings,
    Shaping,
    Stage,
    TrainSettings,
    to_dict,
)
from scaling.task import task_uri

SUFFIX = "Answer in \\boxed{}."


def write_run(study: Path, run: RunSpec) -> str:
    job = study / run.run_id
    job.mkdir(parents=True, exist_ok=True)
    (job / "run.yaml").write_text(yaml.safe_dump(to_dict(run)))
    return str(job / "run.yaml")


def measure(model_dir: str, *, n_prompts: int, samples: int, max_tokens: int, seed: int) -> dict[str, float]:
    """Mean length (tokens), accuracy and finished fraction on held-out prompts."""
    from scaling.grade import grade_many
    from scaling.jobs.data import build_prompt, load_problems
    from scaling.jobs.generate import make_generator

    rows = load_problems(DatasetSpec(source=task_uri("test", n_prompts)))
    gen = make_generator("transformers", model_dir, seed=seed, batch_size=64)
    try:
        prompts = [build_prompt(gen.tokenizer, r["problem"], suffix=SUFFIX, enable_thinking=True) for r in rows]
        out = gen.generate(prompts, n=samples, max_tokens=max_tokens, temperature=0.6, top_p=0.95, top_k=20, seed=seed)
    finally:
        gen.close()
    texts = [s.text for g in out for s in g]
    golds = [r["answer"] for r, g in zip(rows, out) for _ in g]
    grades = grade_many(texts, golds)
    samples_flat = [s for g in out for s in g]
    return {
        "tokens_mean": statistics.fmean(len(s.token_ids) for s in samples_flat),
        "accuracy": statistics.fmean(float(g.correct and s.finished) for g, s in zip(grades, samples_flat)),
        "finished_frac": statistics.fmean(float(s.finished) for s in samples_flat),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--size", default="0_3m")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--grpo-steps", type=int, default=30)
    ap.add_argument("--target", type=int, default=80, help="L_T (tokens)")
    ap.add_argument("--rollout-limit", type=int, default=192, help="L_R (tokens)")
    ap.add_argument("--eval-prompts", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4, help="GRPO learning rate (tiny model; 5e-4 collapses then explodes)")
    args = ap.parse_args(argv)

    from scaling.jobs import sft, train
    from scaling.jobs.tiny import build_model, tiny_facts

    root = Path(args.out or tempfile.mkdtemp(prefix="shortening-"))
    study = root / "study"
    facts = tiny_facts(args.size)
    base = build_model(facts, root / "base", seed=0)
    t0 = time.time()
    sft_run = RunSpec(
        study="shortening", run_id=f"{args.size}/sft", size=args.size, stage=Stage.sft, model=facts,
        model_source=base, seed=0,
        sft=SftSettings(enabled=True, dataset=DatasetSpec(source=task_uri("train", 4000), prompt_suffix=SUFFIX),
                        batch_size=16, max_steps=args.sft_steps, learning_rate=3e-3, max_length=320),
    )
    sft.main(write_run(study, sft_run))
    print(f"[perf] SFT {args.sft_steps} steps in {time.time() - t0:.0f} s", flush=True)
    sft_model = str(study / args.size / "sft" / "model")
    before = measure(sft_model, n_prompts=args.eval_prompts, samples=4, max_tokens=args.rollout_limit, seed=1)
    print(f"[perf] before GRPO: {before}", flush=True)

    t0 = time.time()
    train_run = RunSpec(
        study="shortening", run_id=f"{args.size}/train", size=args.size, stage=Stage.train, model=facts,
        model_source=base, init_from=f"{args.size}/sft", seed=0,
        train=TrainSettings(
            rollout_limit=args.rollout_limit, num_generations=8, prompts_per_step=4, learning_rate=args.lr,
            max_steps=args.grpo_steps, finetune=Finetune.full, save_steps=1000, logging_steps=1,
            beta=0.0, temperature=0.6,  # the method's rollout temperature; at 1.0 the tiny model solves nothing
            dataset=DatasetSpec(source=task_uri("train", 2000), prompt_suffix=SUFFIX),
            reward=RewardSpec(shaping=Shaping.truncation, target_length=args.target),
        ),
    )
    shutil.rmtree(study / args.size / "train", ignore_errors=True)  # the SFT stage is reused when done
    train.main(write_run(study, train_run))
    print(f"[perf] GRPO {args.grpo_steps} steps in {time.time() - t0:.0f} s", flush=True)
    after = measure(str(study / args.size / "train" / "model"), n_prompts=args.eval_prompts, samples=4,
                    max_tokens=args.rollout_limit, seed=1)
    change = (after["tokens_mean"] - before["tokens_mean"]) / before["tokens_mean"]
    print(f"[perf] L_T={args.target} L_R={args.rollout_limit}")
    print(f"[perf] mean length before {before['tokens_mean']:.1f} -> after {after['tokens_mean']:.1f} tokens "
          f"({change:+.1%}); accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}; "
          f"finished {before['finished_frac']:.2f} -> {after['finished_frac']:.2f}")
    print(f"[perf] training signals: {study / args.size / 'train' / 'signals.parquet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
