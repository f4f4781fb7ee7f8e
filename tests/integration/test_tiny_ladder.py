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


def _scaling(args: list[str], cwd: Path, runs: Path, timeout_s: int, numerics: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "SCALING_CPU_BF16": numerics}
    return subprocess.run(
        [sys.executable, "-m", "scaling", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
    )


# Both numerics paths a user's CPU may take, whatever the CI machine's CPU is (scaling/numerics.py):
# "1" = bf16 autocast where the width rule allows it (the 1M model here; hardware bf16, or emulated
# by torch on a CPU without it), "0" = fp32 everywhere (the path of an AVX2-only CPU).
PATHS = {"bf16": "1", "fp32": "0"}


@pytest.fixture(scope="module", params=list(PATHS))
def quick_study(request: pytest.FixtureRequest, repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Launch the CI profile once per numerics path; every test below reads the study directory it leaves."""
    runs = tmp_path_factory.mktemp(f"runs-{request.param}")
    launched = _scaling(
        ["launch", QUICK, "--executor", "local", "--wait", "--runs-dir", str(runs)], repo_root, runs, 1800,
        PATHS[request.param],
    )
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    sdir = runs / STUDY
    # the SFT of the 1M model (hidden 128 >= CPU_BF16_MIN_HIDDEN) took the asked-for path
    import json

    done = json.loads((sdir / "1m" / "sft" / "DONE").read_text())
    assert done["bf16"] is (request.param == "bf16") and done["env"]["cpu_bf16_mode"] == request.param, done
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


# Lowest accuracy measured for the CI profile's largest size after its short SFT, at the
# largest budget: 12.5% (10 of 80, 2026-12-02, the 300-step SFT of issue 12; the 500-step SFT
# before it gave 15-28%; docs/tiny-ladder.md).
QUICK_LARGEST_BASE_ACCURACY = 0.125
Z_999 = 3.29  # two-sided 99.9% normal quantile: a chance failure is < 1 in 1,000 runs


def _at_max_budget(sdir: Path, size: str, ckpt: str, bench: str) -> tuple[list[bool], list[int]]:
    """(correct, response tokens) of every sample at the largest budget."""
    import pyarrow.parquet as pq

    t = pq.read_table(sdir / size / f"eval-{ckpt}" / bench / "records.parquet").to_pydict()
    top = max(t["budget_tokens"])
    rows = [i for i, b in enumerate(t["budget_tokens"]) if b == top]
    return [bool(t["correct"][i]) for i in rows], [int(t["response_tokens"][i]) for i in rows]


def test_the_science_targets_the_ci_profile_can_reach(quick_study: Path, repo_root: Path):
    """Issue 12's targets that 3 sizes x 40 problems x 2 samples can test, each with a margin
    that keeps a chance failure below 1 in 1,000 runs (binomial / normal sampling error of the
    evaluation; the samples are seeded, so on one machine the run is repeatable). Not tested here
    (the CI profile cannot reach them; perf/tiny_ladder.py prints them for the full ladder): the
    largest size >= 75% (the 300-step SFT gives 12.5%), GRPO length -30% (8 steps: -20..-29%)
    and accuracy -3 points or less (40 problems x 2 samples resolve +-10 points), the slope
    interval of the size fit (3 close sizes, all near 10%)."""
    from statistics import mean, pvariance

    from scipy.stats import binom

    from scaling.recipe import load_study

    study = load_study(repo_root / QUICK)
    sizes = study.sizes  # smallest first
    bench = study.config["sizes"][sizes[0]]["eval"]["benchmarks"][0]
    base = {s: _at_max_budget(quick_study, s, "base", bench) for s in sizes}
    acc = {s: mean(base[s][0]) for s in sizes}
    # 1. the largest size learnt a skill: at least k correct of n, k the largest count that a
    #    model with the lowest measured accuracy misses with probability < 1e-3 (a random model: 0)
    correct, _ = base[sizes[-1]]
    k = max(j for j in range(len(correct) + 1) if binom.cdf(j - 1, len(correct), QUICK_LARGEST_BASE_ACCURACY) < 1e-3)
    assert sum(correct) >= k, f"{sizes[-1]} after SFT: {sum(correct)} of {len(correct)} correct, need >= {k}"
    # 2. after SFT each size is at least as accurate as the next smaller one, within the 99.9%
    #    interval of the difference (two binomial proportions)
    for small, big in zip(sizes, sizes[1:]):
        n1, n2 = len(base[small][0]), len(base[big][0])
        se = (acc[small] * (1 - acc[small]) / n1 + acc[big] * (1 - acc[big]) / n2) ** 0.5
        assert acc[big] - acc[small] >= -Z_999 * se, f"after SFT {big} {acc[big]:.1%} < {small} {acc[small]:.1%} - {Z_999}x{se:.1%}"
    # 3. the smallest size leaves room for the fit: <= 60% (measured 7.5% here, 40% in the full ladder)
    assert acc[sizes[0]] <= 0.60, acc
    # 4. GRPO shortens the largest size: the mean length at the largest budget falls by more than
    #    3.29 standard errors of the difference (measured -29%, 5.5 standard errors at n = 80)
    _, len_base = base[sizes[-1]]
    _, len_trained = _at_max_budget(quick_study, sizes[-1], "trained", bench)
    se = (pvariance(len_base) / len(len_base) + pvariance(len_trained) / len(len_trained)) ** 0.5
    drop = mean(len_base) - mean(len_trained)
    assert drop > Z_999 * se, f"{sizes[-1]}: length {mean(len_base):.1f} -> {mean(len_trained):.1f} tokens (se {se:.1f})"


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
    """The report of a study produced by the launcher (not synthetic records) renders with every figure
    non-blank and its headline table within the first 1400x900 screen (screenshot in tmp_path)."""
    from test_report_html import _assert_self_contained, _check_in_chromium  # tests/integration (rootdir-less import)

    page = quick_study / "report" / "report.html"
    _assert_self_contained(page)
    assert _check_in_chromium(page, tmp_path).parent == tmp_path


# The code task's grade words (scaling/codegrade.py): every record carries one of them, and none
# says the sandbox or the gold failed (those are infrastructure errors, not a model's failure).
CODE_GRADES = {"ok", "failed_test", "runtime_error", "timeout", "memory", "output_limit", "no_answer", "truncated"}


def test_the_cross_domain_code_task_is_graded_and_reported_per_size(quick_study: Path, repo_root: Path):
    """Issue 24: the ladder trains on math only and evaluates the tiny code task before and after
    GRPO; every record is graded (a response cut at B is truncated and incorrect), and the report
    has the code task's table with a length change and its interval for every size."""
    import re

    import pyarrow.parquet as pq

    sizes = _sizes(repo_root)
    for size in sizes:
        for ckpt in ("base", "trained"):
            d = quick_study / size / f"eval-{ckpt}" / "tiny_code"
            import json

            done = json.loads((d / "DONE").read_text())
            assert done["grader"] == "code" and done["unsandboxed"] is False, done
            t = pq.read_table(d / "records.parquet").to_pydict()
            assert set(t["grade"]) <= CODE_GRADES, set(t["grade"])
            for finished, correct, grade in zip(t["finished"], t["correct"], t["grade"]):
                assert finished or (grade == "truncated" and not correct)
                assert not correct or grade == "ok"
    text = (quick_study / "report" / "report.md").read_text()
    section = text.split("### tiny_code at 256 tokens", 1)[1].split("\n\n", 2)[1]
    for size in sizes:
        label = {"0_1m": "0.1M", "0_3m": "0.3M", "1m": "1M"}[size]
        row = next((ln for ln in section.splitlines() if ln.startswith(f"| {label} |")), None)
        assert row is not None, section
        assert re.search(r"[−+-]?\d+\.\d% \[[−+-]?\d+\.\d, [−+-]?\d+\.\d\]", row), row  # length change [interval]


def test_the_report_shows_the_along_training_curves_and_the_selected_step(quick_study: Path, repo_root: Path):
    """Issue 26 item 3: step 4 of 8 is evaluated from its own checkpoint, a step is selected per
    size on the held-out tiny_arith_val, the report shows the curves and the selection's optimism,
    and the held-out benchmark appears in no other section."""
    import json

    sizes = _sizes(repo_root)
    for size in sizes:
        for bench in ("tiny_arith", "tiny_code", "tiny_arith_val"):
            done = json.loads((quick_study / size / "eval-step-4" / bench / "DONE").read_text())
            assert done["model_path"].endswith("train/checkpoints/checkpoint-4"), done["model_path"]
        assert (quick_study / size / "train" / "checkpoints" / "checkpoint-4").is_dir()
    text = (quick_study / "report" / "report.md").read_text()
    along, rest = text.split("## Along training", 1)[1], text.split("## Along training", 1)[0]
    along, after = along.split("\n## ", 1) if "\n## " in along else (along, "")
    assert along.count("◀ selected") == len(sizes), along
    for bench in ("tiny_arith", "tiny_code"):
        assert along.count(f"selected on tiny_arith_val (accuracy @ 256); optimism on {bench} @ 256") == len(sizes), along
    assert "tiny_arith_val" not in rest + after
    assert (quick_study / "report" / "figures" / f"along_training_{STUDY}.png").is_file()
