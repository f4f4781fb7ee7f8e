"""Figures of the tiny ladder (issue: the main job on a laptop): wall time and the method's effect.

Launches a tiny-ladder recipe with the local executor in a fresh runs dir (or reads a study that
already ran, ``--study DIR``) and prints:

* wall time of the whole study (first submission -> last DONE) and of every run;
* per size and benchmark, accuracy and mean response length at the largest budget for the
  post-SFT model (``eval-base``) and the GRPO model (``eval-trained``), and the change;
* issue 12's targets next to the measured values: full ladder < 15 min (CI profile < 3 min);
  after SFT each dense size at least as accurate as the next smaller one (within the 95%
  interval of the difference), the largest >= 75%, the smallest <= 60%; GRPO length -30% or
  more with accuracy -3 points or less per size; the accuracy-vs-size slope interval excludes
  zero and the largest size's phases are found (both from ``report/summary.json``).

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
import threading
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
    dense = sorted((s for s in params if s not in moe), key=lambda s: params[s])
    largest = max(dense or params, key=lambda s: params[s])
    bench = sorted({b for (_, _, b) in figs})[0] if figs else None
    limit = 3 if quick else 15
    print(f"\ntargets (issue 12; benchmark {bench}, accuracy at the largest budget):")
    print(f"  wall time {total / 60:.1f} min (target < {limit} min: {'met' if total < limit * 60 else 'NOT met'})")
    if not bench:
        return
    base = {s: figs[(s, "base", bench)] for s in dense if (s, "base", bench) in figs}
    for small, big in zip(dense, dense[1:]):
        if small in base and big in base:
            (a1, _, n1), (a2, _, n2) = base[small], base[big]
            half = 1.96 * ((a1 * (1 - a1) / n1 + a2 * (1 - a2) / n2) ** 0.5) if n1 and n2 else float("nan")
            print(f"  after SFT {big} {a2:.1%} >= {small} {a1:.1%} within +-{half:.1%} (95% interval of the "
                  f"difference): {'met' if a2 - a1 >= -half else 'NOT met'}")
    if largest in base:
        a = base[largest][0]
        print(f"  largest dense size {largest} after SFT {a:.1%} (target >= 75%: {'met' if a >= 0.75 else 'NOT met'})")
    if dense and dense[0] in base:
        a = base[dense[0]][0]
        print(f"  smallest size {dense[0]} after SFT {a:.1%} (target <= 60%: {'met' if a <= 0.60 else 'NOT met'})")
    for s in dense + sorted(moe):
        if (s, "base", bench) in figs and (s, "trained", bench) in figs:
            ba, bl, bn = figs[(s, "base", bench)]
            ta, tl, tn = figs[(s, "trained", bench)]
            d = (ta - ba) * 100
            half = 196 * ((ba * (1 - ba) / bn + ta * (1 - ta) / tn) ** 0.5)  # 95%, two independent proportions
            verdict = "met" if d >= -3 - 1e-9 else ("NOT met, within sampling error" if d + half >= -3 else "NOT met")
            print(f"  GRPO {s}: length {(tl - bl) / bl:+.0%} (target <= -30%: {'met' if tl <= 0.7 * bl else 'NOT met'}), "
                  f"accuracy {d:+.1f} points [95%, unpaired: {d - half:+.1f}, {d + half:+.1f}] (target >= -3: {verdict})")
    summary = sdir / "report" / "summary.json"
    if not summary.is_file():
        print("  (no report/summary.json: run `scaling report` for the fit and the phases)")
        return
    st = json.loads(summary.read_text())["studies"][0]
    for f in st["fits"]:
        if f["metric"] == "accuracy" and f["arm"] in ("base", "trained") and "slope_per_decade" in (f["coef"] or {}):
            lo, hi = f["coef_lo"]["slope_per_decade"], f["coef_hi"]["slope_per_decade"]
            print(f"  fit accuracy ~ size ({f['arm']}, {f['benchmark']}, B={f['budget_tokens']}): slope "
                  f"{f['coef']['slope_per_decade']:+.3f}/decade [{lo:+.3f}, {hi:+.3f}] "
                  f"(target: excludes 0: {'met' if lo > 0 or hi < 0 else 'NOT met'})")
    for ph in st["phases"]:
        if ph["size"] == largest:
            print(f"  phases of {ph['run_id']}: transition at step {ph['transition_step']} "
                  f"({'found' if ph['transition_step'] >= 0 else 'NOT found'}): {ph['reason']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default="recipes/tiny-ladder-quick.yaml")
    ap.add_argument("--study", help="summarise this finished study directory instead of launching")
    ap.add_argument("--runs-dir", help="launch into this runs dir (default: a temporary one, kept)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to scaling launch")
    args = ap.parse_args(argv)
    if args.study:
        sdir = Path(args.study)
        report(sdir, quick="quick" in sdir.name)
        return 0
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="tiny-ladder-perf-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    loads: list[float] = []  # 1-minute load average, sampled every 15 s while the study runs
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(15.0):
            loads.append(os.getloadavg()[0])

    before = os.getloadavg()[0]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sets = [a for kv in args.set for a in ("--set", kv)]
    proc = subprocess.run([sys.executable, "-m", "scaling", "launch", args.recipe, "--executor", "local", "--wait",
                           "--runs-dir", str(runs), *sets], cwd=ROOT, env=env)
    stop.set()
    print(f"launch exit {proc.returncode} after {(time.perf_counter() - t0) / 60:.1f} min (runs dir {runs})")
    if loads:  # 2 cores busy = 2.0; above that something else shared the machine
        print(f"load average (1 min) before {before:.2f}; during the run mean {sum(loads) / len(loads):.2f}, "
              f"max {max(loads):.2f} ({len(loads)} samples)")
    sdir = next((p.parent for p in runs.glob("*/manifest.json")), None)
    if sdir is None:
        print("no study directory was written")
        return 1
    report(sdir, quick="quick" in args.recipe)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
