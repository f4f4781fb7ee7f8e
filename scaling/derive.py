"""Derive a family recipe for a new model family from its ``config.json`` files.

What it does
    ``scaling recipe derive --family NAME --model ID_OR_PATH [--model ...] [--profile P] [-o DIR] [--force]``
    reads each model's ``config.json`` (a directory, the local Hugging Face cache, or the hub),
    recognises the architecture (``facts.facts_from_config``: dense or MoE, GQA or MLA, tied
    embeddings, shared experts, leading dense layers), reads the chat-template facts
    (``tokenizer_config.json``: a thinking block or not) and the recommended sampling
    (``generation_config.json``), and writes a family directory in the format of
    ``recipes/families/qwen3/``: ``family.yaml`` (facts every size shares) and one
    ``<size>.yaml`` per model (``include: family.yaml`` + what differs).

Where the per-size settings come from
    The size files hold the *facts* the rules read. The per-size settings (learning rate,
    rollout limit, group size, LoRA or full fine-tuning, ZeRO stage, GPUs, nodes, tensor
    parallel size, time limits) are computed by ``scaling.rules.derive_size_settings`` -- the
    same function the planner calls at plan time. derive prints them for the chosen profile
    and records them in each size file as comments, so a reader sees what the guidelines imply;
    the planner recomputes them, so planning on another cluster profile stays right. To pin a
    value, uncomment it (it then overrides the rule, with the file as its provenance).

Size keys and labels
    From the model name when it states a size (``Qwen3-30B-A3B`` -> key ``30b_a3b``, label
    ``30B-A3B``; ``Qwen3-4B-Instruct-2507`` -> ``4b_instruct_2507``): the name is what users
    type and what the hub calls it. A name without a size token (``DeepSeek-V2-Lite``) gets one
    from the parameter count (``16B-A2.7B`` -> ``16b_a2_7b``).

Writing
    The directory is written atomically (a temporary sibling renamed into place). An existing
    directory is never overwritten unless ``--force`` is given (then it is replaced whole, so
    no stale size file survives).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import durable
from .errors import PlanError, RecipeError
from .facts import (
    facts_from_config,
    load_config,
    load_generation_config,
    load_tokenizer_config,
    thinking_facts,
)
from .paramcount import count_params
from .recipe import load_study
from .records import DerivedSettings, ModelFacts, to_dict
from .rules import derive_size_settings
from .sizes import size_key_and_label

# facts every size of a family usually shares: written once in family.yaml (most common value),
# overridden in a size file where a model differs. Comments name the config.json key.
FAMILY_FIELDS = {
    "model_type": "config.json model_type",
    "vocab_size": "config.json vocab_size",
    "head_dim": "config.json head_dim (or hidden_size / num_attention_heads)",
    "num_kv_heads": "config.json num_key_value_heads",
    "qk_norm": "RMSNorm on q and k (known for this model_type)",
    "attention_bias": "config.json attention_bias (q/k/v biases)",
    "tie_embeddings": "config.json tie_word_embeddings",
    "max_position": "config.json max_position_embeddings",
    "thinking": "tokenizer_config.json chat template: hybrid (enable_thinking) | always | none",
    "think_start": "thinking block opener (added token)",
    "think_end": "thinking block closer; the answer is graded on the text after it",
}
MLA_COMMENTS = {"num_kv_heads": "0 = MLA attention: the KV cache holds the compressed latent, not heads",
                "head_dim": "MLA: qk_nope_head_dim + qk_rope_head_dim"}
SIZE_FIELDS = {
    "hidden_size": "config.json hidden_size",
    "num_layers": "config.json num_hidden_layers",
    "num_heads": "config.json num_attention_heads",
    "intermediate_size": "config.json intermediate_size",
    "num_experts": "config.json num_experts / num_local_experts / n_routed_experts",
    "experts_per_token": "config.json num_experts_per_tok",
    "moe_intermediate_size": "config.json moe_intermediate_size (expert MLP width)",
    "shared_experts": "config.json n_shared_experts / shared expert",
    "shared_intermediate_size": "config.json shared_expert_intermediate_size",
    "dense_layers": "config.json first_k_dense_replace / mlp_only_layers (leading dense layers)",
    "moe_every": "config.json decoder_sparse_step / moe_layer_freq",
    "kv_lora_rank": "config.json kv_lora_rank (MLA latent width)",
    "q_lora_rank": "config.json q_lora_rank",
    "qk_rope_head_dim": "config.json qk_rope_head_dim",
    "qk_nope_head_dim": "config.json qk_nope_head_dim",
    "v_head_dim": "config.json v_head_dim",
}
NO_TEMPLATE_NOTE = ("# Note: no chat template found (tokenizer_config.json missing or without one: a base model?); "
                    "the jobs build prompts with the chat template, so use an instruct/chat checkpoint or add one.")
PROBE_BENCHMARK = "math500"  # the evaluation layout shown in the comments is for one MATH-500 array task
SAMPLING_KEYS = ("temperature", "top_p", "top_k")  # generation_config.json -> eval.*
_DEFAULTS = ModelFacts()


@dataclass(frozen=True, kw_only=True)
class DerivedSize:
    """One model of a derived family: its facts and what the recipe files say about it."""

    source: str  # what the user passed to --model
    facts: ModelFacts
    sampling: dict[str, Any]  # eval.temperature/top_p/top_k from generation_config.json
    settings: DerivedSettings | None = None  # rules.derive_size_settings output (for display/comments)
    error: str = ""  # why the rules cannot plan this size on the profile (then settings is None)
    budgets: list[int] | None = None  # eval.budgets cut to the model's context (None: the method's fit)
    chat_template: bool = True  # tokenizer_config.json has a chat template (base models often do not)


# ---------------------------------------------------------------------------- naming
def model_name(id_or_path: str) -> str:
    """The model's name: the hub repo name, or the directory name (HF cache snapshots map back
    to their repo: .../models--owner--name/snapshots/<sha> -> name)."""
    p = Path(id_or_path)
    if p.name == "config.json":
        p = p.parent
    for part in reversed(p.parts):
        if part.startswith("models--"):
            return part.split("--")[-1]
    return p.name


def hub_id(id_or_path: str) -> str:
    """The hf_id recorded in the facts: the hub id when known, else the absolute local path (jobs
    run from other directories)."""
    p = Path(id_or_path)
    for part in reversed(p.parts):
        if part.startswith("models--") and part.count("--") >= 2:
            return "/".join(part.split("--")[1:3])
    if p.exists():
        return str((p.parent if p.name == "config.json" else p).resolve())
    return str(id_or_path)


# --------------------------------------------------------------------------- deriving
def derive_size(family: str, id_or_path: str) -> tuple[ModelFacts, dict[str, Any], bool]:
    """Facts, recommended sampling and whether a chat template exists, of one model (no rules)."""
    config = load_config(id_or_path)
    name = model_name(id_or_path)
    probe = facts_from_config(config, family=family, size="probe", label=name, hf_id=hub_id(id_or_path),
                              source=f"{id_or_path}/config.json")
    count = count_params(probe)
    key, label = size_key_and_label(name, count.total, count.active, probe.num_experts > 0)
    tokenizer_config = load_tokenizer_config(id_or_path)
    think = thinking_facts(tokenizer_config)
    facts = dataclasses.replace(probe, size=key, label=label, **think)
    gen = load_generation_config(id_or_path) or {}
    sampling = {k: gen[k] for k in SAMPLING_KEYS
                if isinstance(gen.get(k), (int, float)) and not isinstance(gen.get(k), bool)}
    return facts, sampling, bool((tokenizer_config or {}).get("chat_template"))


def _check_family_name(family: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", family):
        raise RecipeError(f"family name {family!r} must be lowercase letters, digits and _ (it is a "
                          "directory and recipe key), e.g. llama3", key="--family")


def derive_family(family: str, models: list[str]) -> list[DerivedSize]:
    """Derive the facts of every model of a family (no rules yet); refuse duplicate size keys."""
    _check_family_name(family)
    if not models:
        raise RecipeError("give at least one --model ID_OR_PATH", key="--model")
    out: list[DerivedSize] = []
    seen: dict[str, str] = {}
    for source in models:
        facts, sampling, has_template = derive_size(family, source)
        if facts.size in seen:
            raise RecipeError(f"{source} and {seen[facts.size]} both map to size key {facts.size!r}; "
                              "derive them into separate families", key="--model")
        seen[facts.size] = source
        out.append(DerivedSize(source=source, facts=facts, sampling=sampling, chat_template=has_template))
    return out


def rule_settings(
    family: str, sizes: list[DerivedSize], files: dict[str, str], profile: str | None
) -> tuple[list[DerivedSize], str]:
    """Apply the planner's rules to the derived family exactly as a study would.

    Writes the family to a scratch ``families/<family>/`` beside a one-line study that includes
    the method (``method/efficient_reasoning.yaml``), lists every size and evaluates on
    ``PROBE_BENCHMARK`` (the evaluation layout depends on the study's benchmarks), loads it with
    ``recipe.load_study`` (so the derived files pass the same validation as any recipe), and
    calls ``rules.derive_size_settings`` with each size's resolved settings: the planner's own
    code path, no second copy. Returns the sizes with ``settings`` filled and the profile name.
    """
    with tempfile.TemporaryDirectory(prefix="scaling-derive-") as scratch:
        root = Path(scratch)
        for name, text in files.items():
            durable.atomic_write_text(root / "families" / family / name, text)
        study = {"include": ["method/efficient_reasoning.yaml"],
                 "study": {"name": f"derive-{family}".replace("_", "-"), "family": family,
                           "sizes": [s.facts.size for s in sizes]},
                 "eval": {"benchmarks": [PROBE_BENCHMARK]}}
        recipe = root / "derive.yaml"
        durable.atomic_write_text(recipe, yaml.safe_dump(study, sort_keys=False))
        loaded = load_study(recipe, profile=profile)
        out = []
        for s in sizes:
            settings = loaded.settings[s.facts.size]
            derived, error = None, ""
            try:
                derived = derive_size_settings(settings.model, loaded.profile, settings)
            except PlanError as err:  # e.g. too large for the profile: the facts still hold
                error = str(err)
            fits = [b for b in settings.eval.budgets if b <= settings.model.max_position]
            budgets = fits if fits != list(settings.eval.budgets) and fits else None
            out.append(dataclasses.replace(s, facts=settings.model, settings=derived, error=error, budgets=budgets))
        return out, loaded.profile.name


# ---------------------------------------------------------------------------- writing
def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float) and "e" in repr(v) and "." not in repr(v).split("e")[0]:
        return repr(v).replace("e", ".0e", 1)  # YAML 1.1 (PyYAML) reads 1e-06 as a string, 1.0e-06 as a float
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    s = str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pin(key: str, value: Any) -> str:
    """A dotted leaf as one YAML line that means the same once uncommented under its section:
    ``reward.target_length`` -> ``reward: {target_length: 5120}``."""
    *parents, leaf = key.split(".")
    text = f"{leaf}: {_scalar(value)}"
    for p in reversed(parents):
        text = f"{p}: {{{text}}}"
    return text


def _line(key: str, value: Any, comment: str = "", indent: int = 2) -> str:
    text = " " * indent + f"{key}: {_scalar(value)}"
    return f"{text:<38} # {comment}" if comment else text


def _common(values: list[Any]) -> Any:
    """The most common value (first seen wins ties)."""
    best, count = values[0], 0
    for v in values:
        c = values.count(v)
        if c > count:
            best, count = v, c
    return best


def render_family(family: str, sizes: list[DerivedSize], profile_name: str, command: str) -> dict[str, str]:
    """File name -> YAML text of the derived family directory."""
    fam: dict[str, Any] = {k: _common([getattr(s.facts, k) for s in sizes]) for k in FAMILY_FIELDS}
    samp_sets = [tuple(sorted(s.sampling.items())) for s in sizes]
    fam_sampling = dict(_common(samp_sets)) if samp_sets else {}
    thinking_none = fam["thinking"] == "none"
    lines = [
        f"# {family} family facts shared by every size, derived from config.json files by",
        f"#   {command}",
        "# A size file includes this file and adds its architecture and what differs.",
        "# Facts only: the per-size settings come from scaling/rules.py at plan time (docs/new-family.md).",
        f"#   scaling plan <study>.yaml --explain {sizes[0].facts.size}",
        "model:",
        _line("family", family),
    ]
    mla = MLA_COMMENTS if all(s.facts.kv_lora_rank for s in sizes) else {}
    lines += [_line(k, fam[k], mla.get(k, FAMILY_FIELDS[k])) for k in FAMILY_FIELDS]
    lines += _mode_lines(fam["thinking"], fam_sampling)
    if thinking_none:
        lines.insert(4, "# No thinking block in the chat template: token budgets apply to the whole response.")
    files = {"family.yaml": "\n".join(lines) + "\n"}
    for s in sizes:
        files[f"{s.facts.size}.yaml"] = _render_size(s, fam, fam_sampling, profile_name)
    return files


def _mode_lines(
    thinking: str, sampling: dict[str, Any], *, base: tuple[str, dict[str, Any]] | None = None
) -> list[str]:
    """train/eval blocks for the thinking switch and the recommended sampling (only what differs
    from ``base``, the family's values)."""
    base_thinking, base_sampling = base if base else ("hybrid", {})
    out: list[str] = []
    train, evals = [], []
    if thinking != base_thinking and (thinking == "none" or base_thinking == "none"):
        on = thinking != "none"
        why = "chat template has a thinking block" if on else "no thinking block in the chat template"
        train.append(_line("enable_thinking", on, why))
        evals.append(_line("enable_thinking", on, why))
    for k, v in sampling.items():
        if base_sampling.get(k) != v:
            evals.append(_line(k, v, "generation_config.json (the model's recommended sampling)"))
    if train:
        out += ["train:"] + train
    if evals:
        out += ["eval:"] + evals
    return out


def _render_size(s: DerivedSize, fam: dict[str, Any], fam_sampling: dict[str, Any], profile_name: str) -> str:
    f = s.facts
    count = count_params(f)
    kind = (f"MoE: {f.num_experts} experts, {f.experts_per_token} per token" if f.num_experts else "dense")
    lines = [
        f"# {model_name(s.source)} ({kind}; {count.total / 1e9:.2f}B total, {count.active / 1e9:.2f}B active, "
        f"{count.non_embedding / 1e9:.2f}B non-embedding; thinking: {f.thinking}).",
        f"# Facts from {s.source} config.json (scaling recipe derive).",
        *([] if s.chat_template else [NO_TEMPLATE_NOTE]),
        "include: family.yaml",
        "model:",
        _line("size", f.size),
        _line("label", f.label),
        _line("hf_id", f.hf_id),
    ]
    mla = MLA_COMMENTS if f.kv_lora_rank else {}
    lines += [_line(k, getattr(f, k), mla.get(k, FAMILY_FIELDS[k])) for k in FAMILY_FIELDS if getattr(f, k) != fam[k]]
    for k, why in SIZE_FIELDS.items():
        v = getattr(f, k)
        if k in ("hidden_size", "num_layers", "num_heads", "intermediate_size") or v != getattr(_DEFAULTS, k):
            lines.append(_line(k, v, why))
    lines += _mode_lines(f.thinking, s.sampling, base=(fam["thinking"], fam_sampling))
    if s.budgets:
        if "eval:" not in lines:
            lines.append("eval:")
        lines.append(_line("budgets", s.budgets, f"the method's budgets that fit the {f.max_position}-token context"))
    present = {ln[:-1] for ln in lines if ln in ("train:", "curate:", "resources:")}
    lines += _settings_comment(s, profile_name, present)
    return "\n".join(lines) + "\n"


def _settings_comment(s: DerivedSize, profile_name: str, present: set[str] = frozenset()) -> list[str]:
    """The rules' output as commented YAML: what the planner will derive for this size. Every
    commented value line is valid YAML once uncommented under its section line; a section the file
    already has (``present``) is not repeated, since a second ``train:`` would replace the first."""
    if s.error:
        return ["", f"# The rules cannot plan this size on profile {profile_name} with the method defaults:",
                f"#   {s.error}"]
    settings = s.settings
    if settings is None:
        return []
    prov, reasons = settings.provenance, settings.reasons
    out = ["", f"# What scaling/rules.py derives for this size from the method defaults on profile {profile_name}.",
           "# The planner recomputes these at plan time (another profile or study gives other values).",
           "# To pin one, uncomment it together with its section line (`# train:`); under a section this",
           "# file already has, move the line there instead. A pinned value overrides the rule."]

    def head(section: str) -> str:
        return f"#   (move under the {section}: section above)" if section in present else f"# {section}:"

    for section in ("train", "curate"):
        leaves = _derived_leaves(settings, section)
        if leaves:
            out.append(head(section))
            for key, value in leaves:
                why = reasons.get(f"{section}.{key}", "")
                rule = prov.get(f"{section}.{key}", "")
                note = f"{rule}" + (f": {why}" if why and len(why) < 90 else "")
                out.append(f"#   {_pin(key, value):<34} # {note}")
    layout = reasons.get("train.finetune") or reasons.get("resources.train")
    if layout:
        out.append(f"# train layout: {layout}")
    res = settings.resources
    if res:
        out.append(head("resources"))
        for stage, values in res.items():
            body = ", ".join(f"{k}: {_scalar(v)}" for k, v in to_dict(values).items())
            where = f"  # eval: one {PROBE_BENCHMARK} task at the method's budgets" if stage == "eval" else ""
            out.append(f"#   {stage}: {{{body}}}{where}")
    est = settings.estimates
    out.append(f"# estimated training: {est.train_hours:.1f} h, {est.train_gpu_hours:.0f} GPU-hours, "
               f"{est.train_mem_per_gpu_gb:.1f} GB per GPU")
    return out


def _derived_leaves(settings: DerivedSettings, section: str) -> list[tuple[str, Any]]:
    """(key, plain value) of every ``section`` key a rule derived, in the order the rules ran."""
    out = []
    for key in settings.provenance:
        if key.startswith(section + "."):
            obj: Any = getattr(settings, section)
            for part in key.split(".")[1:]:
                obj = getattr(obj, part)
            out.append((key[len(section) + 1:], to_dict(obj)))
    return out


def write_family(files: dict[str, str], out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the family directory atomically: a temporary sibling renamed into place."""
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise RecipeError(f"{target} exists and is not a directory; choose another -o", key="-o")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise RecipeError(f"{target} already exists; pass --force to replace it or -o another directory", key="-o")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, text in files.items():
            durable.atomic_write_text(tmp / name, text)  # looked up at call time: a test makes one write fail
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old.{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def derive_command(family: str, models: list[str], profile: str | None, out: str | None, force: bool = False) -> int:
    """``scaling recipe derive``: derive, check through the planner's rules, write, summarise."""
    sizes = derive_family(family, models)
    target = Path(out) if out else Path("recipes") / "families" / family
    if target.is_dir() and any(target.iterdir()) and not force:  # fail before any work
        raise RecipeError(f"{target} already exists; pass --force to replace it or -o another directory", key="-o")
    command = " ".join(["scaling recipe derive", f"--family {family}"] + [f"--model {m}" for m in models]
                       + ([f"--profile {profile}"] if profile else []))
    sizes, profile_name = rule_settings(family, sizes, render_family(family, sizes, "", command), profile)
    files = render_family(family, sizes, profile_name, command)
    write_family(files, target, force=force)
    print(f"derived family {family!r} ({len(sizes)} sizes) -> {target}/  (rules on profile {profile_name})")
    for s in sizes:
        c = count_params(s.facts)
        moe = f", {c.active / 1e9:.2f}B active" if s.facts.num_experts else ""
        head = f"  {s.facts.size:<24} {c.total / 1e9:7.2f}B total{moe}; thinking {s.facts.thinking}; "
        if s.error or s.settings is None:
            print(head + f"warning: not plannable on {profile_name}: {s.error}")
            continue
        tr = dict(_derived_leaves(s.settings, "train"))  # what the rules chose (None: the method set it)
        res = s.settings.resources["train"]
        print(head + f"lr {tr.get('learning_rate')}, {tr.get('finetune')}, L_R {tr.get('rollout_limit')}, "
              f"train {res.nodes}x{res.gpus_per_node} GPU, TP {res.tensor_parallel}")
        if not s.chat_template:
            print(f"  {'':<24} note: no chat template found (base model?); the jobs need one to build prompts")
    print(f"use it in a study recipe with `study: {{family: {family}}}` (see docs/new-family.md)")
    return 0
