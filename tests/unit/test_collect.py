"""collect: marked outputs only, schema checks, size facts from plan.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scaling.collect import collect, resolve_study_dir
from scaling.errors import RecordError
from scaling.metrics import METRIC_COLUMNS

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.synthetic
from tests.synthetic import write_synthetic_study  # noqa: E402

SIZES = {"0_6b": (0.6e9, 0.6e9), "4b": (4e9, 4e9), "30b_a3b": (30.5e9, 3.3e9)}


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    return write_synthetic_study(
        tmp_path / "runs" / "tiny", sizes=SIZES, benchmarks=("math500", "aime25"), budgets=(1024, 4096),
        samples=2, problems=10, train_steps=20,
    )


def test_collect_reads_every_marked_output(study: Path) -> None:
    st = collect(study)
    # 3 sizes x 2 checkpoints x 2 benchmarks x 10 problems x 2 samples x 2 budgets
    assert st.records.num_rows == 3 * 2 * 2 * 10 * 2 * 2
    assert st.signals.num_rows == 3 * 20
    assert st.skipped == []
    assert st.records.schema.metadata[b"schema_version"]


def test_collect_skips_output_without_done_marker(study: Path) -> None:
    (study / "4b" / "eval-trained" / "aime25" / "DONE").unlink()
    (study / "0_6b" / "train" / "DONE").unlink()
    st = collect(study)
    assert st.records.num_rows == (3 * 2 * 2 - 1) * 40
    assert st.signals.num_rows == 2 * 20
    assert "4b/eval-trained/aime25" in st.skipped and "0_6b/train" in st.skipped
    rows = st.records.filter(pa.compute.equal(st.records.column("size").cast(pa.string()), "4b"))
    assert rows.num_rows == 3 * 40


def test_collect_refuses_unknown_schema_major_version(study: Path) -> None:
    f = study / "4b" / "eval-base" / "math500" / "records.parquet"
    table = pq.read_table(f)
    meta = dict(table.schema.metadata)
    meta[b"schema_version"] = b"9.0"
    pq.write_table(table.replace_schema_metadata(meta), f)
    with pytest.raises(RecordError, match="schema_version 9.0"):
        collect(study)


def test_collect_refuses_file_without_schema_version(study: Path) -> None:
    f = study / "4b" / "eval-base" / "math500" / "records.parquet"
    pq.write_table(pq.read_table(f).replace_schema_metadata(None), f)
    with pytest.raises(RecordError, match="no schema_version"):
        collect(study)


def test_collect_takes_active_and_total_params_from_plan(study: Path) -> None:
    st = collect(study)
    moe = st.sizes["30b_a3b"]
    assert (moe.params_total, moe.params_active) == (30_500_000_000, 3_300_000_000)
    assert moe.params("active") == 3_300_000_000 and moe.params("total") == 30_500_000_000
    assert st.size_order() == ["0_6b", "30b_a3b", "4b"]  # ordered by active params


def test_size_order_follows_the_params_convention(study: Path) -> None:
    """Issue 13: with --params total the MoE (30.5B total) comes last, not between 0.6B and 4B."""
    st = collect(study)
    assert st.size_order("active") == ["0_6b", "30b_a3b", "4b"]
    assert st.size_order("total") == ["0_6b", "4b", "30b_a3b"]
    assert [st.label(s) for s in st.size_order("total")] == ["0.6B", "4B", "30B-A3B"]


def test_collect_reads_labels_and_variants_from_plan(tmp_path: Path) -> None:
    root = write_synthetic_study(
        tmp_path / "v", sizes={"4b_instruct_2507": (4e9, 4e9), "4b_thinking_2507": (4e9, 4e9)}, budgets=(1024,),
        samples=1, problems=5, train_steps=0, labels={"4b_instruct_2507": "4B-Instruct-2507"},
        variants={"4b_instruct_2507": "none", "4b_thinking_2507": "always"})
    st = collect(root)
    assert st.label("4b_instruct_2507") == "4B-Instruct-2507"
    assert st.label("4b_thinking_2507") == "4B-thinking-2507"  # no label in the plan: from the key
    assert (st.sizes["4b_instruct_2507"].variant, st.sizes["4b_thinking_2507"].variant) == ("none", "always")


def test_collect_without_plan_parses_size_keys_and_says_so(study: Path) -> None:
    (study / "plan.json").unlink()
    st = collect(study)
    assert st.sizes["30b_a3b"].params_active == 3_000_000_000
    assert st.sizes["30b_a3b"].params_total == 30_000_000_000
    assert any("plan.json" in n for n in st.notes)


def test_collect_refuses_unparseable_size_without_plan(study: Path) -> None:
    (study / "plan.json").unlink()
    (study / "4b").rename(study / "tinyish")
    # the run_id/size column still says 4b; rewrite size to an unreadable key
    f = study / "tinyish" / "eval-base" / "math500" / "records.parquet"
    t = pq.read_table(f)
    t = t.set_column(t.schema.get_field_index("size"), "size", pa.array(["tinyish"] * t.num_rows))
    pq.write_table(t, f)
    with pytest.raises(RecordError, match="tinyish"):
        collect(study)


def test_collect_finds_study_by_name_under_runs_dir(study: Path) -> None:
    assert resolve_study_dir("tiny", study.parent) == study
    with pytest.raises(RecordError, match="no such directory"):
        resolve_study_dir("nope", study.parent)


def test_collect_reads_only_requested_columns_dictionary_encoded(study: Path) -> None:
    st = collect(study, columns=METRIC_COLUMNS)
    assert set(st.records.column_names) == set(METRIC_COLUMNS)
    assert pa.types.is_dictionary(st.records.schema.field("problem_id").type)
    with pytest.raises(ValueError, match="unknown EvalRecord columns"):
        collect(study, columns=["nope"])


def test_collect_plan_without_params_is_an_error(study: Path) -> None:
    plan = json.loads((study / "plan.json").read_text())
    plan["runs"][0]["model"]["params_total"] = None
    (study / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(RecordError, match="params_total"):
        collect(study)


@pytest.mark.parametrize(
    "key,label",
    [("0_6b", "0.6B"), ("30b_a3b", "30B-A3B"), ("4b_instruct_2507", "4B-instruct-2507"), ("0_1m", "0.1M"), ("tiny", "tiny")],
)
def test_size_label_from_key(key: str, label: str) -> None:
    from scaling.sizes import size_label

    assert size_label(key) == label
