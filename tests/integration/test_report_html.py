"""The report end to end: synthetic study -> `scaling report` -> report.md + report.html, and the
HTML opened in headless Debian Chromium: every figure decodes, no script error, the screenshot
is not blank. Also run by the lead on a study produced by the launcher (SCALING_REPORT_STUDY)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scaling.collect import write_synthetic_study
from scaling.report import report_command

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = """<script>
window.addEventListener('error', function (e) { document.documentElement.setAttribute('data-error', String(e.message)); });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-decoded', String(ok));
});
</script>"""
SIZES = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "30b_a3b": (30.5e9, 3.3e9), "8b": (8e9, 8e9)}


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180)


def _check_in_chromium(page: Path, tmp: Path) -> None:
    html_text = page.read_text()
    n_img = html_text.count("<img ")
    assert n_img >= 4
    probe = tmp / "probe.html"
    probe.write_text(html_text.replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp, "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    assert f'data-images="{n_img}"' in body.group(0), body.group(0)
    assert f'data-decoded="{n_img}"' in body.group(0), body.group(0)  # every figure decoded
    assert "data-error" not in dom[:2000]
    shot = tmp / "shot.png"
    _chromium(tmp, "--window-size=1400,2200", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not a blank page
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02  # text, tables and plots: some non-white area


def _assert_self_contained(page: Path) -> None:
    text = page.read_text()
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'src="(?!data:image/png;base64,)', text)  # every image is embedded
    assert "http://" not in text and "https://" not in text


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_synthetic_study(runs / "syn", sizes=SIZES, benchmarks=("math500", "aime25"), budgets=(2048, 8192, 32768),
                          problems=60, samples=4, train_steps=120)
    # one unfinished output: skipped and reported
    (runs / "syn" / "8b" / "eval-trained" / "aime25" / "DONE").unlink()
    assert report_command(["syn"], runs_dir=runs, out=None, predict=["70b"], params="active") == 0
    out = runs / "syn" / "report"
    md, page = out / "report.md", out / "report.html"
    assert md.exists() and page.exists()
    md_text = md.read_text()
    for name in re.findall(r"\]\(figures/([^)]+)\)", md_text):
        assert (out / "figures" / name).stat().st_size > 1000
    for heading in ("Warnings", "Summary at the largest budget", "Accuracy vs budget", "Trends against model size",
                    "Predictions", "Length distributions by correctness", "Training: two phases", "How the numbers were made"):
        assert f"## {heading}" in md_text or f"### {heading}" in md_text, heading
    assert "8b/eval-trained/aime25: no DONE marker" in md_text
    assert "| 70b | accuracy |" in md_text
    import json

    summary = json.loads((out / "summary.json").read_text())["studies"][0]
    assert summary["skipped"] == ["8b/eval-trained/aime25"]
    assert {f["metric"] for f in summary["fits"]} >= {"accuracy", "tokens_mean", "accuracy_auc"}
    assert any(p["size"] == "70b" and p["lo"] <= p["value"] <= p["hi"] for p in summary["predictions"])
    _assert_self_contained(page)
    _check_in_chromium(page, tmp_path)


def test_report_compares_two_studies_on_the_same_axes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name, seed, acc in (("shaping_a", 1, 0.30), ("shaping_b", 2, 0.25)):
        write_synthetic_study(runs / name, sizes=SIZES, benchmarks=("math500",), budgets=(4096, 32768), problems=40,
                              samples=4, train_steps=60, seed=seed,
                              accuracy=lambda n, c, a=acc: a + 0.1 * __import__("math").log10(n / 1e9))
    out = tmp_path / "cmp"
    assert report_command([str(runs / "shaping_a"), "shaping_b"], runs_dir=runs, out=out, predict=[], params="total") == 0
    text = (out / "report.md").read_text()
    assert text.startswith("# Scaling report: shaping_a vs shaping_b")
    assert "[shaping_a]" in text or "none" in text
    assert "| shaping_b | accuracy |" in text  # fits table carries the study column
    _assert_self_contained(out / "report.html")
    _check_in_chromium(out / "report.html", tmp_path)


@pytest.mark.skipif(not os.environ.get("SCALING_REPORT_STUDY"), reason="set SCALING_REPORT_STUDY=<study dir> (a launched study)")
def test_report_of_a_launched_study_renders(tmp_path: Path) -> None:
    study = Path(os.environ["SCALING_REPORT_STUDY"])
    out = tmp_path / "report"
    assert report_command([str(study)], runs_dir=study.parent, out=out, predict=["70b"], params="active") == 0
    _assert_self_contained(out / "report.html")
    _check_in_chromium(out / "report.html", tmp_path)
