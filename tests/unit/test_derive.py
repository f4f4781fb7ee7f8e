"""`scaling recipe derive`: config.json files -> a family recipe (scaling/derive.py).

The central check: deriving the seven Qwen3 ladder configs gives a family whose plan equals
the shipped Qwen3 plan (recipes/qwen3-ladder.yaml with its family swapped for the derived one).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from scaling.cli import main
from scaling.derive import derive_command, hub_id, model_name, write_family
from scaling.sizes import size_key_and_label
from scaling.errors import RecipeError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "tests" / "data" / "configs"
LADDER = ["Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B", "Qwen3-30B-A3B"]
VARIANTS_2507 = ["Qwen3-4B-Instruct-2507", "Qwen3-4B-Thinking-2507", "Qwen3-30B-A3B-Instruct-2507",
                 "Qwen3-30B-A3B-Thinking-2507"]
OTHERS = ["Meta-Llama-3-8B", "Mistral-7B-v0.1", "Mixtral-8x7B-v0.1", "OLMoE-1B-7B-0924", "gemma-2-2b",
          "DeepSeek-V2-Lite", "Phi-3-mini-4k-instruct"]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A local Hugging Face cache holding the Qwen3 fixtures under their hub ids, offline."""
    import huggingface_hub.constants as c

    cache = tmp_path / "hub"
    sha = "0" * 40
    for name in LADDER + VARIANTS_2507:
        root = cache / f"models--Qwen--{name}"
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(sha)
        shutil.copytree(CONFIGS / name, root / "snapshots" / sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return cache


def _strip(obj):
    """A plan as plain data without provenance/sources (which name the files, not the values)."""
    from scaling.records import to_dict

    data = to_dict(obj)

    def drop(d):
        if isinstance(d, dict):
            return {k: drop(v) for k, v in d.items() if k not in ("provenance", "sources")}
        if isinstance(d, list):
            return [drop(v) for v in d]
        return d

    return drop(data)


def _study_with_family(tmp_path: Path, family: str, recipe: str = "qwen3-ladder.yaml") -> Path:
    """A shipped study recipe with study.family swapped (families/<family>/ beside it)."""
    data = yaml.safe_load((ROOT / "recipes" / recipe).read_text())
    data["study"]["family"] = family
    path = tmp_path / f"derived-{recipe}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_derived_qwen3_family_reproduces_the_shipped_ladder_plan(tmp_path, hub_cache, capsys):
    from scaling.plan import make_plan
    from scaling.recipe import load_study

    out = tmp_path / "families" / "qwen3d"
    models = [arg for m in LADDER for arg in ("--model", f"Qwen/{m}")]
    code = main(["recipe", "derive", "--family", "qwen3d", "-o", str(out), *models])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["family.yaml", "0_6b.yaml", "1_7b.yaml", "4b.yaml", "8b.yaml", "14b.yaml", "32b.yaml", "30b_a3b.yaml"])
    shipped = make_plan(load_study(ROOT / "recipes" / "qwen3-ladder.yaml"))
    derived = make_plan(load_study(_study_with_family(tmp_path, "qwen3d")))
    a, b = _strip(shipped), _strip(derived)
    for run in b["runs"]:
        run["model"]["family"] = "qwen3"  # the only intended difference: the family's name
    assert len(a["runs"]) == len(b["runs"]) > 0
    for ra, rb in zip(a["runs"], b["runs"]):
        assert ra == rb, ra["run_id"]
    assert a == b


def test_derived_qwen3_family_with_the_2507_variants_reproduces_the_art_paper_plan(tmp_path, hub_cache, capsys):
    """The 2507 variants' thinking mode and sampling come from their tokenizer/generation configs."""
    from scaling.plan import make_plan
    from scaling.recipe import load_study

    models = ["Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-8B"] + VARIANTS_2507
    out = tmp_path / "families" / "qwen3d"
    assert derive_command("qwen3d", [f"Qwen/{m}" for m in models], None, str(out)) == 0
    shipped = _strip(make_plan(load_study(ROOT / "recipes" / "art-paper.yaml")))
    derived = _strip(make_plan(load_study(_study_with_family(tmp_path, "qwen3d", "art-paper.yaml"))))
    for run in derived["runs"]:
        run["model"]["family"] = "qwen3"
    for ra, rb in zip(shipped["runs"], derived["runs"], strict=True):
        assert ra == rb, ra["run_id"]
    assert shipped == derived


@pytest.mark.parametrize("name", OTHERS)
def test_other_families_derive_into_recipes_the_planner_accepts(tmp_path, name, capsys):
    from scaling.plan import make_plan
    from scaling.recipe import load_study

    out = tmp_path / "families" / "newfam"
    assert main(["recipe", "derive", "--family", "newfam", "--model", str(CONFIGS / name), "-o", str(out)]) == 0
    sizes = [p.stem for p in out.glob("*.yaml") if p.stem != "family"]
    assert len(sizes) == 1
    data = yaml.safe_load((ROOT / "recipes" / "qwen3-ladder.yaml").read_text())
    data["study"].update(family="newfam", sizes=sizes, name="newfam-study")
    data.pop("sizes", None)  # the Qwen3-specific per-size block
    data["eval"].pop("budgets")  # the method's budgets, cut by the derived size file to the model's context
    recipe = tmp_path / "newfam.yaml"
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = make_plan(load_study(recipe))
    train = plan.run(f"{sizes[0]}/train")
    assert train.model.hf_id == str(CONFIGS / name)
    assert train.train.learning_rate and train.resources.gpus_per_node > 0
    assert max(plan.run(f"{sizes[0]}/eval-base").eval.budgets) <= train.model.max_position
    assert main(["plan", str(recipe)]) == 0


def test_derived_files_record_facts_thinking_and_the_rule_settings(tmp_path, hub_cache, capsys):
    out = tmp_path / "fam"
    models = ["Qwen/Qwen3-8B", "Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Thinking-2507"]
    assert derive_command("qwen3x", models, None, str(out)) == 0
    fam = yaml.safe_load((out / "family.yaml").read_text())
    assert fam["model"]["vocab_size"] == 151936 and fam["model"]["family"] == "qwen3x"
    size = yaml.safe_load((out / "8b.yaml").read_text())
    assert size["include"] == "family.yaml"
    expected = {"size": "8b", "label": "8B", "hf_id": "Qwen/Qwen3-8B", "hidden_size": 4096}
    assert {k: size["model"][k] for k in expected} == expected
    instruct = yaml.safe_load((out / "4b_instruct_2507.yaml").read_text())
    assert instruct["model"]["thinking"] == "none"
    assert instruct["train"]["enable_thinking"] is False and instruct["eval"]["enable_thinking"] is False
    assert instruct["eval"]["temperature"] == 0.7  # generation_config.json
    thinking = yaml.safe_load((out / "4b_thinking_2507.yaml").read_text())
    assert thinking["model"]["thinking"] == "always"
    text = (out / "8b.yaml").read_text()
    assert "# What scaling/rules.py derives" in text and "learning_rate" in text
    printed = capsys.readouterr().out
    assert "8.19B total" in printed and "4b_instruct_2507" in printed


def test_a_family_without_thinking_notes_that_budgets_apply_to_the_whole_response(tmp_path, capsys):
    out = tmp_path / "llama3"
    assert derive_command("llama3", [str(CONFIGS / "Meta-Llama-3-8B")], None, str(out)) == 0
    text = (out / "family.yaml").read_text()
    assert "budgets apply to the whole response" in text
    fam = yaml.safe_load(text)
    assert fam["model"]["thinking"] == "none"
    assert fam["train"]["enable_thinking"] is False and fam["eval"]["enable_thinking"] is False
    size = yaml.safe_load((out / "8b.yaml").read_text())
    assert size["eval"]["budgets"] == [2048, 4096, 8192]  # Llama 3 has an 8k context
    assert "no chat template found" in (out / "8b.yaml").read_text()  # the base model ships none


def test_a_size_the_profile_cannot_train_is_still_written_with_the_reason(tmp_path, capsys):
    out = tmp_path / "q"
    assert derive_command("q", [str(CONFIGS / "Qwen3-32B")], "small_4x24gb", str(out)) == 0
    text = (out / "32b.yaml").read_text()
    assert "# The rules cannot plan this size on profile small_4x24gb" in text
    assert "\n#   32b: training does not fit" in text  # the rules' own one-line reason follows
    assert "warning: not plannable on small_4x24gb" in capsys.readouterr().out


def test_refuses_to_overwrite_an_existing_directory_without_force(tmp_path, capsys):
    out = tmp_path / "fam"
    args = ["recipe", "derive", "--family", "fam", "--model", str(CONFIGS / "Mistral-7B-v0.1"), "-o", str(out)]
    assert main(args) == 0
    (out / "stale.yaml").write_text("model: {}\n")
    assert main(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert not (out / "stale.yaml").exists() and (out / "7b_v0_1.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


BAD = ["bad-t5-encoder-decoder", "bad-unknown-architecture", "bad-heads-not-dividing", "bad-kv-heads-not-dividing",
       "bad-experts-per-token", "bad-missing-key"]


@pytest.mark.parametrize("name", BAD)
def test_unknown_or_inconsistent_configs_exit_2_with_one_line(tmp_path, name, capsys):
    out = tmp_path / "fam"
    assert main(["recipe", "derive", "--family", "fam", "--model", str(CONFIGS / name), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "config.json" in err
    assert not out.exists()


def test_refuses_bad_family_names_duplicate_sizes_and_missing_models(tmp_path, capsys):
    m = str(CONFIGS / "Qwen3-8B")
    assert main(["recipe", "derive", "--family", "Bad Name", "--model", m, "-o", str(tmp_path / "a")]) == 2
    assert "family name" in capsys.readouterr().err
    assert main(["recipe", "derive", "--family", "q", "--model", m, "--model", m, "-o", str(tmp_path / "b")]) == 2
    assert "both map to size key '8b'" in capsys.readouterr().err
    missing = str(tmp_path / "nope")
    assert main(["recipe", "derive", "--family", "q", "--model", missing, "-o", str(tmp_path / "c")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_size_keys_and_labels_come_from_the_name_else_the_count():
    assert size_key_and_label("Qwen3-0.6B", 596_000_000, 596_000_000, False) == ("0_6b", "0.6B")
    assert size_key_and_label("Qwen3-30B-A3B-Thinking-2507", 30_500_000_000, 3_300_000_000, True) == (
        "30b_a3b_thinking_2507", "30B-A3B-Thinking-2507")
    assert size_key_and_label("Mixtral-8x7B-v0.1", 46_700_000_000, 12_900_000_000, True) == ("8x7b_v0_1", "8x7B-v0.1")
    assert size_key_and_label("gemma-2-2b", 2_614_000_000, 2_614_000_000, False) == ("2b", "2B")
    assert size_key_and_label("DeepSeek-V2-Lite", 15_706_000_000, 2_661_000_000, True) == ("16b_a2_7b", "16B-A2.7B")
    assert size_key_and_label("Phi-3-mini-4k-instruct", 3_821_000_000, 3_821_000_000, False) == ("3_8b", "3.8B")


def test_model_names_and_hub_ids_of_cache_snapshots():
    snap = "/home/u/.cache/huggingface/hub/models--Qwen--Qwen3-8B/snapshots/abc123"
    assert model_name(snap) == "Qwen3-8B" and hub_id(snap) == "Qwen/Qwen3-8B"
    assert model_name("Qwen/Qwen3-8B") == "Qwen3-8B" and hub_id("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    assert model_name("/models/my-llama/config.json") == "my-llama"


def test_write_family_is_atomic_when_a_write_fails(tmp_path, monkeypatch):
    from scaling import durable

    out = tmp_path / "fam"
    real = durable.atomic_write_text
    calls = []

    def flaky(path, text):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(path, text)

    monkeypatch.setattr(durable, "atomic_write_text", flaky)
    with pytest.raises(OSError):
        write_family({"family.yaml": "model: {}\n", "8b.yaml": "include: family.yaml\n"}, out)
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(RecipeError, match="not a directory"):
        (tmp_path / "file").write_text("x")
        write_family({"family.yaml": ""}, tmp_path / "file")


PIN_LINE = re.compile(r"^#   (?!\()(\S.*?)\s+# ")  # "#   key: value    # rule:..." (not the "(move under" note)


def _pins(text: str) -> list[tuple[str, int, int | None]]:
    """(section, line index of the pin, line index of its commented section header or None when
    the section exists uncommented above) for every commented pin line of a derived size file."""
    lines = text.splitlines()
    out, section, header = [], None, None
    for i, ln in enumerate(lines):
        m = re.match(r"^# (train|curate|resources):$", ln)
        n = re.match(r"^#   \(move under the (train|curate|resources): section above\)$", ln)
        if m or n:
            section, header = (m or n).group(1), (i if m else None)
        elif section and PIN_LINE.match(ln):
            out.append((section, i, header))
        elif not ln.startswith("#   "):
            section = None
    return out


@pytest.mark.parametrize("models", [["Qwen/Qwen3-8B"], ["Qwen/Qwen3-4B-Instruct-2507"], ["Qwen/Qwen3-30B-A3B"]])
def test_every_pin_comment_is_valid_yaml_once_uncommented(tmp_path, hub_cache, capsys, models):
    """docs/new-family.md: "uncomment it together with its section line". Each commented value,
    uncommented that way (or moved under the section the file already has), loads as a recipe and
    pins exactly that value, with the size file as its source."""
    from scaling.recipe import load_study

    fam_dir = tmp_path / "families" / "pins"
    assert derive_command("pins", models, None, str(fam_dir)) == 0
    size_file = next(p for p in fam_dir.glob("*.yaml") if p.stem != "family")
    text = size_file.read_text()
    pins = _pins(text)
    sections = {s for s, _, _ in pins}
    assert {"train", "curate", "resources"} <= sections, text
    assert any("reward: {target_length:" in text.splitlines()[i] for _, i, _ in pins), text
    study = tmp_path / "pins-study.yaml"
    study.write_text(yaml.safe_dump({"include": ["method/efficient_reasoning.yaml"],
                                     "study": {"name": "pins", "family": "pins", "sizes": [size_file.stem]},
                                     "eval": {"benchmarks": ["math500"], "budgets": [2048, 4096]}}))
    checked = 0
    for section, i, header in pins:
        lines = text.splitlines()
        pin = lines[i][len("#   "):].split("  #")[0].strip()
        if header is None:  # the section is in the file: the line goes under it
            at = lines.index(f"{section}:")
            lines.insert(at + 1, "  " + pin)
        else:
            lines[header] = f"{section}:"
            lines[i] = "  " + pin
        size_file.write_text("\n".join(lines) + "\n")
        value = yaml.safe_load(f"{section}:\n  {pin}\n")[section]
        st = load_study(study)
        prov = st.size_provenance(size_file.stem)
        resolved = st.config["sizes"][size_file.stem]
        key, leaf, got = section, value, resolved[section]
        while isinstance(leaf, dict) and len(leaf) == 1:
            (k, leaf), = leaf.items()
            key, got = f"{key}.{k}", got[k]
        if isinstance(leaf, dict):  # resources.<stage>: {...}: every field pinned
            assert {k: got[k] for k in leaf} == leaf, pin
            key = f"{key}.{next(iter(leaf))}"
        else:
            assert got == leaf, (pin, got)
        assert prov.get(key, "").endswith(f"{size_file.name}"), (pin, key, prov.get(key))
        checked += 1
        size_file.write_text(text)
    assert checked == len(pins) >= 10
