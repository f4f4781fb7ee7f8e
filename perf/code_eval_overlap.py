"""Does grading code in a worker thread while the next chunk generates matter on CPU?

    python perf/code_eval_overlap.py [--problems 8] [--samples 2] [--tokens 256]

Measures, for one chunk of the tiny code task on the tiny Qwen3 (transformers backend, 2 cores):
the generation time of the chunk (``--tokens`` new tokens per sample, the model never stops), the
sandboxed grading time of as many real responses (the task's SFT traces: right programs, 5 tests
each), and both run at once (grading in a thread during generation, as jobs/evaluate.py does for
``grader: code``). The saving per chunk is sequential - overlapped.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()

    from scaling.grade import grade_many
    from scaling.jobs.data import build_prompt
    from scaling.jobs.generate import make_generator
    from scaling.jobs.tiny import build_model, tiny_facts
    from scaling.task import generate_code

    model_dir = build_model(tiny_facts("0_1m"), Path(tempfile.mkdtemp()) / "m", seed=0)
    gen = make_generator("transformers", model_dir, seed=0, batch_size=64)
    rows = generate_code("train", args.problems)
    prompts = [gen.tokenizer.encode(build_prompt(gen.tokenizer, r["problem"], suffix="", enable_thinking=True),
                                    add_special_tokens=False) for r in rows]
    responses = [r["completion"] for r in rows for _ in range(args.samples)]
    golds = [r["answer"] for r in rows for _ in range(args.samples)]

    def generate() -> None:
        gen.generate(prompts, n=args.samples, max_tokens=args.tokens, temperature=0.6, top_p=0.95, top_k=20,
                     seed=list(range(len(prompts))))

    def grade() -> None:
        assert all(g.correct for g in grade_many(responses, golds, kind="code", timeout_s=None))

    grade()  # warm: the sandbox's first start
    t0 = time.perf_counter(); generate(); t_gen = time.perf_counter() - t0
    t0 = time.perf_counter(); grade(); t_grade = time.perf_counter() - t0
    t0 = time.perf_counter()
    th = threading.Thread(target=grade)
    th.start(); generate(); th.join()
    t_both = time.perf_counter() - t0
    n = len(responses)
    print(f"chunk: {args.problems} problems x {args.samples} samples, {args.tokens} tokens each")
    print(f"generate {t_gen:.2f} s; grade {t_grade:.2f} s ({n / t_grade:.1f} programs/s); "
          f"sequential {t_gen + t_grade:.2f} s; overlapped {t_both:.2f} s; "
          f"saved {t_gen + t_grade - t_both:.2f} s per chunk ({(t_gen + t_grade - t_both) / (t_gen + t_grade):.0%})")


if __name__ == "__main__":
    main()
