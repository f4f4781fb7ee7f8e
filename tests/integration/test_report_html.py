"""The report end to end: synthetic study -> `scaling report` -> report.md + report.html, and the
HTML opened in headless Debian Chromium at a 1400x900 viewport: every figure decodes to a
non-blank image, no script error, the headline table lies within the first screen, and the
screenshot (saved under the test's tmp dir) is not blank. Also run on the launched tiny ladder
(tests/integration/test_tiny_ladder.py) and, by hand, on any study (SCALING_REPORT_STUDY).

Chromium: tests/run.sh installs Debian's `chromium` when it is missing. Under CI (the CI
environment variable is set) a missing browser FAILS these tests; elsewhere they skip."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.report import report_command

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.synthetic
from tests.synthetic import write_synthetic_study  # noqa: E402

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = (1400, 900)  # the first screen a reviewer sees
PROBE = """<script>
window.addEventListener('error', function (e) { document.documentElement.setAttribute('data-error', String(e.message)); });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length;
  var flat = 0;  // images that decode to a single colour
  imgs.forEach(function (i) {
    try {
      var c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
      var g = c.getContext('2d'); g.drawImage(i, 0, 0);
      var d = g.getImageData(0, 0, c.width, c.height).data, same = true;
      for (var k = 4; k < d.length; k += 4 * 97) { if (d[k] !== d[0] || d[k + 1] !== d[1] || d[k + 2] !== d[2]) { same = false; break; } }
      if (same) flat += 1;
    } catch (err) { flat += 1000; }
  });
  var t = document.getElementById('headline');
  var r = t ? t.getBoundingClientRect() : null;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-decoded', String(ok));
  document.body.setAttribute('data-flat', String(flat));
  document.body.setAttribute('data-viewport', window.innerWidth + 'x' + window.innerHeight);
  document.body.setAttribute('data-headline', r ? Math.round(r.top) + ',' + Math.round(r.bottom) : 'missing');
});
</script>"""
SIZES = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "30b_a3b": (30.5e9, 3.3e9), "8b": (8e9, 8e9)}


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        msg = "chromium not installed (Debian: apt-get install chromium; tests/run.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}: under CI the browser check must run, not skip")
        pytest.skip(msg)
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)  # a fresh profile per test (tmp is the test's own dir)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180)


def _embedded_pngs_not_blank(html_text: str) -> int:
    """Every embedded figure is a PNG that is not a single colour (decoded here with matplotlib)."""
    import matplotlib.image as mpimg

    datas = re.findall(r'src="data:image/png;base64,([^"]+)"', html_text)
    for i, data in enumerate(datas):
        px = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")[..., :3]
        assert px.std() > 0.01 and (px.reshape(-1, 3) != px.reshape(-1, 3)[0]).any(axis=1).mean() > 0.01, f"figure {i} is blank"
    return len(datas)


def _check_in_chromium(page: Path, tmp: Path) -> Path:
    """Open ``page`` in headless Chromium; return the path of the first-screen screenshot."""
    html_text = page.read_text()
    n_img = html_text.count("<img ")
    assert n_img >= 4
    assert _embedded_pngs_not_blank(html_text) == n_img
    probe = tmp / "probe.html"
    probe.write_text(html_text.replace("</body>", PROBE + "</body>"))
    w, h = VIEWPORT
    dom = _chromium(tmp, f"--window-size={w},{h}", "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(0)))
    assert attrs.get("images") == str(n_img), body.group(0)
    assert attrs.get("decoded") == str(n_img), body.group(0)  # every figure loaded (naturalWidth > 0)
    assert attrs.get("flat") == "0", body.group(0)  # no figure decodes to a single colour
    assert "data-error" not in dom[:2000]
    vw, vh = (int(v) for v in attrs["viewport"].split("x"))
    assert attrs.get("headline") not in (None, "missing"), body.group(0)
    top, bottom = (int(v) for v in attrs["headline"].split(","))
    assert 0 <= top < bottom <= vh, f"headline table spans {top}-{bottom} px; the first screen is {vw}x{vh}"
    shot = tmp / "first-screen.png"
    _chromium(tmp, f"--window-size={w},{h}", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (h, w)
    assert pixels.std() > 0.05  # not a blank page
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02  # text, tables and plots: some non-white area
    return shot


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
    headings = ("Headline: does the method's effect grow or shrink with size?", "Warnings", "Summary at the largest budget",
                "Accuracy vs budget", "Trends against model size", "Predictions", "Length distributions by correctness",
                "Training: two phases", "How the numbers were made")
    at = [md_text.index(f"## {h}") if f"## {h}" in md_text else md_text.index(f"### {h}") for h in headings]
    assert at == sorted(at), headings  # the headline first, then warnings, then the detail
    assert "8b/eval-trained/aime25: no DONE marker" in md_text
    assert "| 70b | accuracy |" in md_text
    import json

    summary = json.loads((out / "summary.json").read_text())["studies"][0]
    assert summary["skipped"] == ["8b/eval-trained/aime25"]
    assert {f["metric"] for f in summary["fits"]} >= {"accuracy", "tokens_mean", "accuracy_auc"}
    assert any(p["size"] == "70b" and p["lo"] <= p["value"] <= p["hi"] for p in summary["predictions"])
    _assert_self_contained(page)
    shot = _check_in_chromium(page, tmp_path)
    assert shot.parent == tmp_path  # saved under the test's tmp dir


def test_report_of_a_seven_model_variant_study_renders_with_the_headline_on_screen(tmp_path: Path) -> None:
    """Art's seven Qwen3 models (hybrid, Instruct-2507, Thinking-2507; two share 4.02B and two
    3.35B active): the longest headline table the project ships a reference for still fits."""
    sizes = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "4b_instruct_2507": (4e9, 4e9), "4b_thinking_2507": (4e9, 4e9),
             "8b": (8e9, 8e9), "30b_a3b_instruct_2507": (30.5e9, 3.35e9), "30b_a3b_thinking_2507": (30.5e9, 3.35e9)}
    variants = {s: ("none" if "instruct" in s else "always" if "thinking" in s else "hybrid") for s in sizes}
    labels = {s: s.upper().replace("_A3B", "-A3B").replace("_INSTRUCT_", "-Instruct-").replace("_THINKING_", "-Thinking-")
              .replace("0_6B", "0.6B").replace("1_7B", "1.7B") for s in sizes}
    write_synthetic_study(tmp_path / "runs" / "art-paper", sizes=sizes, labels=labels, variants=variants,
                          benchmarks=("aime25",), budgets=(2048, 8192, 32768), problems=30, samples=8, train_steps=60)
    assert report_command(["art-paper"], runs_dir=tmp_path / "runs", out=tmp_path / "out", predict=["70b"]) == 0
    page = tmp_path / "out" / "report.html"
    text = page.read_text()
    assert "4B-Instruct-2507" in text and "30B-A3B-Thinking-2507" in text and "measured − reference" in text
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


def test_missing_chromium_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The browser check cannot silently vanish in CI: no Chromium + CI set = a failure."""
    import sys

    mod = sys.modules[__name__]
    monkeypatch.setattr(mod, "CHROMIUM", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI the browser check must run"):
        _chromium(tmp_path, "--version")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium not installed"):
        _chromium(tmp_path, "--version")
