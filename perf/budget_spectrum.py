"""What the one-pass budget spectrum saves: decoded tokens and wall time vs per-budget runs.

    python perf/budget_spectrum.py [--problems 12] [--samples 4] [--scale 256] [--model DIR]

The default spectrum (2k, 4k, 8k, 16k, 32k tokens) is divided by ``--scale`` for a tiny model on
CPU (256 -> 8, 16, 32, 64, 128). Three ways to get every budget's records are run through the
real evaluation code (``jobs.evaluate.evaluate_benchmark``) with the same seeds:

  one-pass   one generation at the largest budget, truncated per budget (what the job does)
  largest    a single run at the largest budget only (the floor: target ratio <= 1.05)
  separate   one run per budget (what evaluating each budget on its own would cost)

It prints decoded tokens (the ``decoded_tokens`` column summed) and wall time of each, the
ratios one-pass/largest and one-pass/separate, and checks that the per-budget accuracy and
finished fraction of the one-pass records equal those of the separate runs (exit status 1 if
not). Without ``--model`` it builds the tiny Qwen3 (``scaling.jobs.tiny``, seed 0) and aligns its
``</think>``/``<|im_end|>`` output rows with the mean hidden state, so random-weight samples stop
at varied lengths across the spectrum (an untouched random model almost never stops).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_BUDGETS = [2048, 4096, 8192, 16384, 32768]


def _chatty_tiny_model(out: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.jobs.tiny import build_model, tiny_facts

    base = build_model(tiny_facts("0_1m"), out / "base", seed=0)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    enc = tok(["What is 2+3? Let's think", "Tom has 5 apples and buys 7 more"], return_tensors="pt", padding=True)
    with torch.no_grad():
        h = model(**enc, output_hidden_states=True).hidden_states[-1].reshape(-1, model.config.hidden_size).mean(0)
        w = model.get_output_embeddings().weight
        for token, logit in (("</think>", 0.8), ("<|im_end|>", 0.5)):
            w[tok.convert_tokens_to_ids(token)] = h * (logit / h.dot(h))
    model.save_pretrained(out / "chatty")
    tok.save_pretrained(out / "chatty")
    return str(out / "chatty")


def _run(run_base, spec, out: Path, model_dir: str, generator, budgets: list[int]) -> tuple[list[dict], float, float]:
    import dataclasses

    import pyarrow.parquet as pq

    from scaling.jobs.evaluate import evaluate_benchmark

    run = dataclasses.replace(run_base, eval=dataclasses.replace(run_base.eval, budgets=budgets))
    t0, c0 = time.perf_counter(), time.process_time()
    evaluate_benchmark(run, spec, out, model_path=model_dir, generator=generator)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return pq.read_table(out / "records.parquet").to_pylist(), wall, cpu


def _per_budget(rows: list[dict]) -> dict[int, tuple[float, float]]:
    out: dict[int, list[tuple[bool, bool]]] = {}
    for r in rows:
        out.setdefault(r["budget_tokens"], []).append((r["correct"], r["finished"]))
    return {b: (sum(c for c, _ in v) / len(v), sum(f for _, f in v) / len(v)) for b, v in sorted(out.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=12)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--scale", type=int, default=256, help="divide the default spectrum by this")
    ap.add_argument("--model", default=None, help="model dir (default: a chatty tiny Qwen3)")
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    from scaling.benchmarks import load_benchmark
    from scaling.jobs.generate import make_generator
    from scaling.jobs.tiny import tiny_facts
    from scaling.records import Backend, EvalSettings, RunSpec, Stage
    from scaling.task import generate, write_jsonl

    budgets = [b // args.scale for b in DEFAULT_BUDGETS]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model_dir = args.model or _chatty_tiny_model(tmp_path)
        bench = write_jsonl(tmp_path / "arith.jsonl", generate("test", args.problems))
        spec = load_benchmark(str(bench))
        run = RunSpec(
            study="perf", run_id="tiny/eval-base", size="0_1m", stage=Stage.eval, model=tiny_facts("0_1m"),
            model_source=model_dir, checkpoint="base", seed=0,
            eval=EvalSettings(benchmarks=[str(bench)], budgets=budgets, samples_per_problem=args.samples,
                              backend=Backend.transformers, batch_size=64),
        )
        generator = make_generator("transformers", model_dir, seed=0, batch_size=64)
        # warm-up outside the timings: first-call kernels and the grading worker's start
        from scaling.grade import grade

        generator.generate(["warm up"], n=1, max_tokens=4, temperature=0.6, top_p=0.95, top_k=20, seed=0)
        grade("</think> \\boxed{1}", "1")
        from scaling.benchmarks import to_dataset_spec
        from scaling.jobs.data import load_problems

        load_problems(to_dataset_spec(spec))  # builds the datasets cache of the JSONL once
        one, t_one, c_one = _run(run, spec, tmp_path / "one", model_dir, generator, budgets)
        largest, t_largest, c_largest = _run(run, spec, tmp_path / "largest", model_dir, generator, budgets[-1:])
        separate: list[dict] = []
        t_sep = c_sep = 0.0
        for b in budgets:
            rows, t, c = _run(run, spec, tmp_path / f"b{b}", model_dir, generator, [b])
            separate += rows
            t_sep += t
            c_sep += c

    tok = lambda rows: sum(r["decoded_tokens"] for r in rows)  # noqa: E731
    d_one, d_largest, d_sep = tok(one), tok(largest), tok(separate)
    acc_one, acc_sep = _per_budget(one), _per_budget(separate)
    key = ("problem_id", "sample", "budget_tokens")
    cols = ("finished", "correct", "grade", "response_tokens", "thinking_tokens")
    rows_one = {tuple(r[k] for k in key): tuple(r[c] for c in cols) for r in one}
    rows_sep = {tuple(r[k] for k in key): tuple(r[c] for c in cols) for r in separate}
    agree = acc_one == acc_sep and rows_one == rows_sep
    figures = {
        "budgets": budgets,
        "problems": args.problems,
        "samples": args.samples,
        "decoded_tokens": {"one_pass": d_one, "largest_only": d_largest, "separate_sum": d_sep},
        "wall_s": {"one_pass": round(t_one, 2), "largest_only": round(t_largest, 2), "separate_sum": round(t_sep, 2)},
        "cpu_s": {"one_pass": round(c_one, 2), "largest_only": round(c_largest, 2), "separate_sum": round(c_sep, 2)},
        "ratio_one_pass_over_largest": round(d_one / d_largest, 4),
        "ratio_one_pass_over_separate": round(d_one / d_sep, 4),
        "per_budget_accuracy_and_finished": {b: acc_one[b] for b in budgets},
        "per_budget_agree": agree,
    }
    print(f"budgets (default spectrum / {args.scale}): {budgets}; {args.problems} problems x {args.samples} samples")
    print(f"{'method':<12}{'decoded tokens':>16}{'wall s':>10}{'cpu s':>10}")
    for name, d, t, c in (
        ("one-pass", d_one, t_one, c_one),
        ("largest", d_largest, t_largest, c_largest),
        ("separate", d_sep, t_sep, c_sep),
    ):
        print(f"{name:<12}{d:>16}{t:>10.2f}{c:>10.2f}")
    print(f"one-pass / largest-only  = {d_one / d_largest:.4f}  (target <= 1.05)")
    print(f"one-pass / separate runs = {d_one / d_sep:.4f}  (saving {1 - d_one / d_sep:.1%} of decoded tokens)")
    print(f"wall: one-pass {t_one:.2f} s vs separate {t_sep:.2f} s (cpu {c_one:.2f} s vs {c_sep:.2f} s; "
          "wall time is noisy on a shared machine)")
    for b in budgets:
        a, f = acc_one[b]
        s_a, s_f = acc_sep[b]
        print(f"  B={b:>4}: accuracy {a:.3f} (separate {s_a:.3f}), finished {f:.3f} (separate {s_f:.3f})")
    print("per-budget results agree:", agree)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if agree and d_one / d_largest <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
