"""Recipes: YAML files -> a validated ``Study`` (the first arrow of the data flow).

What it does
    ``load_study(path, overrides, sizes, profile)`` reads a study recipe, follows its
    ``include:`` files (relative to the including file first, then the ``recipes/`` root),
    finds the study's family under ``families/<family>/`` and one size file per size, merges
    the layers in this order (later wins)::

        method files the study includes  <  family.yaml  <  size file  <  the study file
          <  the study's ``sizes.<key>:`` block  <  ``--set key=value`` (dotlist, applied last)

    records which file set every leaf (the provenance ``scaling plan --explain`` prints), and
    validates each size against the typed records of ``scaling/records/`` through omegaconf
    structured configs. Every mistake is a one-line ``RecipeError`` naming the file, the dotted
    key and the fix; the CLI turns it into exit status 2.

    The pieces, in data-flow order: ``layers.py`` (files -> layers, the merge and its
    provenance), ``validate.py`` (plain data -> typed settings, value checks), ``profiles.py``
    (cluster profiles), this module (the study: order of the layers, sizes, the API).

How to run it
    ``scaling check recipes/qwen3-ladder.yaml --sizes 0.6B,8b --set sizes.8b.train.learning_rate=5e-7``

Where it departs from plain omegaconf
    Size keys have no dots (``0_6b``), because omegaconf splits dotted keys: ``sizes.0.6b.x``
    would silently create ``sizes -> "0" -> "6b"``; we refuse it and name the right key.
    Values are literal: no ``${...}`` interpolation, so every value has exactly one source.
    ``null`` means "derived by a rule" (``scaling/rules.py``), never "unset by accident".

Standard library, yaml and omegaconf only.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError, short
from .layers import (
    REPO_ROOT,
    SECTIONS,
    Layer,
    Loader,
    did_you_mean,
    family_dir,
    family_sizes,
    merge_into,
    parse_overrides,
    prov_name,
    recipes_root,
    source_of,
)
from .paramcount import resolve_facts
from .profiles import load_profile
from .records import ClusterProfile, ModelFacts, RecipeFile, SizeFile, SizeSettings, StudySettings, to_dict
from .records.convert import flatten
from .sizes import size_key
from .validate import check_size, omegaconf_error, structured

_NAME_RE = re.compile(r"[a-z0-9_-]+")
MAX_STUDY_NAME = 64  # a directory name and part of every scheduler job name
MAX_SEED = 2**32 - 1  # numpy / transformers.set_seed accept 32-bit seeds only


# -------------------------------------------------------------------------------- Study
@dataclass(frozen=True, kw_only=True)
class Study:
    """A validated study: what ``plan.make_plan`` expands and ``launch`` records as study.yaml.

    ``config`` is plain data: ``{"study": {...}, "sizes": {key: {model, train, curate, sft,
    eval, resources}}}`` with every value (``None`` = a rule in rules.py decides at plan time).
    ``provenance`` maps dotted keys of ``config`` (``sizes.8b.train.learning_rate``) to the
    file that set them, ``"--set"``, ``"default"`` (the records' default) or ``"rule:<name>"``.
    """

    name: str
    path: str
    sources: list[str]
    family: str
    sizes: list[str]
    config: dict[str, Any]
    provenance: dict[str, str]
    profile: ClusterProfile
    runs_dir: str = "runs"
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    settings: dict[str, SizeSettings] = field(default_factory=dict, repr=False, compare=False)

    def size_provenance(self, size: str) -> dict[str, str]:
        """Provenance of one size, keyed like a RunSpec (``train.learning_rate``)."""
        prefix = f"sizes.{size}."
        return {k[len(prefix):]: v for k, v in self.provenance.items() if k.startswith(prefix)}

    def to_yaml(self) -> str:
        """The resolved recipe with provenance and the code version (launch writes it as
        ``runs/<study>/study.yaml``)."""
        doc = {
            "study": self.name,
            "recipe": self.path,
            "sources": list(self.sources),
            "overrides": list(self.overrides),
            "code_version": code_version(),
            "profile": to_dict(self.profile),
            "config": self.config,
            "provenance": self.provenance,
        }
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def code_version() -> dict[str, str]:
    """Package version and the git commit of the checkout the package runs from (``unknown``
    outside a git checkout, e.g. an installed wheel)."""
    import subprocess  # here: only launch writes study.yaml, and the plan path need not load it

    from . import __version__

    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
        sha = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return {"package": __version__, "git": sha or "unknown"}


# ------------------------------------------------------------------------------ the API
def load_study(
    path: str | os.PathLike[str],
    overrides: list[str] | tuple[str, ...] = (),
    sizes: list[str] | None = None,
    profile: str | None = None,
) -> Study:
    """Load, compose and validate a study recipe (see the module docstring for the order).

    ``overrides``: ``--set`` dotlist items; ``sizes``: a subset of the study's sizes by key or
    label (``0.6B``); ``profile``: a cluster profile name or path replacing ``study.profile``.
    Raises ``RecipeError`` (one line: file, key, fix) on any mistake.
    """
    study_path = Path(path).expanduser()
    if not study_path.is_file():
        raise RecipeError("recipe file not found; check the path (e.g. recipes/qwen3-ladder.yaml)", path=str(path))
    loader = Loader()
    chain = loader.chain(study_path, RecipeFile)
    top = chain[-1]
    over = parse_overrides(list(overrides))

    # ---- the study section: includes < study file < --set
    prov: dict[str, str] = {}
    study_raw: dict[str, Any] = {}
    for layer in chain:
        if "study" in layer.data:
            merge_into(study_raw, {"study": layer.data["study"] or {}}, prov, layer.prov)
    if "study" in over:
        merge_into(study_raw, {"study": over["study"]}, prov, "--set")
    shown_of = {layer.prov: layer.shown for layer in chain}
    shown_of["--set"] = "--set"
    try:
        st: StudySettings = structured(StudySettings, study_raw.get("study", {}))
    except Exception as err:
        e = omegaconf_error(err, {k.removeprefix("study."): v for k, v in prov.items()}, top.prov, "study.")
        raise RecipeError(e.reason, path=shown_of.get(e.path or "", e.path), key=e.key) from None
    src_of = lambda key: shown_of.get(source_of(key, prov, top.prov), top.shown)  # noqa: E731
    if not st.name:
        raise RecipeError("missing study name; add study: {name: my-study, ...}", path=top.shown, key="study.name")
    if len(st.name) > MAX_STUDY_NAME:
        raise RecipeError(f"is {len(st.name)} characters; use at most {MAX_STUDY_NAME} (it names runs/<study>/ "
                          "and every scheduler job)", path=src_of("study.name"), key="study.name")
    if not _NAME_RE.fullmatch(st.name) or not st.name.strip("-_"):
        raise RecipeError(f"study name {short(st.name)} must match [a-z0-9_-]+ with at least one letter or digit "
                          "(it names runs/<study>/)", path=src_of("study.name"), key="study.name")
    if not 0 <= st.seed <= MAX_SEED:
        raise RecipeError(f"must be between 0 and {MAX_SEED} (numpy and transformers seed with 32 bits), "
                          f"got {short(st.seed)}", path=src_of("study.seed"), key="study.seed")
    if not st.family:
        raise RecipeError("missing family; add study: {family: qwen3} (a folder under recipes/families/)",
                          path=top.shown, key="study.family")
    fam_dir = family_dir(st.family, top.path.parent, top.shown, src_of("study.family"))
    known_sizes = family_sizes(fam_dir)
    if not st.sizes:
        raise RecipeError(f"no sizes; list some of {known_sizes}", path=src_of("study.sizes"), key="study.sizes")
    study_sizes: list[str] = []
    for s in st.sizes:
        k = size_key(s)
        if k not in known_sizes:
            raise RecipeError(f"unknown size {s!r} for family {st.family}{did_you_mean(k, known_sizes)}; "
                              f"sizes: {', '.join(known_sizes)}", path=src_of("study.sizes"), key="study.sizes")
        if k in study_sizes:
            raise RecipeError(f"size {k} is listed twice", path=src_of("study.sizes"), key="study.sizes")
        study_sizes.append(k)
    selected = study_sizes
    if sizes is not None and not sizes:
        raise RecipeError(f"no size given; list sizes separated by commas, e.g. --sizes {study_sizes[0]}", path="--sizes")
    if sizes:
        wanted = [size_key(s) for s in sizes]
        for w, raw in zip(wanted, sizes):
            if w not in study_sizes:
                hint = (f"; it is a {st.family} size: add it with --set 'study.sizes=[{','.join(study_sizes + [w])}]'"
                        if w in known_sizes else "")
                raise RecipeError(f"{raw!r} is not a size of study {st.name} (sizes: {', '.join(study_sizes)}){hint}",
                                  path="--sizes")
        selected = [k for k in study_sizes if k in wanted]

    # ---- sizes.<key> blocks must name family sizes
    for layer in [*chain, Layer(Path("--set"), "--set", "--set", over)]:
        for k, block in (layer.data.get("sizes") or {}).items():
            split = [f"{k}_{sub}" for sub in (block or {}) if f"{k}_{sub}" in known_sizes] if isinstance(block, dict) else []
            if k not in known_sizes and split:
                raise RecipeError(f"size keys have no dots (omegaconf splits them): write sizes.{split[0]}... "
                                  f"instead of sizes.{split[0].replace('_', '.', 1)}...", path=layer.shown, key=f"sizes.{k}")
            if k not in known_sizes:
                raise RecipeError(f"unknown size {k!r} for family {st.family}{did_you_mean(size_key(k), known_sizes)}",
                                  path=layer.shown, key=f"sizes.{k}")

    prof_name = profile or st.profile
    prof = load_profile(prof_name, src="--profile" if profile else src_of("study.profile"))

    # ---- one resolved config per selected size
    config: dict[str, Any] = {"study": {**dataclasses.asdict(st), "sizes": selected}}
    provenance: dict[str, str] = {f"{k}": v for k, v in prov.items()}
    settings: dict[str, SizeSettings] = {}
    sources = [layer.prov for layer in chain[:-1]]
    for k in selected:
        fam_chain = loader.chain(fam_dir / f"{k}.yaml", SizeFile)
        for layer in fam_chain:
            shown_of[layer.prov] = layer.shown
            if layer.prov not in sources:
                sources.append(layer.prov)
        layers: list[tuple[str, dict]] = [(la.prov, la.data) for la in chain[:-1]]
        layers += [(la.prov, la.data) for la in fam_chain]
        layers.append((top.prov, top.data))
        for la in chain:
            block = (la.data.get("sizes") or {}).get(k)
            if block is not None:
                name = f"{la.prov}:sizes.{k}"
                shown_of[name] = la.shown
                layers.append((name, block))
        layers.append(("--set", over))
        if (over.get("sizes") or {}).get(k) is not None:
            layers.append(("--set", over["sizes"][k]))
        merged: dict[str, Any] = {}
        sprov: dict[str, str] = {}
        for name, data in layers:
            merge_into(merged, {s: data[s] for s in SECTIONS if s in data and data[s] is not None}, sprov, name)
        merged.setdefault("model", {})
        merged["model"].setdefault("size", k)
        merged["model"].setdefault("family", st.family)
        sprov.setdefault("model.size", prov_name(fam_dir / f"{k}.yaml"))
        sprov.setdefault("model.family", top.prov)
        try:
            obj: SizeSettings = structured(SizeSettings, merged)
        except Exception as err:
            e = omegaconf_error(err, sprov, top.prov, f"sizes.{k}.")
            raise RecipeError(e.reason, path=shown_of.get(e.path or "", e.path), key=e.key) from None
        shown_prov = {key: shown_of.get(v, v) for key, v in sprov.items()}
        check_size(k, obj, shown_prov, top.shown)
        obj.model = _resolve_facts(obj.model, k, sprov, shown_of)
        if obj.model.params_total is not None:
            for key in ("params_total", "params_active", "params_embedding", "head_dim", "num_kv_heads"):
                sprov.setdefault(f"model.{key}", "rule:count_params")
        plain = to_dict(obj)
        for leaf in flatten(plain):
            sprov.setdefault(leaf, "default")
        config.setdefault("sizes", {})[k] = plain
        for key, v in sprov.items():
            provenance[f"sizes.{k}.{key}"] = v
        settings[k] = obj
    sources.append(top.prov)
    return Study(
        name=st.name, path=str(path), sources=sources, family=st.family, sizes=selected, config=config,
        provenance=provenance, profile=prof, runs_dir=st.runs_dir, seed=st.seed, overrides=list(overrides),
        settings=settings,
    )


def _resolve_facts(m: ModelFacts, size: str, sprov: dict[str, str], shown_of: dict[str, str]) -> ModelFacts:
    """paramcount.resolve_facts (counts, head_dim...) with the error re-pointed at the file that set the key."""
    try:
        return resolve_facts(m)
    except RecipeError as err:
        key = err.key or "model"
        src = source_of(key, sprov, "")
        raise RecipeError(err.reason, path=shown_of.get(src, src) or None, key=f"sizes.{size}.{key}") from None


def load_method(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The method's settings as plain data (``train``, ``curate``, ``sft``, ``eval``,
    ``resources``), from ``recipes/method/efficient_reasoning.yaml`` and its includes; what
    ``derive.py`` feeds to ``rules.derive_size_settings`` for a new family."""
    p = Path(path) if path else recipes_root() / "method" / "efficient_reasoning.yaml"
    merged: dict[str, Any] = {}
    for layer in Loader().chain(p, RecipeFile):
        merge_into(merged, {s: layer.data[s] for s in SECTIONS if s != "model" and layer.data.get(s) is not None}, {}, layer.prov)
    return merged
