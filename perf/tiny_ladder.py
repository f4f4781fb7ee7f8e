"""Figures of the tiny ladder (issue: the main job on a laptop): wall time and the method's effect.

Launches a tiny-ladder recipe with the local executor in a fresh runs dir (or reads a study that
already ran, ``--study DIR``) and prints:

* wall time of the whole study (first submission -> last DONE) and of every run;
* per size and benchmark, accuracy and mean response length at the largest budget for the
  post-SFT model (``eval-base``) and the GRPO model (``eval-trained``), and the change;
* the issue's targets next to the measured values (full ladder < 30 min, CI profile < 5 min,
  largest size >= 70% after SFT, GRPO length -30% or more with accuracy -3 points or less).

It prints figures; it asserts nothing (tests assert behaviour, perf/ measures).

    python perf/tiny_ladder.py recipes/tiny-ladder-quick.yaml
    python perf/tiny_ladder.py --study runs/tiny-ladder
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def _done_time(path: Path) -> float | None:
    marks = [path / "DONE"] if (path / "DONE").is_file() else sorted(path.glob("*/DONE"))
    if not marks:
        return None
    return max(_ts(json.loads(m.read_text())["time"]) for m in marks)


def run_times(sdir: Path) -> dict[str, tuple[float, float | None]]:
    """run_id -> (submitted ts, DONE ts or None)."""
    manifest = json.loads((sdir / "manifest.json").read_text())
    out = {}
    for run_id, entry in manifest["runs"].items():
        history = entry.get("history") or []
        start = _ts(history[-1]["time"]) if history else entry.get("submitted_ts")
        if start is None:
            continue
        out[run_id] = (float(start), _done_time(sdir / run_id))
    return out


def eval_figures(sdir: Path) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """(size, checkpoint, benchmark) -> (accuracy, mean response tokens, samples) at the largest budget."""
    import pyarrow.parquet as pq

    out = {}
    for rec in sorted(sdir.glob("*/eval-*/*/records.parquet")):
        t = pq.read_table(rec, columns=["budget_tokens", "correct", "response_tokens"]).to_pydict()
        top = max(t["budget_tokens"])
        rows = [(c, n) for b, c, n in zip(t["budget_tokens"], t["correct"], t["response_tokens"]) if b == top]
        size, ckpt, bench = rec.parent.parent.parent.name, rec.parent.parent.name.removeprefix("eval-"), rec.parent.name
        out[(size, ckpt, bench)] = (sum(c for c, _ in rows) / len(rows), sum(n for _, n in rows) / len(rows), len(rows))
    return out


def report(sdir: Path, *, quick: bool) -> None:
    times = run_times(sdir)
    starts = [s for s, _ in times.values()]
    ends = [e for _, e in times.values() if e is not None]
    missing = [r for r, (_, e) in times.items() if e is None]
    total = (max(ends) - min(starts)) if ends else float("nan")
    print(f"study {sdir}: {len(times)} runs, {len(missing)} without DONE {missing[:4]}")
    print(f"wall time, first submission -> last DONE: {total / 60:.1f} min")
    for run_id, (s, e) in sorted(times.items()):
        print(f"  {run_id:<28} {'-' if e is None else f'{(e - s) / 60:5.1f} min'}")
    figs = eval_figures(sdir)
    plan = json.loads((sdir / "plan.json").read_text())
    params = {r["size"]: r["model"]["params_total"] for r in plan["runs"]}
    moe = {r["size"] for r in plan["runs"] if r["model"].get("num_experts", 0) > 0}
    print("\nsize          benchmark        base acc  base len  trained acc  trained len  d len    d acc")
    for (size, ckpt, bench) in sorted(figs, key=lambda k: (params.get(k[0], 0), k[2])):
        if ckpt != "base":
            continue
        ba, bl, n = figs[(size, "base", bench)]
        ta, tl, _ = figs.get((size, "trained", bench), (float("nan"), float("nan"), 0))
        print(f"{size:<13} {bench:<16} {ba:8.1%}  {bl:8.1f}  {ta:11.1%}  {tl:11.1f}  {(tl - bl) / bl:+6.0%}  "
              f"{(ta - ba) * 100:+5.1f} pts  (n={n})")
    dense = [s for s in params if s not in moe]
    largest = max(dense or params, key=lambda s: params[s])
    bench = sorted({b for (_, _, b) in figs})[0] if figs else None
    if bench and (largest, "base", bench) in figs:
        ba, bl, _ = figs[(largest, "base", bench)]
        ta, tl, _ = figs.get((largest, "trained", bench), (float("nan"), float("nan"), 0))
        limit = 5 if quick else 30
        print(f"\ntargets ({largest}, {bench}):")
        print(f"  wall time {total / 60:.1f} min (target < {limit} min)")
        print(f"  accuracy after SFT {ba:.1%} (target >= 70%)")
        print(f"  GRPO length change {(tl - bl) / bl:+.0%} (target <= -30%)")
        print(f"  GRPO accuracy change {(ta - ba) * 100:+.1f} points (target >= -3)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default="recipes/tiny-ladder-quick.yaml")
    ap.add_argument("--study", help="summarise this finished study directory instead of launching")
    ap.add_argument("--runs-dir", help="launch into this runs dir (default: a temporary one, kept)")
    args = ap.parse_args(argv)
    if args.study:
        sdir = Path(args.study)
        report(sdir, quick="quick" in sdir.name)
        return 0
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="tiny-ladder-perf-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "scaling", "launch", args.recipe, "--executor", "local", "--wait",
                           "--no-report", "--runs-dir", str(runs)], cwd=ROOT, env=env)
    print(f"launch exit {proc.returncode} after {(time.perf_counter() - t0) / 60:.1f} min (runs dir {runs})")
    sdir = next((p.parent for p in runs.glob("*/manifest.json")), None)
    if sdir is None:
        print("no study directory was written")
        return 1
    report(sdir, quick="quick" in args.recipe)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
