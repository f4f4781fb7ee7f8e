"""How long `scaling plan` takes for the shipped studies, and proof that it stays light.

    python perf/plan_speed.py [--repeat 5] [--out perf/plan_speed.json]

For each of recipes/qwen3-ladder.yaml and recipes/art-paper.yaml it measures:

* in-process, first call: ``scaling.cli.main(["plan", RECIPE])`` in this interpreter, cold
  (imports of scaling's planning modules and rich included), stdout discarded;
* in-process, warm: the median of ``--repeat`` further calls (the planner's own work);
* as a subprocess: the median wall time of ``python -m scaling plan RECIPE`` minus the median
  wall time of a bare ``python -c pass`` (interpreter start-up is not the planner's work);
* the heavy libraries the subprocess imported (must be none: torch, transformers, trl, vllm,
  matplotlib, peft, accelerate, datasets, submitit).

Target (issue 2): well under one second of scaling's own work per recipe. Exit status 1 when a
heavy library is imported or the subprocess's own work exceeds one second.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [ROOT / "recipes" / "qwen3-ladder.yaml", ROOT / "recipes" / "art-paper.yaml"]
HEAVY = ["torch", "transformers", "trl", "vllm", "matplotlib", "peft", "accelerate", "datasets", "submitit"]
PROBE = """
import sys, io, contextlib
from scaling.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["plan", {recipe!r}])
print(",".join(m for m in {heavy!r} if m in sys.modules))
sys.exit(code)
"""


def _wall(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    return dt, out.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the figures as JSON")
    args = ap.parse_args()

    bare = statistics.median(_wall([sys.executable, "-c", "pass"])[0] for _ in range(args.repeat))
    results = {"python_startup_s": round(bare, 3), "recipes": {}}
    ok = True
    print(f"bare interpreter start-up: {bare * 1000:.0f} ms (subtracted from subprocess figures)")
    print(f"{'recipe':<22} {'in-proc cold':>13} {'in-proc warm':>13} {'subproc wall':>13} {'own work':>10}  heavy imports")
    from scaling.cli import main as cli_main

    for recipe in RECIPES:
        sink = io.StringIO()
        t = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            cli_main(["plan", str(recipe)])
        cold = time.perf_counter() - t
        warm_runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                cli_main(["plan", str(recipe)])
            warm_runs.append(time.perf_counter() - t)
        warm = statistics.median(warm_runs)
        walls, heavy = [], ""
        for _ in range(args.repeat):
            dt, heavy = _wall([sys.executable, "-c", PROBE.format(recipe=str(recipe), heavy=HEAVY)])
            walls.append(dt)
        wall = statistics.median(walls)
        own = wall - bare
        ok &= not heavy and own < 1.0
        print(f"{recipe.name:<22} {cold * 1000:>10.0f} ms {warm * 1000:>10.0f} ms {wall * 1000:>10.0f} ms "
              f"{own * 1000:>7.0f} ms  {heavy or 'none'}")
        results["recipes"][recipe.name] = {"in_process_cold_s": round(cold, 3), "in_process_warm_s": round(warm, 3),
                                           "subprocess_wall_s": round(wall, 3), "own_work_s": round(own, 3),
                                           "heavy_imports": heavy.split(",") if heavy else []}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("ok: well under a second, no heavy imports" if ok else "FAIL: over a second or heavy imports")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
