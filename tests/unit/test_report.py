"""report: the first screen answers the study's question (issue 13).

Row order under --params total, headline before grouped warnings, every point named, no-trend fits
kept out of the headline, units in points, variants fitted separately, and reference numbers with
measured minus reference. Studies are synthetic (tests/synthetic.py) or built row by
row to match a published table; the real matplotlib and jinja2 render every report.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from scaling.analyse import analyse, load_reference
from scaling.errors import RecordError
from scaling.report import report_command, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.synthetic
from tests.synthetic import write_synthetic_study  # noqa: E402

SIZES = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "30b_a3b": (30.5e9, 3.3e9), "8b": (8e9, 8e9)}
REPO = Path(__file__).resolve().parents[2]
ART = REPO / "recipes" / "references" / "art-aime25.yaml"


def _table_after(md: str, heading: str) -> list[list[str]]:
    """The first Markdown table after a heading line, as rows of cells (header first)."""
    lines = md[md.index(heading):].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| "))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        if ln.startswith("|---"):
            continue
        rows.append([c.strip() for c in ln.strip().strip("|").split(" | ")])
    return rows


def _report(root: Path, name: str, **kw) -> tuple[Path, str]:
    out = root / "out"
    an = analyse(root / name, convention=kw.pop("convention", "active"), n_boot=200, progress=False, **kw)
    md, page = write_report([an], out, progress=False)
    return out, md.read_text()


@pytest.fixture(scope="module")
def moe_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("moe")
    write_synthetic_study(root / "moe", sizes=SIZES, budgets=(2048, 8192), samples=4, problems=20, train_steps=40)
    (root / "moe" / "8b" / "eval-trained" / "math500" / "DONE").unlink()  # one missing output
    return root


def test_rows_follow_the_params_convention(moe_study: Path) -> None:
    """Item 1: with --params total the MoE (30.5B total, 3.3B active) is the last row."""
    _, md = _report(moe_study, "moe", convention="total", reference="")
    head = _table_after(md, "### math500 at")
    assert [r[0] for r in head[1:]] == ["0.6B", "1.7B", "8B", "30B-A3B"]
    assert head[0][:3] == ["size", "params total", "params active"]
    assert head[4][1:3] == ["30.5B", "3.3B"]
    summary = _table_after(md, "## Summary at the largest budget")
    assert [r[0] for r in summary[1:]] == ["0.6B", "1.7B", "8B", "30B-A3B"]
    _, md_active = _report(moe_study, "moe", convention="active", reference="")
    assert [r[0] for r in _table_after(md_active, "### math500 at")[1:]] == ["0.6B", "1.7B", "30B-A3B", "8B"]


def test_headline_first_and_warnings_grouped_by_kind_with_labels(moe_study: Path) -> None:
    """Item 3: the headline comes before any warning; warnings are folded per kind with a count
    and name sizes by label (20 problems: every (size, checkpoint) is a few_samples warning)."""
    out, md = _report(moe_study, "moe", reference="")
    summary = json.loads((out / "summary.json").read_text())["studies"][0]
    kinds: dict[str, int] = {}
    for al in summary["alerts"]:
        kinds[al["kind"]] = kinds.get(al["kind"], 0) + 1
    assert kinds["few_samples"] == 7 and kinds["missing"] == 1
    assert md.index("## Headline") < md.index("## Warnings (8)") < md.index("## Summary at the largest budget")
    first_screen = md[: md.index("## Warnings")]
    assert "few_samples" not in first_screen and "no DONE marker" not in first_screen
    assert "8 warnings (below the headline)" in first_screen
    for kind, n in kinds.items():
        assert f"<details><summary>{kind} ({n}):" in md
    block = md[md.index("<details><summary>few_samples"): md.index("</details>", md.index("<details><summary>few_samples"))]
    assert "- 0.6B base math500:" in block and "0_6b" not in block
    html = (out / "report.html").read_text()
    assert html.index('id="headline"') < html.index('id="warnings"')


def test_every_point_is_named_in_the_figure_alt_text_and_summary(moe_study: Path) -> None:
    """Item 4 (labels): the headline figure's alt text and summary.json name every size."""
    out, _ = _report(moe_study, "moe", reference="", predict=["70b"])
    html = (out / "report.html").read_text()
    alts = re.findall(r'<img alt="([^"]*)"', html)
    head = next(a for a in alts if a.startswith("math500 at 8192 tokens"))
    for label in ("0.6B", "1.7B", "30B-A3B"):  # 8B has no trained records (DONE removed): no effect point
        assert f"{label}: length " in head, (label, head)
    assert "8B: length" not in head
    assert "70b (predicted)" in head  # held-out size marked as a prediction
    trends = next(a for a in alts if a.startswith("Accuracy and length vs size"))
    assert all(label in trends for label in ("0.6B", "1.7B", "30B-A3B", "8B"))
    summary = json.loads((out / "summary.json").read_text())["studies"][0]
    eff = [h for h in summary["headline"] if h["metric"] == "accuracy_change"][0]
    assert [p["label"] for p in eff["points"]] == ["0.6B", "1.7B", "30B-A3B"]
    assert (out / "figures" / "headline_math500.png").stat().st_size > 10_000


def test_units_are_points_and_percent(moe_study: Path) -> None:
    """Item 6: accuracy changes read +11.2 pt, accuracies 13.3%, length changes -40.3%."""
    _, md = _report(moe_study, "moe", reference="")
    head = _table_after(md, "### math500 at")
    col = {h: i for i, h in enumerate(head[0])}
    for row in head[1:]:
        if row[col["accuracy change"]] != "–":
            assert re.fullmatch(r"[+−]\d+\.\d pt \[[+−]\d+\.\d, [+−]\d+\.\d\]", row[col["accuracy change"]]), row
        assert re.fullmatch(r"\d+\.\d% → (\d+\.\d%|–)", row[col["accuracy base → trained"]]), row
        if row[col["length change"]] != "–":
            assert re.fullmatch(r"[+−]\d+\.\d% \[[+−]\d+\.\d, [+−]\d+\.\d\]", row[col["length change"]]), row
    assert not re.search(r"\b0\.\d{3}\b", "\n".join(" ".join(r) for r in head))  # no fractions


def test_no_trend_fit_is_labelled_and_kept_out_of_the_headline(tmp_path: Path) -> None:
    """Item 5: a length change that zigzags with size (-50, -20, -50, -20%) has no trend; the
    accuracy change that rises 0 -> 30 pt does. The first is labelled "no trend", drawn without a
    line and kept out of the trend-fit table; the second is the headline trend."""
    sizes = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "4b": (4e9, 4e9), "8b": (8e9, 8e9)}
    bonus = {"0_6b": 0.0, "1_7b": 0.1, "4b": 0.2, "8b": 0.3}
    factor = {"0_6b": 0.5, "1_7b": 0.8, "4b": 0.5, "8b": 0.8}
    write_synthetic_study(tmp_path / "zig", sizes=sizes, budgets=(32768,), samples=8, problems=100, train_steps=0,
                          accuracy={s: {"base": 0.3, "trained": 0.3 + bonus[s]} for s in sizes},
                          length_median={s: {"base": 4000.0, "trained": 4000.0 * factor[s]} for s in sizes})
    out, md = _report(tmp_path, "zig", reference="")
    verdict = _table_after(md, "## Headline")
    assert verdict[1][1].startswith("no trend (R² "), verdict  # length change
    assert verdict[1][2].startswith("grows with size: +"), verdict  # accuracy change, pt per 10x params
    summary = json.loads((out / "summary.json").read_text())["studies"][0]
    by = {h["metric"]: h for h in summary["headline"]}
    assert by["length_change_frac"]["verdict"] == "no trend" and by["accuracy_change"]["verdict"] == "grows"
    fits = md[md.index("### Trend fits"):md.index("<details><summary>Fits with no trend")]
    assert "| length_change_frac |" not in fits and "| accuracy_change |" in fits
    folded = md[md.index("<details><summary>Fits with no trend"):]
    assert "| length_change_frac | trained_vs_base |" in folded.split("</details>")[0]
    assert "R² " in md and "< 0.5" in md  # the rule is stated with its threshold


def test_variants_are_fitted_separately_and_the_headline_says_so(tmp_path: Path) -> None:
    """Item 3 of the issue's build list: hybrid / Instruct / Thinking sizes are separate groups."""
    sizes = {"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9), "8b": (8e9, 8e9), "4b_instruct_2507": (4e9, 4e9),
             "4b_thinking_2507": (4e9, 4e9)}
    variants = {"0_6b": "hybrid", "1_7b": "hybrid", "8b": "hybrid", "4b_instruct_2507": "none", "4b_thinking_2507": "always"}
    labels = {"4b_instruct_2507": "4B-Instruct-2507", "4b_thinking_2507": "4B-Thinking-2507"}
    write_synthetic_study(tmp_path / "mix", sizes=sizes, labels=labels, variants=variants, budgets=(8192,), samples=4,
                          problems=40, train_steps=0)
    out, md = _report(tmp_path, "mix", reference="")
    assert "each is fitted separately: hybrid (3 sizes), Instruct (1 size, not fitted" in md
    summary = json.loads((out / "summary.json").read_text())["studies"][0]
    assert summary["variants"] == {"hybrid": ["0_6b", "1_7b", "8b"], "none": ["4b_instruct_2507"],
                                   "always": ["4b_thinking_2507"]}
    assert {f["variant"] for f in summary["fits"]} == {"hybrid"}
    assert all(set(f["sizes"]) <= {"0_6b", "1_7b", "8b"} for f in summary["fits"])
    assert any("Instruct variant (4B-Instruct-2507): fewer than 3" in s for s in summary["fits_skipped"])
    head = _table_after(md, "### math500 at")
    assert [r[0] for r in head[1:]] == ["0.6B", "1.7B", "4B-Instruct-2507", "4B-Thinking-2507", "8B"]


# --------------------------------------------------------------------------- references
ART_ROWS = {  # size key: label, Mean@8 base/trained %, Pass@8 base/trained %, length base, change %
    "0_6b": ("0.6B", 13.33, 24.58, 26.67, 36.67, 14900, -40.3),
    "1_7b": ("1.7B", 35.00, 38.75, 60.00, 60.00, 17700, -36.7),
    "4b_instruct_2507": ("4B-Instruct-2507", 45.42, 46.67, 66.67, 70.00, 9100, -47.3),
    "4b_thinking_2507": ("4B-Thinking-2507", 75.83, 76.25, 90.00, 86.67, 20900, -23.4),
    "8b": ("8B", 65.83, 67.08, 86.67, 83.33, 17900, -28.5),
    "30b_a3b_instruct_2507": ("30B-A3B-Instruct-2507", 60.83, 60.83, 83.33, 76.67, 6900, -26.1),
    "30b_a3b_thinking_2507": ("30B-A3B-Thinking-2507", 84.17, 86.25, 96.67, 96.67, 17300, -14.5),
}


def _write_matching_study(root: Path) -> Path:
    """Per-sample records (30 problems x 8 samples, budgets 2k and 32k) whose Mean@8, Pass@8 and
    mean length at 32k are Art's AIME 2025 numbers at the precision the paper prints them."""
    import pyarrow as pa

    from scaling.records import EvalRecord, to_table
    from scaling.durable import atomic_write_table, atomic_write_text, mark_done

    P, K = 30, 8
    runs = []
    for size, (label, ab, at, pb, pt, lb, ch) in ART_ROWS.items():
        moe = size.startswith("30b")
        runs.append({"run_id": f"{size}/train", "size": size, "model": {
            "family": "qwen3", "size": size, "label": label, "thinking": "always" if "thinking" in size else
            ("none" if "instruct" in size else "hybrid"), "params_total": int(30.5e9 if moe else float(label.split("B")[0]) * 1e9),
            "params_active": int(3.3e9 if moe else float(label.split("B")[0]) * 1e9)}})
        for ckpt, acc, pas, length in (("base", ab, pb, lb), ("trained", at, pt, round(lb * (1 + ch / 100)))):
            total, solved = round(acc / 100 * P * K), round(pas / 100 * P)
            assert solved <= total <= K * solved
            per = np.zeros(P, dtype=int)
            per[:solved] = 1
            left = total - solved
            for i in range(solved):  # spread the remaining correct samples over solved problems
                add = min(K - 1, left)
                per[i] += add
                left -= add
            correct = np.array([[s < per[p] for s in range(K)] for p in range(P)]).ravel()
            n = P * K
            rows = {"run_id": [f"{size}/eval-{ckpt}"] * 2 * n, "model": ["qwen3"] * 2 * n, "size": [size] * 2 * n,
                    "checkpoint": [ckpt] * 2 * n, "benchmark": ["aime25"] * 2 * n,
                    "problem_id": [f"aime25-{p:02d}" for p in range(P) for _ in range(K)] * 2,
                    "sample": list(range(K)) * P * 2, "budget_tokens": [32768] * n + [2048] * n,
                    "finished": [True] * n + [False] * n, "correct": list(correct) + [False] * n,
                    "grade": ["ok" if c else "wrong" for c in correct] + ["truncated"] * n,
                    "response_tokens": [length] * n + [2048] * n, "thinking_tokens": [length] * n + [2048] * n,
                    "decoded_tokens": [length] * 2 * n, "answer": [""] * 2 * n}
            d = root / size / f"eval-{ckpt}" / "aime25"
            atomic_write_table(d / "records.parquet", to_table(rows, EvalRecord))
            mark_done(d, {"rows": 2 * n})
    atomic_write_text(root / "plan.json", json.dumps({"study": root.name, "runs": runs}))
    assert pa  # pyarrow is what to_table writes with
    return root


def test_records_built_to_match_the_reference_give_zero_difference(tmp_path: Path) -> None:
    """Item 4: an art-paper study uses recipes/references/art-aime25.yaml by default, and records
    built to match Art's table give measured - reference = 0.0 for every one of its numbers."""
    _write_matching_study(tmp_path / "runs" / "art-paper")
    assert report_command(["art-paper"], runs_dir=tmp_path / "runs", out=tmp_path / "out") == 0
    ref = json.loads((tmp_path / "out" / "summary.json").read_text())["studies"][0]["reference"]
    assert Path(ref["file"]).resolve() == ART.resolve()
    rows = ref["rows"]
    assert len(rows) == 7 * 7 + 7  # 49 published numbers + 7 accuracy changes derived from them
    assert {r["label"] for r in rows} == {v[0] for v in ART_ROWS.values()}
    bad = [(r["label"], r["metric"], r["checkpoint"], r["measured"], r["reference"]) for r in rows if r["diff"] != 0.0]
    assert not bad, bad
    assert all(r["budget_tokens"] == 32768 for r in rows)  # budget: max = the study's largest
    md = (tmp_path / "out" / "report.md").read_text()
    head = _table_after(md, "### aime25 at")
    assert head[0][-1] == "measured − reference"
    assert len(head) == 8 and all(r[-1].startswith("length +0.0% (ref ") and "accuracy +0.0 pt" in r[-1] for r in head[1:]), head


def test_reference_overlay_counts_a_real_difference(tmp_path: Path) -> None:
    """The overlay is measured minus reference, not a copy: a reference 5 pt above gives -5.0."""
    _write_matching_study(tmp_path / "runs" / "mine")
    ref = tmp_path / "ref.yaml"
    ref.write_text("references:\n  - {size: 0.6B, benchmark: aime25, budget: 32768, checkpoint: base, metric: accuracy,"
                   " value: 18.33, precision: 0.01, source: test}\n"
                   "  - {size: 70B, benchmark: aime25, budget: max, checkpoint: base, metric: accuracy, value: 1, source: t}\n")
    an = analyse(tmp_path / "runs" / "mine", reference=ref, n_boot=50, progress=False)
    assert [(r.size, r.diff) for r in an.reference] == [("0_6b", -5.0)]
    assert an.reference_notes == ["1 reference number for size 70B: not in this study, not shown"]
    assert analyse(tmp_path / "runs" / "mine", n_boot=50, progress=False).reference == []  # not art-paper: none


@pytest.mark.parametrize("text,msg", [
    ("references: []", "no 'references:' list"),
    ("references:\n  - {size: 0.6B, benchmark: b, metric: speed, value: 1, source: s}", "references[0].metric: unknown metric"),
    ("references:\n  - {size: 0.6B, benchmark: b, metric: accuracy, value: 1}", "references[0]: missing source"),
    ("references:\n  - {size: 0.6B, benchmark: b, budget: lots, metric: accuracy, value: 1, source: s}", "references[0].budget"),
    ("references: [", "not valid YAML"),
])
def test_bad_reference_file_is_a_one_line_error(tmp_path: Path, text: str, msg: str) -> None:
    p = tmp_path / "ref.yaml"
    p.write_text(text)
    with pytest.raises(RecordError, match=re.escape(msg)) as err:
        load_reference(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_cli_reference_flag_reaches_the_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from scaling.cli import main

    _write_matching_study(tmp_path / "runs" / "mine")
    assert main(["report", "mine", "--runs-dir", str(tmp_path / "runs"), "-o", str(tmp_path / "o"),
                 "--reference", str(ART)]) == 0
    ref = json.loads((tmp_path / "o" / "summary.json").read_text())["studies"][0]["reference"]
    assert len(ref["rows"]) == 56 and all(r["diff"] == 0.0 for r in ref["rows"])
    assert main(["report", "mine", "--runs-dir", str(tmp_path / "runs"), "--reference", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read the reference file" in capsys.readouterr().err


def test_shipped_reference_is_art_table_with_a_source_per_entry() -> None:
    entries = load_reference(ART)
    assert len(entries) == 49 and all(e.source.startswith("Art (") and "arXiv 2602.20945" in e.source for e in entries)
    by = {(e.size, e.checkpoint, e.metric): e.value for e in entries}
    assert by[("0.6B", "base", "accuracy")] == 13.33 and by[("0.6B", "trained", "length_change")] == -40.3
    assert by[("30B-A3B-Thinking-2507", "trained", "tokens_mean")] == 14800
    assert not math.isnan(sum(by.values()))


def test_templates_are_package_files_and_markdown_matches_html(moe_study: Path) -> None:
    """Item 6 (jinja2): both formats come from scaling/templates/*.j2 over the same blocks."""
    from markupsafe import escape

    import scaling

    tdir = Path(scaling.__file__).parent / "templates"
    assert (tdir / "report.html.j2").is_file() and (tdir / "report.md.j2").is_file()
    out, md = _report(moe_study, "moe", reference="")
    html = (out / "report.html").read_text()
    for heading in re.findall(r"^#+ (.+)$", md, flags=re.M):
        assert f">{escape(heading)}</h" in html, heading
