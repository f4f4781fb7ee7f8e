"""Prompt curation: keep the prompts the base model solves "relatively easily".

What it does: for every training prompt (``train.dataset``), samples ``curate.samples`` (k)
completions from the model the training starts from, with the SAME generator as evaluation
(``jobs/generate.make_generator``) and the training sampling settings, grades them with
``scaling.grade.grade_many`` (answer after ``</think>``; unfinished = wrong), and keeps the band
``min_pass_rate < pass_rate <= max_pass_rate`` (Art, arXiv 2602.20945: pass rate > 0.5 over 8
rollouts, "DeepScaleR-Easy"). Writes into the job dir:
  scores.jsonl      one line per scored prompt (appended, fsync'ed: the job is resumable)
  problems.jsonl    the kept prompts (id, problem, answer, pass_rate + source columns), atomic
  histogram.json    prompts per number of correct samples 0..k, band, kept/total, atomic
  DONE              last
The train job of the same size reads ``problems.jsonl`` when this run is done.

Run it:  ``python -m scaling.jobs.curate runs/<study>/<size>/curate/run.yaml``.

Departs from the paper: it scores with the model's own thinking-mode template and
``curate.max_tokens`` (default L_R); the paper's scoring limit is not stated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..durable import atomic_write_text, mark_done
from ..errors import JobError
from ..grade import grade_many
from ..records import RunSpec
from . import generate  # generate.make_generator looked up at call time (tests replace it)
from .common import job_main, read_run, start_job
from .data import build_prompt, load_problems, repair_jsonl
from .models import resolve_model
from .sampling import sample_seed

CHUNK_PROMPTS = 64  # prompts per generate() call between progress writes (resume granularity)


def load_curate_run(run_yaml: str | os.PathLike[str]) -> RunSpec:
    return read_run(run_yaml, needs=("curate", "train"), why="a curate job needs both (train.dataset, rollout_limit)")


def in_band(pass_rate: float, lo: float, hi: float) -> bool:
    """The kept band: lo < pass_rate <= hi (Art: pass rate > 0.5).

    >>> [in_band(p, 0.5, 1.0) for p in (0.5, 0.625, 1.0)]
    [False, True, True]
    """
    return lo < pass_rate <= hi


def histogram(scores: list[dict[str, Any]], k: int, lo: float, hi: float) -> dict[str, Any]:
    """Prompts per number of correct samples (0..k) and the band's kept count.

    >>> h = histogram([{"correct": 8}, {"correct": 3}, {"correct": 8}], 8, 0.5, 1.0)
    >>> h["counts"][8], h["kept"], h["total"]
    (2, 2, 3)
    """
    counts = [0] * (k + 1)
    for s in scores:
        counts[int(s["correct"])] += 1
    kept = sum(c for j, c in enumerate(counts) if in_band(j / k, lo, hi))
    return {
        "k": k,
        "counts": counts,
        "pass_rate_bins": [j / k for j in range(k + 1)],
        "band": {"min_pass_rate_exclusive": lo, "max_pass_rate_inclusive": hi},
        "kept": kept,
        "total": len(scores),
        "kept_frac": kept / len(scores) if scores else 0.0,
    }


def _read_scores(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # torn last line after a crash: rescored
                continue
            out[str(row["id"])] = row
    return out


def main(run_yaml: str) -> None:
    """Score, filter, write; resumable and idempotent."""
    job = start_job(run_yaml, load_curate_run, tag="curate")
    if job is None:
        return
    run, job_dir, study_dir = job.run, job.job_dir, job.study_dir
    c, t = run.curate, run.train
    assert c is not None and t is not None
    k = int(c.samples)
    if k < 1 or not (0.0 <= c.min_pass_rate < c.max_pass_rate <= 1.0):
        raise JobError(
            f"{run.run_id}: curate.samples={k}, min_pass_rate={c.min_pass_rate}, max_pass_rate={c.max_pass_rate}: "
            "need samples >= 1 and 0 <= min < max <= 1"
        )
    max_tokens = int(c.max_tokens or t.rollout_limit or 0)
    if max_tokens < 1:
        raise JobError(f"{run.run_id}: curate.max_tokens and train.rollout_limit are unset; re-plan the study")
    problems = load_problems(t.dataset)
    if c.max_prompts is not None:
        problems = problems[: c.max_prompts]
    scores_path = job_dir / "scores.jsonl"
    repair_jsonl(scores_path)
    done = _read_scores(scores_path)
    todo = [p for p in problems if p["id"] not in done]
    print(f"[curate] {len(problems)} prompts, {len(done)} already scored, k={k}, max_tokens={max_tokens}")
    thinking = t.enable_thinking and run.model.thinking != "none"
    if todo:
        backend = run.eval.backend if run.eval is not None else "auto"
        gen = generate.make_generator(
            backend,
            resolve_model(run, study_dir),
            seed=run.seed,
            tensor_parallel=max(1, run.resources.tensor_parallel),
            data_parallel=max(1, run.resources.data_parallel),
        )
        try:
            for start in range(0, len(todo), CHUNK_PROMPTS):
                chunk = todo[start : start + CHUNK_PROMPTS]
                prompts = [
                    build_prompt(gen.tokenizer, p["problem"], suffix=t.dataset.prompt_suffix, enable_thinking=thinking)
                    for p in chunk
                ]
                samples = gen.generate(
                    prompts,
                    n=k,
                    max_tokens=max_tokens,
                    temperature=t.temperature,
                    top_p=t.top_p,
                    top_k=t.top_k,
                    seed=[sample_seed(run.seed, "curate", p["id"]) for p in chunk],
                )
                texts = [s.text for group in samples for s in group]
                golds = [p["answer"] for p, group in zip(chunk, samples, strict=True) for _ in group]
                grades = grade_many(
                    texts,
                    golds,
                    timeout_s=t.reward.grade_timeout_s,
                    think_end=run.model.think_end or "</think>",
                    require_think_end=thinking,
                )
                lines, g = [], 0
                for p, group in zip(chunk, samples, strict=True):
                    ok = sum(bool(grades[g + j].correct) and s.finished for j, s in enumerate(group))
                    tokens = [len(s.token_ids) for s in group]
                    g += len(group)
                    lines.append(
                        json.dumps({"id": p["id"], "correct": ok, "k": k, "pass_rate": ok / k,
                                    "tokens_mean": sum(tokens) / len(tokens)})
                    )
                with open(scores_path, "a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                print(f"[curate] scored {min(start + CHUNK_PROMPTS, len(todo))}/{len(todo)}", flush=True)
        finally:
            gen.close()
    scores = _read_scores(scores_path)
    kept = []
    for p in problems:
        s = scores[p["id"]]
        if in_band(s["pass_rate"], c.min_pass_rate, c.max_pass_rate):
            kept.append({**p, "pass_rate": s["pass_rate"]})
    hist = histogram([scores[p["id"]] for p in problems], k, c.min_pass_rate, c.max_pass_rate)
    if not kept:
        raise JobError(
            f"{run.run_id}: no prompt has a pass rate in ({c.min_pass_rate}, {c.max_pass_rate}] "
            f"(histogram {hist['counts']}); widen the band (curate.min_pass_rate) or use a stronger model"
        )
    atomic_write_text(job_dir / "problems.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in kept))
    atomic_write_text(job_dir / "histogram.json", json.dumps(hist, indent=2) + "\n")
    mark_done(job_dir, {"prompts": len(problems), "kept": len(kept), "k": k})
    print(f"[curate] kept {len(kept)}/{len(problems)} prompts; histogram {hist['counts']}")


if __name__ == "__main__":
    job_main(main, "usage: python -m scaling.jobs.curate RUN_YAML")
