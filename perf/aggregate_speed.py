"""Aggregation speed on a realistic volume: collect + metrics + fits over ~3.4M records.

    python perf/aggregate_speed.py                 # 7 sizes x 2 checkpoints x 6 benchmarks x 5 budgets x 16 samples x 500 problems
    python perf/aggregate_speed.py --problems 100  # smaller
    python perf/aggregate_speed.py --keep DIR      # keep the synthetic study in DIR

Writes a synthetic study (tests/synthetic.py write_synthetic_study: records.parquet + DONE per
benchmark, the layout jobs write) to a temporary directory, then times each stage the report
runs before plotting: collect (pyarrow reads, DONE and schema checks), compute_metrics (every
BudgetMetric with 1000 paired bootstrap resamples over problems), size_points + fit_trends (the
report's FIT_METRICS at every budget, each refitted on the 1000 resamples). Target (issue 6):
under 10 s in total on the 2-core development machine. Generation time is printed but not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--keep", default=None, help="write the study here and keep it")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: scaling, tests.synthetic
    from scaling.analyse import FIT_METRICS
    from scaling.collect import collect
    from scaling.fit import fit_trends
    from scaling.metrics import METRIC_COLUMNS, compute_metrics, size_points
    from tests.synthetic import write_synthetic_study

    sizes = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "4b": (4e9, 4e9), "8b": (8e9, 8e9),
             "14b": (14e9, 14e9), "32b": (32e9, 32e9), "30b_a3b": (30.5e9, 3.3e9)}
    benches = ("aime25", "amc23", "math500", "minerva", "olympiadbench", "livecodebench")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="scaling-perf-"))
    root = tmp / "perf-study"
    try:
        t = time.perf_counter()
        write_synthetic_study(root, sizes=sizes, benchmarks=benches, samples=args.samples, problems=args.problems)
        print(f"generate: {time.perf_counter() - t:6.2f} s (not counted)")
        clock = lambda: (time.perf_counter(), time.process_time())  # noqa: E731
        c0 = clock()
        st = collect(root, columns=METRIC_COLUMNS)
        c1 = clock()
        ms = compute_metrics(st.records, n_boot=args.n_boot)
        c2 = clock()
        pts = size_points(ms, st.sizes, metrics=FIT_METRICS)
        failures: list[str] = []
        fits = fit_trends(pts, metrics=FIT_METRICS, failures=failures)
        c3 = clock()

        def span(a: tuple[float, float], b: tuple[float, float]) -> str:
            return f"{b[0] - a[0]:6.2f} s wall, {b[1] - a[1]:6.2f} s CPU"

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"rows:     {st.records.num_rows:,} eval records, {st.signals.num_rows:,} training steps")
        print(f"collect:  {span(c0, c1)}")
        print(f"metrics:  {span(c1, c2)}  ({len(ms.metrics)} budget metrics, {args.n_boot} bootstrap resamples)")
        print(f"fits:     {span(c2, c3)}  ({len(fits)} trend fits, {len(failures)} degenerate groups skipped)")
        total = c3[0] - c0[0]
        print(f"total:    {span(c0, c3)}  (target < 10 s wall) {'OK' if total < 10 else 'SLOW'}; "
              f"load average {load:.1f} on {os.cpu_count()} CPUs")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
