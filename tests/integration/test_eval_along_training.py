"""Evaluation along training end to end (issue 26, item 3): a one-size tiny study launched locally
with a 2-checkpoint schedule (``every 2`` below 6 GRPO steps -> steps 2 and 4) and a held-out
selection benchmark; checks that the intermediate evaluations exist, were made from the train job's
``checkpoint-<step>`` (DONE's ``model_path``), that the scheduled checkpoints were kept, and that the
report shows the curves and the selected step. 1-2 min on 2 CPU cores (measured 2026-12-08: 55 s alone,
119 s with other jobs on the machine; ~65 s of CPU):

    python -m pytest tests/integration/test_eval_along_training.py -m integration -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

QUICK = "recipes/tiny-ladder-quick.yaml"
STUDY = "tiny-ladder-quick"
SETS = ["study.sizes=[0_1m]", "sft.max_steps=60", "train.max_steps=6", "train.save_steps=2",
        "eval.checkpoints=[base,trained,every 2]", "eval.select_step.benchmark=tiny_arith_val", "eval.max_problems=20"]


@pytest.fixture(scope="module")
def study(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    runs = tmp_path_factory.mktemp("runs-along")
    args = ["launch", QUICK, "--executor", "local", "--wait", "--runs-dir", str(runs)]
    for s in SETS:
        args += ["--set", s]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "scaling", *args], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return runs / STUDY, done.stdout


def test_the_scheduled_steps_were_evaluated_from_their_checkpoints(study):
    sdir, _ = study
    for step in (2, 4):
        ck = sdir / "0_1m" / "train" / "checkpoints" / f"checkpoint-{step}"
        assert (ck / "config.json").is_file(), f"{ck} was not kept"
        for bench in ("tiny_arith", "tiny_arith_val"):
            out = sdir / "0_1m" / f"eval-step-{step}" / bench
            info = json.loads((out / "DONE").read_text())
            assert Path(info["model_path"]) == ck, info["model_path"]
            import pyarrow.parquet as pq

            t = pq.read_table(out / "records.parquet", columns=["checkpoint", "benchmark"])
            assert set(t.column("checkpoint").to_pylist()) == {f"step-{step}"}
    # the final model is a selection candidate: it is evaluated on the held-out benchmark too; the base is not
    trained = json.loads((sdir / "0_1m" / "eval-trained" / "tiny_arith_val" / "DONE").read_text())
    assert Path(trained["model_path"]) == sdir / "0_1m" / "train" / "model"
    assert not (sdir / "0_1m" / "eval-base" / "tiny_arith_val").exists()


def test_the_report_shows_the_curves_and_the_selected_step(study):
    sdir, _ = study
    md = (sdir / "report" / "report.md").read_text()
    section = md.split("## Along training", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    assert [r.split("|")[1].strip() for r in rows] == ["2", "4", "6 (final)"], section
    assert sum("◀ selected" in r for r in rows) == 1, section
    assert "tiny_arith_val accuracy @ 256 (held out)" in section
    assert "selected on tiny_arith_val" in section and "optimism on tiny_arith" in section
    assert (sdir / "report" / "figures" / "along_training_tiny-ladder-quick.png").stat().st_size > 1000
    # the held-out benchmark and the steps stay out of the rest of the report
    rest = md.replace(section, "")
    assert "tiny_arith_val" not in rest and "step-2" not in rest
    summary = json.loads((sdir / "report" / "summary.json").read_text()) if (sdir / "report" / "summary.json").is_file() else {}
    assert "tiny_arith_val" not in json.dumps(summary)
