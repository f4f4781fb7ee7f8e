"""The CLI stays light: heavy libraries are imported only inside job bodies (house rule 11)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "transformers", "trl", "vllm", "peft", "accelerate", "datasets", "matplotlib", "submitit"]


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_cli_help_imports_no_heavy_library():
    assert _imported_after("import scaling, scaling.cli\nscaling.cli.build_parser()") == []


def test_planning_modules_import_no_heavy_library():
    mods = ["scaling.records", "scaling.errors", "scaling.recipe", "scaling.plan", "scaling.rules", "scaling.facts",
            "scaling.studydir", "scaling.rewards", "scaling.benchmarks", "scaling.grade", "scaling.task"]
    assert _imported_after("\n".join(f"import {m}" for m in mods)) == []


def test_launch_imports_submitit_only_through_slurm_module():
    assert "submitit" not in _imported_after("import scaling.launch")


def test_scaling_help_runs_and_exits_zero():
    out = subprocess.run([sys.executable, "-m", "scaling", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "plan" in out.stdout
