"""Write a study's run.yaml files without launching, so one job can be profiled in isolation.

    python perf/profile/write_runs.py recipes/tiny-ladder.yaml /tmp/prof/runs sft.max_steps=60 train.max_steps=4

Prints the study directory; each run's file is <study dir>/<size>/<stage>/run.yaml.
"""
import sys
from pathlib import Path

from scaling import studydir as sd
from scaling.plan import make_plan
from scaling.recipe import load_study

if __name__ == "__main__":
    recipe, runs_dir, *sets = sys.argv[1:]
    study = load_study(recipe, overrides=sets, sizes=None, profile=None)
    plan = make_plan(study)
    sdir = Path(runs_dir) / sd.safe_name(plan.study)
    sdir.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        sd.write_run_yaml(sdir, run)
    print(sdir)
