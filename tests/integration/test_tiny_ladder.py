"""The tiny ladder end to end: the CI profile through the user's own command.

``scaling launch recipes/tiny-ladder-quick.yaml --executor local --wait`` (which ends by writing
the report), in a fresh runs dir, and assertions on what the study
directory holds: DONE markers, SFT/GRPO models, training signals, evaluation records over the
budget spectrum for base and trained checkpoints, and a report that names the sizes and fits.
Marked ``slow`` (minutes of CPU); run it alone:

    python -m pytest tests/integration/test_tiny_ladder.py -m slow -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

QUICK = "recipes/tiny-ladder-quick.yaml"
STUDY = "tiny-ladder-quick"


def _scaling(args: list[str], cwd: Path, runs: Path, timeout_s: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "scaling", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.fixture(scope="module")
def quick_study(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Launch the CI profile once; every test below reads the study directory it leaves."""
    runs = tmp_path_factory.mktemp("runs")
    launched = _scaling(
        ["launch", QUICK, "--executor", "local", "--wait", "--runs-dir", str(runs)], repo_root, runs, 1800
    )
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    sdir = runs / STUDY
    # `launch --wait` ends by writing the report and saying where it is
    assert f"report: {sdir / 'report' / 'report.html'}" in launched.stdout, launched.stdout[-3000:]
    return sdir


def _sizes(repo_root: Path) -> list[str]:
    from scaling.recipe import load_study

    return load_study(repo_root / QUICK).sizes


def test_every_planned_run_is_done_and_models_were_saved(quick_study: Path, repo_root: Path):
    sizes = _sizes(repo_root)
    assert len(sizes) >= 2
    for size in sizes:
        for stage in ("sft", "train"):
            job = quick_study / size / stage
            assert (job / "DONE").is_file(), job
            assert (job / "model" / "config.json").is_file(), job
        assert (quick_study / ".models" / size / "config.json").is_file()  # built once from tiny://


def test_training_signals_show_the_length_falling(quick_study: Path, repo_root: Path):
    import pyarrow.parquet as pq

    for size in _sizes(repo_root):
        table = pq.read_table(quick_study / size / "train" / "signals.parquet").to_pydict()
        steps = table["step"]
        assert len(steps) >= 2 and steps == sorted(steps)
        lengths = table["tokens_mean"]
        assert all(length > 0 for length in lengths)
    # the largest size must shorten: the truncation reward cuts the trained-in re-checks
    largest = _sizes(repo_root)[-1]
    t = pq.read_table(quick_study / largest / "train" / "signals.parquet").to_pydict()["tokens_mean"]
    head, tail = t[: max(1, len(t) // 4)], t[-max(1, len(t) // 4):]
    assert sum(tail) / len(tail) < sum(head) / len(head)


def test_eval_records_cover_every_budget_for_base_and_trained(quick_study: Path, repo_root: Path):
    import pyarrow.parquet as pq

    from scaling.recipe import load_study

    study = load_study(repo_root / QUICK)
    budgets = sorted(study.config["sizes"][study.sizes[0]]["eval"]["budgets"])
    benchmarks = study.config["sizes"][study.sizes[0]]["eval"]["benchmarks"]
    accuracy_at_max: dict[tuple[str, str], float] = {}
    for size in study.sizes:
        for ckpt in ("base", "trained"):
            for bench in benchmarks:
                d = quick_study / size / f"eval-{ckpt}" / bench
                assert (d / "DONE").is_file(), d
                t = pq.read_table(d / "records.parquet").to_pydict()
                assert sorted(set(t["budget_tokens"])) == budgets
                assert set(t["checkpoint"]) == {ckpt}
                assert all(r <= b for r, b, f in zip(t["response_tokens"], t["budget_tokens"], t["finished"]) if f)
                top = [c for c, b in zip(t["correct"], t["budget_tokens"]) if b == budgets[-1]]
                accuracy_at_max[(size, ckpt, bench)] = sum(top) / len(top)
    # after SFT the largest quick size solves part of the task: the ladder measures a skill, not
    # noise (a random model scores 0; the CI profile's short SFT measured 25-28% over 40-80 samples)
    largest = study.sizes[-1]
    assert max(v for (s, c, b), v in accuracy_at_max.items() if c == "base" and s == largest) >= 0.15


def test_report_names_every_size_and_fits_accuracy_and_length_against_size(quick_study: Path, repo_root: Path):
    import json

    report = quick_study / "report" / "report.md"
    assert report.is_file() and (quick_study / "report" / "report.html").is_file()
    text = report.read_text()
    assert "Training: two phases" in text
    summary = json.loads((quick_study / "report" / "summary.json").read_text())["studies"][0]
    assert {m["size"] for m in summary["metrics"]} == set(_sizes(repo_root))
    fitted = {(f["metric"], f["arm"]) for f in summary["fits"]}
    assert ("accuracy", "base") in fitted and ("tokens_mean", "base") in fitted, summary["fits_skipped"][:3]
    assert {p["run_id"] for p in summary["phases"]} >= {f"{s}/train" for s in _sizes(repo_root)}


def test_report_of_the_launched_study_renders_in_headless_chromium(quick_study: Path, tmp_path: Path):
    """The report of a study produced by the launcher (not synthetic records) renders with every figure."""
    from test_report_html import _assert_self_contained, _check_in_chromium  # tests/integration (rootdir-less import)

    page = quick_study / "report" / "report.html"
    _assert_self_contained(page)
    _check_in_chromium(page, tmp_path)
