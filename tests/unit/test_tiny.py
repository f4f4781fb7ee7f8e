"""scaling.jobs.tiny and scaling.jobs.models: tiny tokenizer, tiny models, model resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling.errors import JobError, RecipeError
from scaling.jobs.models import resolve_model, tiny_cache_dir
from scaling.jobs.tiny import SPECIAL_TOKENS, THINK_TOKENS, TINY_SIZES, TINY_VOCAB, tiny_facts
from scaling.records import RunSpec, Stage


def test_tokenizer_has_qwen_special_tokens_and_single_digit_numbers(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert len(tok) == TINY_VOCAB
    for special in SPECIAL_TOKENS + THINK_TOKENS:
        ids = tok(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, special
    # as in Qwen3, the thinking markers survive skip_special_tokens (TRL decodes that way)
    ids = tok("<think>\nx\n</think>\n\nA<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>\n\nA"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    pieces = tok.convert_ids_to_tokens(tok("x 12345", add_special_tokens=False)["input_ids"])
    assert [p.lstrip("Ġ") for p in pieces[1:]] == ["1", "2", "3", "4", "5"]


def test_tokenizer_round_trips_task_text_exactly(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from scaling.task import generate

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    for row in generate("train", 20):
        text = row["problem"] + "\n" + row["completion"] + " \\boxed{12}  ünï"
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template_follows_qwen3_enable_thinking(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    msgs = [{"role": "user", "content": "Ann has 3 pens."}]
    on = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    off = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert on == "<|im_start|>user\nAnn has 3 pens.<|im_end|>\n<|im_start|>assistant\n"
    assert off == on + "<think>\n\n</think>\n\n"
    no_prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    assert not no_prompt.endswith("assistant\n")
    full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": "<think>\nx\n</think>\n\nA"}], tokenize=False)
    assert full.endswith("<|im_start|>assistant\n<think>\nx\n</think>\n\nA<|im_end|>\n")


def test_tokenizer_build_is_deterministic(tmp_path):
    from scaling.jobs.tiny import build_tokenizer

    assert build_tokenizer().get_vocab() == build_tokenizer(tmp_path).get_vocab()
    assert (tmp_path / "tokenizer.json").is_file()


def test_tiny_facts_ladder_grows_and_unknown_size_lists_known():
    dense = [tiny_facts(s) for s in TINY_SIZES if tiny_facts(s).num_experts == 0]
    widths = [f.hidden_size * f.num_layers for f in dense]
    assert widths == sorted(widths) and len(dense) >= 4
    assert any(tiny_facts(s).model_type == "qwen3_moe" for s in TINY_SIZES)
    with pytest.raises(RecipeError, match="known: 0_1m"):
        tiny_facts("7b")


def test_dense_model_loads_back_and_generates_with_eos_im_end(tiny_qwen3_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    tok = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    enc = tok(["Ann has 3 pens."], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] <= enc["input_ids"].shape[1] + 4


def test_moe_model_is_qwen3_moe_with_fewer_active_than_total_params(tiny_moe_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_moe_dir)
    assert type(model).__name__ == "Qwen3MoeForCausalLM"
    facts = tiny_facts("1_3m_a0_4m")
    assert model.config.num_experts == facts.num_experts
    assert model.config.num_experts_per_tok == facts.experts_per_token < facts.num_experts


def test_same_seed_same_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    from scaling.jobs.tiny import build_model

    a = build_model(tiny_facts("0_1m"), tmp_path / "a", seed=3)
    b = build_model(tiny_facts("0_1m"), tmp_path / "b", seed=3)
    c = build_model(tiny_facts("0_1m"), tmp_path / "c", seed=4)
    wa, wb, wc = (load_file(str(Path(p) / "model.safetensors")) for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def _run(**kw) -> RunSpec:
    base = dict(study="s", run_id="0_1m/train", size="0_1m", stage=Stage.train, model=tiny_facts("0_1m"),
                model_source="tiny://0_1m")
    base.update(kw)
    return RunSpec(**base)


def test_resolve_model_builds_tiny_once_into_the_study_cache(tmp_path):
    path = resolve_model(_run(), tmp_path)
    assert Path(path) == tiny_cache_dir(tmp_path, "0_1m")
    assert json.loads((Path(path) / "config.json").read_text())["model_type"] == "qwen3"
    mtime = (Path(path) / "config.json").stat().st_mtime_ns
    assert resolve_model(_run(run_id="0_1m/eval-base", seed=9), tmp_path) == path
    assert (Path(path) / "config.json").stat().st_mtime_ns == mtime  # cached, not rebuilt
    assert not [p for p in (tmp_path / ".models").iterdir() if p.name.endswith(".tmp")]


def test_resolve_model_init_from_points_at_the_earlier_runs_model(tmp_path):
    model_dir = tmp_path / "0_1m" / "sft" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    assert resolve_model(_run(init_from="0_1m/sft"), tmp_path) == str(model_dir)
    with pytest.raises(JobError, match="0_1m/train.*resume"):
        resolve_model(_run(init_from="0_1m/curate"), tmp_path)


def test_resolve_model_hub_id_offline_missing_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(JobError, match="not in the local Hugging Face cache"):
        resolve_model(_run(model_source="Qwen/Qwen3-0.6B"), tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_model(_run(model_source="Qwen/Qwen3-0.6B"), tmp_path) == "Qwen/Qwen3-0.6B"
    local = tmp_path / "local_model"
    local.mkdir()
    assert resolve_model(_run(model_source=str(local)), tmp_path) == str(local)


def test_family_recipe_files_carry_the_same_facts_as_tiny_facts(repo_root):
    import yaml

    fam_dir = repo_root / "recipes" / "families" / "tiny"
    family = yaml.safe_load((fam_dir / "family.yaml").read_text())["model"]
    sizes = sorted(p.stem for p in fam_dir.glob("*.yaml") if p.stem != "family")
    assert sizes == sorted(TINY_SIZES)
    for size in sizes:
        facts = {**family, **yaml.safe_load((fam_dir / f"{size}.yaml").read_text())["model"]}
        expected = tiny_facts(size)
        for key, value in facts.items():
            if key == "intermediate_size" and expected.num_experts:
                continue  # unused by an all-MoE model
            assert getattr(expected, key) == value, (size, key)
