"""Recipe loading: composition order, provenance, --set, --sizes, and the malformed-recipe corpus.

Every ``tests/data/bad_recipes/*.yaml`` starts with ``# expect: <substring of the one-line
error>`` (and optionally ``# args: <extra CLI arguments>``); one parametrised test runs
``scaling check`` on it through ``scaling.cli.main`` and checks the message and exit status 2.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from scaling.cli import main
from scaling.errors import RecipeError
from scaling.layers import family_sizes
from scaling.profiles import load_profile
from scaling.recipe import load_method, load_study
from scaling.sizes import size_key

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests" / "data" / "bad_recipes").glob("*.yaml"))
LADDER = ROOT / "recipes" / "qwen3-ladder.yaml"
ART = ROOT / "recipes" / "art-paper.yaml"


def _header(path: Path) -> tuple[str, list[str]]:
    expect, args = "", []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("# expect:"):
                expect = line.removeprefix("# expect:").strip()
            elif line.startswith("# args:"):
                args = shlex.split(line.removeprefix("# args:").replace("{root}", str(ROOT)))
            elif not line.startswith("#"):
                break
    return expect, args


# The longest error line a user may see (ScalingError caps every message; echoed values are cut
# to recipe.ECHO_MAX characters), and a hang guard: not a speed target (perf/hostile_recipes.py
# prints the times; the documented bound is 2 s), only "returns at all" for an alias bomb.
MAX_LINE = 1000
HANG_GUARD_S = 20.0


def test_the_malformed_corpus_has_at_least_fifteen_cases():
    assert len(BAD) >= 15
    assert all(_header(p)[0] for p in BAD), "every bad recipe starts with '# expect: ...'"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_malformed_recipe_gives_one_line_error_and_exit_2(path: Path, capsys, tmp_path, monkeypatch):
    import time

    expect, args = _header(path)
    monkeypatch.chdir(tmp_path)  # nothing may be written: the working directory stays empty
    monkeypatch.setenv("SCALING_CANARY_SECRET", "canary-3f9c2a7e")
    t0 = time.monotonic()
    code = main(["check", str(path), *args])
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    err = err.strip()
    assert code == 2, err[:2000]
    assert len(err.splitlines()) == 1, err[:2000]
    assert err.startswith("error: ")
    assert "Traceback" not in err and "canary-3f9c2a7e" not in err + out
    assert len(err) <= MAX_LINE + len("error: "), f"{len(err)} characters: {err[:300]}..."
    assert expect in err, f"\nexpected: {expect}\ngot:      {err}"
    assert list(tmp_path.iterdir()) == []
    assert elapsed < HANG_GUARD_S


def test_layers_merge_in_order_and_provenance_names_each_file():
    study = load_study(ART, sizes=["4b_instruct_2507"])
    prov = study.size_provenance("4b_instruct_2507")
    s = study.settings["4b_instruct_2507"]
    assert s.model.hidden_size == 2560 and prov["model.hidden_size"] == "families/qwen3/4b.yaml"
    assert s.model.thinking == "none" and prov["model.thinking"] == "families/qwen3/_instruct_2507.yaml"
    assert s.model.hf_id == "Qwen/Qwen3-4B-Instruct-2507"
    assert prov["model.hf_id"] == "families/qwen3/4b_instruct_2507.yaml"
    assert prov["train.beta"] == "method/efficient_reasoning.yaml"
    assert prov["train.learning_rate"] == "art-paper.yaml"
    assert s.train.rollout_limit == 8192 and s.train.reward.target_length == 6144
    assert prov["train.reward.target_length"] == "art-paper.yaml:sizes.4b_instruct_2507"
    assert prov["train.reward.l1_alpha"] == "default"
    assert s.eval.temperature == 0.7  # instruct sampling from the helper file
    assert prov["model.params_total"] == "rule:count_params"


def test_set_overrides_last_and_per_size():
    study = load_study(LADDER, overrides=["sizes.8b.train.learning_rate=5e-7", "train.max_steps=50"],
                       sizes=["0.6B", "8b"])
    assert study.sizes == ["0_6b", "8b"]
    assert study.settings["8b"].train.learning_rate == 5e-7
    assert study.settings["0_6b"].train.learning_rate is None  # still the rule's to decide
    assert study.provenance["sizes.8b.train.learning_rate"] == "--set"
    assert all(study.settings[k].train.max_steps == 50 for k in study.sizes)
    # a global --set beats a study's sizes.<key> block (--set is applied last)
    study = load_study(LADDER, overrides=["train.rollout_limit=4096", "train.reward.target_length=4096"],
                       sizes=["0_6b"])
    assert study.settings["0_6b"].train.rollout_limit == 4096


def test_sizes_accept_keys_and_labels_case_insensitively():
    study = load_study(ART, sizes=["30B-A3B-Thinking-2507", "0.6b", "1_7B"])
    assert study.sizes == ["0_6b", "1_7b", "30b_a3b_thinking_2507"]
    assert size_key("4B-Instruct-2507") == "4b_instruct_2507"


def test_profile_argument_replaces_the_recipes_profile():
    study = load_study(LADDER, sizes=["0_6b"], profile="small_4x24gb")
    assert study.profile.name == "small_4x24gb" and study.profile.gpu_mem_gb == 24


def test_family_lists_every_qwen3_size_and_no_helper():
    sizes = family_sizes(ROOT / "recipes" / "families" / "qwen3")
    assert set(sizes) == {"0_6b", "1_7b", "4b", "8b", "14b", "32b", "30b_a3b", "4b_instruct_2507",
                          "4b_thinking_2507", "30b_a3b_instruct_2507", "30b_a3b_thinking_2507"}


@pytest.mark.parametrize("size, hidden, layers, heads, kv, inter, tied", [
    ("0_6b", 1024, 28, 16, 8, 3072, True), ("1_7b", 2048, 28, 16, 8, 6144, True),
    ("4b", 2560, 36, 32, 8, 9728, True), ("8b", 4096, 36, 32, 8, 12288, False),
    ("14b", 5120, 40, 40, 8, 17408, False), ("32b", 5120, 64, 64, 8, 25600, False),
])
def test_dense_size_files_carry_the_config_json_facts(size, hidden, layers, heads, kv, inter, tied):
    study = load_study(LADDER, overrides=[f"study.sizes=[{size}]"])
    m = study.settings[size].model
    assert (m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads, m.head_dim, m.intermediate_size,
            m.tie_embeddings, m.vocab_size) == (hidden, layers, heads, kv, 128, inter, tied, 151936)
    assert m.max_position == 40960 and m.thinking == "hybrid"


def test_moe_and_2507_variants_share_their_base_architecture():
    study = load_study(ART, sizes=["30b_a3b_instruct_2507", "30b_a3b_thinking_2507", "4b_thinking_2507"])
    for k in ("30b_a3b_instruct_2507", "30b_a3b_thinking_2507"):
        m = study.settings[k].model
        assert (m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads, m.num_experts, m.experts_per_token,
                m.moe_intermediate_size, m.tie_embeddings) == (2048, 48, 32, 4, 128, 8, 768, False)
        assert m.max_position == 262144
        assert abs(m.params_active / 3.3e9 - 1) < 0.03 and abs(m.params_total / 30.5e9 - 1) < 0.02
    assert study.settings["30b_a3b_instruct_2507"].model.thinking == "none"
    assert study.settings["30b_a3b_thinking_2507"].model.thinking == "always"
    assert study.settings["4b_thinking_2507"].model.hidden_size == 2560


def test_to_yaml_records_config_provenance_and_code_version():
    import yaml

    study = load_study(LADDER, sizes=["8b"], overrides=["sizes.8b.train.max_steps=7"])
    doc = yaml.safe_load(study.to_yaml())
    assert doc["study"] == "qwen3-ladder" and doc["overrides"] == ["sizes.8b.train.max_steps=7"]
    assert doc["config"]["sizes"]["8b"]["train"]["max_steps"] == 7
    assert doc["provenance"]["sizes.8b.train.max_steps"] == "--set"
    assert doc["code_version"]["package"]
    assert doc["profile"]["name"] == "h100_8x80gb"


def test_unknown_key_error_names_file_key_and_suggestion(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("include: [method/efficient_reasoning.yaml]\nstudy: {name: s, family: qwen3, sizes: [8b]}\n"
                   "eval: {benchmarks: [aime25]}\nsizes:\n  8b: {train: {learing_rate: 1.0e-6}}\n")
    with pytest.raises(RecipeError) as info:
        load_study(bad)
    assert "s.yaml: sizes.8b.train.learing_rate: unknown key in sizes.8b.train (did you mean learning_rate?)" in str(info.value)


def test_profiles_load_and_cpu_profile_has_no_gpus():
    for name in ("h100_8x80gb", "small_4x24gb", "local_cpu"):
        prof = load_profile(name)
        assert prof.name == name
    assert load_profile("local_cpu").gpus_per_node == 0


def test_load_method_returns_the_method_sections():
    method = load_method()
    assert method["train"]["num_generations"] == 24 and method["train"]["learning_rate"] is None
    assert method["eval"]["budgets"] == [2048, 4096, 8192, 16384, 32768]


def test_every_method_value_cites_its_source():
    text = (ROOT / "recipes" / "method" / "efficient_reasoning.yaml").read_text()
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue
        assert "#" in stripped, f"value without a cited source: {line}"


def test_record_defaults_are_the_method_values():
    """The method's values are set in recipes/method/efficient_reasoning.yaml (what every study
    plans with, and what --explain cites); the records' defaults only mirror them for settings
    built in code (tests, perf scripts). This keeps the mirror from drifting: a change of the
    method must change both, or be listed here with why."""
    from scaling.records import CurateSettings, EvalSettings, SftSettings, TrainSettings, to_dict
    from scaling.records.convert import flatten

    not_mirrored = {"train.dataset.source", "train.dataset.prompt_suffix"}  # the records' default: no dataset
    method = load_method()
    drift = []
    for section, cls in (("train", TrainSettings), ("curate", CurateSettings), ("sft", SftSettings),
                         ("eval", EvalSettings)):
        defaults = flatten(to_dict(cls()))
        for key, value in flatten(method.get(section) or {}).items():
            if f"{section}.{key}" not in not_mirrored and defaults.get(key, "<absent>") != value:
                drift.append(f"{section}.{key}: method {value!r}, record default {defaults.get(key, '<absent>')!r}")
    assert not drift, drift


def test_every_recipe_field_is_documented_in_docs_recipes():
    import dataclasses

    from scaling.records import StageResources, StudySettings
    from scaling.records import (ClusterProfile, CurateSettings, DatasetSpec, EvalSettings, ModelFacts, RewardSpec,
                                 SftSettings, TrainSettings)

    text = (ROOT / "docs" / "recipes.md").read_text()
    missing = [f"{cls.__name__}.{f.name}"
               for cls in (ModelFacts, TrainSettings, RewardSpec, DatasetSpec, CurateSettings, SftSettings,
                           EvalSettings, StageResources, StudySettings, ClusterProfile)
               for f in dataclasses.fields(cls) if f"`{f.name}`" not in text]
    assert not missing, f"document these fields in docs/recipes.md: {missing}"


QWEN3_CONFIGS = {"Qwen3-0.6B": "0_6b", "Qwen3-1.7B": "1_7b", "Qwen3-4B": "4b", "Qwen3-8B": "8b", "Qwen3-14B": "14b",
                 "Qwen3-32B": "32b", "Qwen3-30B-A3B": "30b_a3b", "Qwen3-4B-Instruct-2507": "4b_instruct_2507",
                 "Qwen3-4B-Thinking-2507": "4b_thinking_2507", "Qwen3-30B-A3B-Instruct-2507": "30b_a3b_instruct_2507",
                 "Qwen3-30B-A3B-Thinking-2507": "30b_a3b_thinking_2507"}


@pytest.fixture(scope="module")
def every_qwen3_size():
    keys = ",".join(QWEN3_CONFIGS.values())
    return load_study(LADDER, overrides=[f"study.sizes=[{keys}]"])


@pytest.mark.parametrize("name", list(QWEN3_CONFIGS))
def test_size_files_agree_with_the_config_json_fixtures(name, every_qwen3_size):
    import json

    from scaling.facts import facts_from_config

    path = ROOT / "tests" / "data" / "configs" / name / "config.json"
    if not path.is_file():
        pytest.skip(f"{path} not present (tests/data/configs is H7's fixture set)")
    key = QWEN3_CONFIGS[name]
    ref = facts_from_config(json.loads(path.read_text()), family="qwen3", size=key, label="", hf_id="")
    mine = every_qwen3_size.settings[key].model
    for field in ("model_type", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                  "intermediate_size", "vocab_size", "tie_embeddings", "qk_norm", "attention_bias", "max_position",
                  "num_experts", "experts_per_token", "moe_intermediate_size", "params_total", "params_active"):
        assert getattr(mine, field) == getattr(ref, field), (key, field)


@pytest.mark.parametrize("data", [
    {"train": {"learning_rate": 1e-6, "finetune": "lora", "reward": {"levels": {"short": 0.3}, "mask": ["incorrect"]}}},
    {"train": {"learning_rate": "5e-7", "max_steps": "10"}, "eval": {"budgets": [1024, 2048]}},
    {"model": {"label": 8, "hidden_size": 64}, "resources": {"train": {"nodes": 2}}},
])
def test_fast_path_builds_exactly_what_omegaconf_builds(data):
    from omegaconf import OmegaConf

    from scaling.records import SizeSettings
    from scaling.validate import structured as _structured

    slow = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SizeSettings), data))
    assert _structured(SizeSettings, data) == slow


@pytest.mark.parametrize("value", [-1, 3])
def test_profile_cpus_per_job_must_fit_the_node(tmp_path, value):
    prof = tmp_path / "cpu.yaml"
    prof.write_text(f"name: cpu\ngpus_per_node: 0\ncpus_per_node: 2\ncpus_per_job: {value}\n")
    with pytest.raises(RecipeError, match="cpus_per_job"):
        load_profile(str(prof))


# ------------------------------------------------ issue 14 item 4: file-system and data misuse
# Each case: a set-up in an empty folder, a command line ({tmp} = that folder), the expected part
# of the one-line error. Asserted like the bad-recipe corpus: exit 2, one line, no traceback,
# and nothing written (the folder holds exactly what the set-up put there).
TINY = str(ROOT / "recipes" / "tiny-ladder.yaml")


def _study(tmp: Path, name: str, manifest: str) -> None:
    (tmp / "runs" / name).mkdir(parents=True)
    (tmp / "runs" / name / "manifest.json").write_text(manifest)


def _synthetic(tmp: Path, bad_column: bool = False) -> None:
    from tests.synthetic import write_synthetic_study

    write_synthetic_study(tmp / "runs" / "syn", sizes={"0_6b": (0.6e9, 0.6e9), "1_7b": (1.7e9, 1.7e9)},
                          budgets=(2048, 8192), samples=2, problems=6, train_steps=4)
    if bad_column:
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = tmp / "runs" / "syn" / "0_6b" / "eval-base" / "math500" / "records.parquet"
        t = pq.read_table(p)
        i = t.schema.get_field_index("response_tokens")
        t = t.set_column(i, pa.field("response_tokens", pa.string()), pa.array(["lots"] * len(t)))
        pq.write_table(t, p)


CLI_CASES = {
    "runs_dir_is_a_file": (lambda t: (t / "afile").write_text("x"),
                           ["launch", TINY, "--sizes", "0_1m", "--runs-dir", "{tmp}/afile", "--executor", "debug"],
                           "afile/tiny-ladder: cannot create the directory: Not a directory (ENOTDIR)"),
    "plan_json_onto_a_directory": (lambda t: (t / "adir").mkdir(), ["plan", TINY, "--json", "{tmp}/adir"],
                                   "adir: is a directory; give a file name"),
    "plan_json_under_a_file": (lambda t: (t / "afile").write_text("x"), ["plan", TINY, "--json", "{tmp}/afile/p.json"],
                               "afile: cannot create the directory"),
    "plan_json_name_too_long": (lambda t: None, ["plan", TINY, "--json", "{tmp}/" + "p" * 300 + ".json"],
                                "ENAMETOOLONG"),
    "manifest_is_a_json_list": (lambda t: _study(t, "lst", "[1, 2]"), ["status", "lst", "--runs-dir", "{tmp}/runs"],
                                "manifest.json: not a scaling manifest (a JSON list, not an object)"),
    "manifest_without_runs": (lambda t: _study(t, "nor", '{"version": 1}'), ["resume", "nor", "--runs-dir", "{tmp}/runs"],
                              "not a scaling manifest (no 'runs' mapping)"),
    "manifest_run_is_a_list": (lambda t: _study(t, "bad", '{"version": 1, "study": "bad", "runs": {"a/b": []}}'),
                               ["cancel", "bad", "--runs-dir", "{tmp}/runs"], "runs.a/b is a list, not an object"),
    "manifest_not_json": (lambda t: _study(t, "nj", "{not json"), ["status", "nj", "--runs-dir", "{tmp}/runs"],
                          "unreadable manifest"),
    "plan_files_but_no_manifest": (lambda t: (_study(t, "half", "{}"), (t / "runs" / "half" / "manifest.json").unlink(),
                                              (t / "runs" / "half" / "plan.json").write_text("{}")),
                                   ["resume", "half", "--runs-dir", "{tmp}/runs"],
                                   "the launch stopped before submitting anything"),
    "report_predict_inf": (_synthetic, ["report", "syn", "--runs-dir", "{tmp}/runs", "--predict", "inf"],
                           "--predict inf:"),
    "report_out_under_a_file": (lambda t: (_synthetic(t), (t / "afile").write_text("x")),
                                ["report", "syn", "--runs-dir", "{tmp}/runs", "-o", "{tmp}/afile"],
                                "afile/figures: cannot create the directory"),
    "records_column_cannot_be_cast": (lambda t: _synthetic(t, bad_column=True),
                                      ["report", "syn", "--runs-dir", "{tmp}/runs"],
                                      "column 'response_tokens' is"),
    "study_name_300_characters": (lambda t: None, ["status", "a" * 300, "--runs-dir", "{tmp}/runs"],
                                  "at most 64 characters"),
    "recipe_is_a_directory": (lambda t: (t / "adir").mkdir(), ["check", "{tmp}/adir"], "recipe file not found"),
}


def _tree(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*")}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_file_system_and_data_misuse_is_one_line(case, tmp_path, capsys, monkeypatch):
    setup, argv, expect = CLI_CASES[case]
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    before = _tree(tmp_path)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]  # `report` logs its progress on stderr first
    err = lines[-1] if lines else ""
    assert code == 2, lines[-5:]
    assert errors == [err] and not any("Traceback" in ln for ln in lines), lines[-5:]
    assert expect in err, f"\nexpected: {expect}\ngot:      {err}"
    assert _tree(tmp_path) == before


def test_report_to_names_are_the_installed_transformers_loggers():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from scaling.validate import REPORT_TO

    assert set(REPORT_TO) == set(INTEGRATION_TO_CALLBACK) | {"none", "all"}


def test_a_negative_max_rows_is_refused_by_the_job_too():
    """eval.max_problems / dataset.max_rows -5 used to evaluate all but the last five rows."""
    from scaling.errors import JobError
    from scaling.jobs.data import load_problems
    from scaling.records import DatasetSpec

    with pytest.raises(JobError, match="max_rows: must be >= 1"):
        load_problems(DatasetSpec(source="task://arith?split=test&n=10", max_rows=-5))
    assert len(load_problems(DatasetSpec(source="task://arith?split=test&n=10", max_rows=3))) == 3


def test_recipe_caps_hold_at_the_limits(tmp_path):
    """Just under each cap is accepted, just over it refused (file size, nesting, node count)."""
    from scaling.yamlscan import MAX_RECIPE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

    head = ("include: [method/efficient_reasoning.yaml]\nstudy: {name: capped, family: qwen3, sizes: [0_6b]}\n"
            "eval: {benchmarks: [aime25]}\n")
    p = tmp_path / "r.yaml"
    p.write_text(head + "#" * (MAX_RECIPE_BYTES - len(head) - 1) + "\n")
    assert load_study(p).name == "capped"
    p.write_text(head + "#" * (MAX_RECIPE_BYTES - len(head)) + "\n")
    with pytest.raises(RecipeError, match="larger than 1024 KiB"):
        load_study(p)
    deep = "[" * (MAX_YAML_DEPTH - 4) + "1" + "]" * (MAX_YAML_DEPTH - 4)
    p.write_text(head.replace("[aime25]}", f"[aime25], x: {deep}}}"))
    with pytest.raises(RecipeError, match="unknown key"):  # parsed (depth fine), then an ordinary error
        load_study(p)
    p.write_text(head.replace("[aime25]}", "[aime25], x: " + "[" * MAX_YAML_DEPTH + "1" + "]" * MAX_YAML_DEPTH + "}"))
    with pytest.raises(RecipeError, match="nested deeper than"):
        load_study(p)
    p.write_text(head + "study: {description: '" + " ".join(["w"] * 10) + "'}\n")
    with pytest.raises(RecipeError, match="duplicate key 'study'"):
        load_study(p)
    p.write_text(head + "sizes:\n" + "".join(f"  s{i}: {{}}\n" for i in range(MAX_YAML_NODES // 2 + 1)))
    with pytest.raises(RecipeError, match="more than 10,000 YAML values"):
        load_study(p)
