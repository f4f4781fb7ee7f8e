"""Recipes: YAML files -> a validated ``Study`` (the first arrow of the data flow).

What it does
    ``load_study(path, overrides, sizes, profile)`` reads a study recipe, follows its
    ``include:`` files (relative to the including file first, then the ``recipes/`` root),
    finds the study's family under ``families/<family>/`` and one size file per size, merges
    the layers in this order (later wins)::

        method files the study includes  <  family.yaml  <  size file  <  the study file
          <  the study's ``sizes.<key>:`` block  <  ``--set key=value`` (dotlist, applied last)

    records which file set every leaf (the provenance ``scaling plan --explain`` prints), and
    validates each size against the typed records of ``scaling/records.py`` through omegaconf
    structured configs. Every mistake is a one-line ``RecipeError`` naming the file, the dotted
    key and the fix; the CLI turns it into exit status 2.

How to run it
    ``scaling check recipes/qwen3-ladder.yaml --sizes 0.6B,8b --set sizes.8b.train.learning_rate=5e-7``

Where it departs from plain omegaconf
    Size keys have no dots (``0_6b``), because omegaconf splits dotted keys: ``sizes.0.6b.x``
    would silently create ``sizes -> "0" -> "6b"``; we refuse it and name the right key.
    Values are literal: no ``${...}`` interpolation, so every value has exactly one source.
    ``null`` means "derived by a rule" (``scaling/rules.py``), never "unset by accident".

This module imports the standard library, yaml and omegaconf only.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ECHO_MAX, RecipeError, short
from .yamlscan import MAX_RECIPE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, scan_yaml  # noqa: F401 (caps, tests)
from .records import ClusterProfile, CurateSettings, EvalSettings, ModelFacts, SftSettings, TrainSettings, to_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("model", "train", "curate", "sft", "eval", "resources")  # what a size resolves to
STAGES = ("curate", "sft", "train", "eval")
CHECKPOINTS = ("base", "trained")
THINKING = ("hybrid", "always", "none")
DEFAULT_PROFILE = "h100_8x80gb"
_NAME_RE = re.compile(r"[a-z0-9_-]+")
MAX_LIST_ITEMS = 64  # eval.budgets, eval.benchmarks (real lists have 5-10): each one multiplies jobs
MAX_STUDY_NAME = 64  # a directory name and part of every scheduler job name
MAX_SEED = 2**32 - 1  # numpy / transformers.set_seed accept 32-bit seeds only
SCALE_REWARDS = ("group", "batch", "none")  # TRL GRPOConfig.scale_rewards
LENGTH_PENALTIES = ("linear", "group", "hinge")  # rewards.tldr_penalty
# transformers' report_to names (integration_utils.INTEGRATION_TO_CALLBACK, 5.x) + none/all;
# tests/unit/test_recipe.py compares this list with the installed transformers.
REPORT_TO = ("all", "azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow",
             "mlflow", "neptune", "none", "swanlab", "tensorboard", "trackio", "wandb")
_KEY_RE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def recipes_root() -> Path:
    """Where ``include:`` and families are looked up after the including file's folder."""
    return Path(os.environ.get("SCALING_RECIPES", REPO_ROOT / "recipes"))


def profiles_dir() -> Path:
    """Where ``study.profile: <name>`` / ``--profile <name>`` are looked up."""
    return Path(os.environ.get("SCALING_PROFILES", REPO_ROOT / "slurm" / "profiles"))


# ------------------------------------------------------------------------------ schemas
@dataclass(kw_only=True)
class StageResources:
    """Per-stage resource overrides (``resources.train.nodes: 2``). ``None`` = rules.py decides."""

    nodes: int | None = None
    gpus_per_node: int | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    timeout_min: int | None = None
    tensor_parallel: int | None = None
    data_parallel: int | None = None


@dataclass(kw_only=True)
class ResourceSettings:
    curate: StageResources = field(default_factory=StageResources)
    sft: StageResources = field(default_factory=StageResources)
    train: StageResources = field(default_factory=StageResources)
    eval: StageResources = field(default_factory=StageResources)


@dataclass(kw_only=True)
class SizeSettings:
    """Everything one size resolves to: the schema of method, family and size files and of a
    study's ``sizes.<key>:`` block."""

    model: ModelFacts = field(default_factory=ModelFacts)
    train: TrainSettings = field(default_factory=TrainSettings)
    curate: CurateSettings = field(default_factory=CurateSettings)
    sft: SftSettings = field(default_factory=SftSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)


@dataclass(kw_only=True)
class StudySettings:
    """The ``study:`` section of a study recipe."""

    name: str = ""  # [a-z0-9_-]+, the study directory under runs_dir
    family: str = ""  # recipes/families/<family>/
    sizes: list[str] = field(default_factory=list)  # size keys (or labels), in ladder order
    profile: str = DEFAULT_PROFILE  # slurm/profiles/<name>.yaml or a path
    seed: int = 0
    runs_dir: str = "runs"
    description: str = ""


@dataclass(kw_only=True)
class RecipeFile(SizeSettings):
    """The schema of a study recipe (and of any file a study includes)."""

    include: list[str] = field(default_factory=list)
    study: StudySettings = field(default_factory=StudySettings)
    sizes: dict[str, SizeSettings] = field(default_factory=dict)


@dataclass(kw_only=True)
class SizeFile(SizeSettings):
    """The schema of a family or size file: facts and per-size settings, no study."""

    include: list[str] = field(default_factory=list)


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
    """Package version and git commit (read from .git without a subprocess)."""
    from . import __version__

    sha = ""
    git = REPO_ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = git / ref
            if ref_file.is_file():
                sha = ref_file.read_text().strip()
            elif (git / "packed-refs").is_file():
                for line in (git / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        sha = line.split()[0]
        else:
            sha = head
    except OSError:
        sha = ""
    return {"package": __version__, "git": sha or "unknown"}


# ---------------------------------------------------------------------------- utilities
def size_key(name: str) -> str:
    """A size key from a key or a display label: ``0.6B`` -> ``0_6b``, ``30B-A3B`` -> ``30b_a3b``."""
    return re.sub(r"[.\-\s]+", "_", str(name).strip().lower())


def _display(path: Path) -> str:
    """How a file is named in error messages: relative to the working directory if inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _prov_name(path: Path) -> str:
    """How a file is named in provenance: relative to the recipes root (``families/qwen3/8b.yaml``),
    else as in error messages."""
    try:
        return str(path.resolve().relative_to(recipes_root().resolve()))
    except ValueError:
        return _display(path)


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    shown = ", ".join(sorted(choices)[:40])
    return f"; known: {shown}"


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _check_keys(data: Any, cls: type, prefix: str, src: str) -> None:
    """Refuse unknown keys (with a did-you-mean) and non-mappings where a section is expected.
    Types and enum values are checked later by omegaconf on the merged size."""
    if not isinstance(data, dict):
        raise RecipeError(
            f"expected a mapping of {cls.__name__} keys, got {type(data).__name__} {data!r}"[:200],
            path=src, key=prefix or None,
        )
    hints = _hints(cls)
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if not isinstance(k, str):
            raise RecipeError(f"keys must be strings, got {k!r}; quote it (size keys look like 0_6b)", path=src, key=key)
        if k not in hints:
            where = prefix or "the top level"
            raise RecipeError(f"unknown key in {where}{_did_you_mean(k, list(hints))}", path=src, key=key)
        if v is None:
            continue
        tp = _unwrap_optional(hints[k])
        if dataclasses.is_dataclass(tp):
            _check_keys(v, tp, key, src)
        elif typing.get_origin(tp) is dict:
            vt = _unwrap_optional(typing.get_args(tp)[1])
            if not isinstance(v, dict):
                raise RecipeError(f"expected a mapping, got {type(v).__name__} {v!r}"[:200], path=src, key=key)
            if dataclasses.is_dataclass(vt):
                for kk, vv in v.items():
                    _check_keys({} if vv is None else vv, vt, f"{key}.{kk}", src)


class _Slow(Exception):
    """The fast path cannot decide: let omegaconf validate (and convert, or explain the error)."""


def _fast(tp: Any, v: Any) -> Any:
    """Build ``tp`` from plain data when every value already has exactly the declared type.

    A shortcut, not a second validator: it accepts only what omegaconf accepts unchanged
    (ints for int, ints/floats for float, enum values, lists, nested mappings) and raises
    ``_Slow`` for everything else (strings to convert, None in a required field, bad values),
    so omegaconf's structured merge still decides every case that needs a decision."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _fast(inner[0], v)
        raise _Slow
    if v is None:
        raise _Slow
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            raise _Slow
        hints = _hints(tp)
        if any(k not in hints for k in v):
            raise _Slow
        out = {k: _fast(hints[k], x) for k, x in v.items()}
        for f in dataclasses.fields(tp):  # omegaconf merges a given mapping into a mapping default
            if f.name in out and isinstance(out[f.name], dict) and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
                if isinstance(default, dict) and default:
                    out[f.name] = {**default, **out[f.name]}
        return tp(**out)
    if origin is list:
        if not isinstance(v, list):
            raise _Slow
        (item,) = typing.get_args(tp)
        return [_fast(item, x) for x in v]
    if origin is dict:
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise _Slow
        item = typing.get_args(tp)[1]
        return {k: _fast(item, x) for k, x in v.items()}
    if tp is Any:
        return copy.deepcopy(v)
    if tp in (bool, int, str) and type(v) is tp:
        return v
    if tp is float and type(v) in (int, float):
        return float(v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(v, tp):
            return v
        if type(v) is str and v in tp._value2member_map_:
            return tp(v)
    raise _Slow


def _structured(cls: type, data: dict[str, Any]) -> Any:
    """``data`` validated into ``cls`` through omegaconf structured configs (fast path first)."""
    try:
        return _fast(cls, data)
    except _Slow:
        from omegaconf import OmegaConf

        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
        _verify_types(cls, obj, "")
        return obj


class _TypeMismatch(Exception):
    """What omegaconf let through although it does not match the schema (a list inside a list[int])."""

    def __init__(self, key: str, msg: str):
        super().__init__(msg)
        self.full_key, self.msg = key, msg


def _verify_types(tp: Any, v: Any, key: str) -> None:
    """Check what omegaconf built against the type hints: omegaconf 2.3 accepts a nested list
    where ``list[int]`` is declared (``budgets: [[1]]``), which then fails far from the recipe."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if v is None:
            return
        if len(args) == 1:
            return _verify_types(args[0], v, key)
        return
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        for f in dataclasses.fields(tp):
            _verify_types(hints[f.name], getattr(v, f.name), f"{key}.{f.name}" if key else f.name)
        return
    if origin is list:
        (item,) = typing.get_args(tp)
        for i, x in enumerate(v if isinstance(v, list) else []):
            _verify_types(item, x, f"{key}[{i}]")
        return
    if origin is dict:
        item = typing.get_args(tp)[1]
        for k, x in (v.items() if isinstance(v, dict) else []):
            _verify_types(item, x, f"{key}.{k}")
        return
    ok = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}.get(tp)
    if ok is not None and (not isinstance(v, ok) or (tp is not bool and isinstance(v, bool) and tp is int)):
        raise _TypeMismatch(key, f"expected {tp.__name__}, got {type(v).__name__} {short(v)}")


def _merge(dst: dict, src: dict, prov: dict[str, str], source: str, prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst`` (later wins), recording ``source`` for every leaf set.
    Lists and scalars are leaves; a mapping replaces nothing, it merges key by key."""
    for k, v in src.items():
        key = prefix + str(k)
        if isinstance(v, dict):
            if not isinstance(dst.get(k), dict):
                dst[k] = {}
                for p in [p for p in prov if p == key or p.startswith(key + ".")]:
                    del prov[p]
            _merge(dst[k], v, prov, source, key + ".")
            if not v:
                prov.setdefault(key, source)
        else:
            dst[k] = copy.deepcopy(v)
            for p in [p for p in prov if p.startswith(key + ".")]:
                del prov[p]
            prov[key] = source


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts as dotted keys (lists are leaves)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict) and data:
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = data
    return out


def _source_of(key: str, prov: dict[str, str], default: str) -> str:
    """The file that set ``key`` or the nearest enclosing or enclosed key."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        p = ".".join(parts[:i])
        if p in prov:
            return prov[p]
    for p, src in prov.items():
        if p.startswith(key + "."):
            return src
    return default


# ------------------------------------------------------------------------------- loading
@dataclass
class _Layer:
    path: Path
    prov: str  # provenance name
    shown: str  # name in errors
    data: dict[str, Any]


class _Loader:
    """Reads YAML files once per ``load_study`` call and expands ``include:`` chains."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, Any]] = {}

    def read(self, path: Path) -> dict[str, Any]:
        path = path.resolve()
        if path not in self._cache:
            shown = _display(path)
            try:
                with open(path, "rb") as fh:
                    raw = fh.read(MAX_RECIPE_BYTES + 1)
                if len(raw) > MAX_RECIPE_BYTES:
                    raise RecipeError(f"file is larger than {MAX_RECIPE_BYTES // 1024} KiB, the most a recipe may be; "
                                      "is this the right file?", path=shown)
                text = raw.decode("utf-8")
            except FileNotFoundError:
                raise RecipeError("file not found; check the path", path=shown) from None
            except (OSError, UnicodeDecodeError) as err:
                raise RecipeError(f"cannot read ({type(err).__name__}); check the file", path=shown) from None
            try:
                scan_yaml(text, shown)
                data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                problem = getattr(err, "problem", None) or str(err).split("\n")[0]
                ctx, ctx_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
                if ctx and ctx_mark is not None:
                    problem += f" ({ctx} started at line {ctx_mark.line + 1})"
                raise RecipeError(f"YAML syntax error{where}: {problem}; fix the YAML", path=shown) from None
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise RecipeError(f"a recipe must be a YAML mapping (key: value), got {type(data).__name__}", path=shown)
            refuse_interpolation(data, shown)
            self._cache[path] = data
        return self._cache[path]

    def chain(self, path: Path, schema: type, _seen: tuple[Path, ...] = (), _done: set[Path] | None = None) -> list[_Layer]:
        """``path``'s layers in merge order: its includes (recursively, each file once), then itself."""
        path = path.resolve()
        done = set() if _done is None else _done
        if path in _seen:
            cycle = " -> ".join(_display(p) for p in (*_seen, path))
            raise RecipeError(f"include cycle: {cycle}; remove one include", path=_display(path), key="include")
        data = self.read(path)
        shown = _display(path)
        inc = data.get("include", [])
        if isinstance(inc, str):
            inc = [inc]
        if not isinstance(inc, list) or not all(isinstance(i, str) for i in inc):
            raise RecipeError("include must be a file name or a list of file names", path=shown, key="include")
        layers: list[_Layer] = []
        for name in inc:
            target = self.find_include(name, path.parent, shown)
            if target in done:
                continue
            layers += self.chain(target, schema, (*_seen, path), done)
        body = {k: v for k, v in data.items() if k != "include"}
        _check_keys(body, schema, "", shown)
        for sec in SECTIONS:
            if sec in body and body[sec] is None:
                body[sec] = {}
        layers.append(_Layer(path, _prov_name(path), shown, body))
        done.add(path)
        return layers

    @staticmethod
    def find_include(name: str, here: Path, shown: str) -> Path:
        for base in (here, recipes_root()):
            cand = (base / name).expanduser()
            if cand.is_file():
                return cand.resolve()
        raise RecipeError(
            f"include {name!r} not found (looked in {_display(here)} and {_display(recipes_root())}); fix the file name",
            path=shown, key="include",
        )


def refuse_interpolation(data: Any, shown: str, prefix: str = "") -> None:
    """Values are literal: a ``${...}`` anywhere (``${oc.env:HF_TOKEN}``, ``${train.x}``, even
    escaped ``\\${``) is refused, because omegaconf would resolve it wherever a value passes
    through a structured merge, and again when a job loads run.yaml, writing an environment
    value (a token) into plan.json and run.yaml."""
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(k, str) and "${" in k:
                raise RecipeError(f"'${{...}}' interpolation is not allowed in keys (got {short(k)})", path=shown,
                                  key=prefix or None)
            refuse_interpolation(v, shown, key)
    elif isinstance(data, list):
        for v in data:
            refuse_interpolation(v, shown, prefix)
    elif isinstance(data, str) and "${" in data:
        raise RecipeError(f"'${{...}}' interpolation is not allowed (values are literal; got {short(data)}); "
                          "write the value itself (secrets belong in the environment, not in a recipe)",
                          path=shown, key=prefix or None)


def _family_dir(family: str, study_dir: Path, shown: str, key_src: str) -> Path:
    roots = [study_dir, recipes_root()]
    for root in roots:
        d = root / "families" / family
        if (d / "family.yaml").is_file() or (d.is_dir() and any(d.glob("*.yaml"))):
            return d
    known = sorted({p.name for r in roots if (r / "families").is_dir() for p in (r / "families").iterdir() if p.is_dir()})
    raise RecipeError(f"unknown family {family!r}{_did_you_mean(family, known)}; add recipes/families/{family}/",
                      path=key_src, key="study.family")


def family_sizes(family_dir: Path) -> list[str]:
    """Size keys of a family: every ``<key>.yaml`` except ``family.yaml`` and ``_helpers.yaml``."""
    return sorted(p.stem for p in family_dir.glob("*.yaml") if p.stem != "family" and not p.stem.startswith("_"))


def _parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--set`` items (omegaconf dotlist) -> one nested mapping, with clear syntax errors."""
    merged: dict[str, Any] = {}
    if not overrides:
        return merged
    from omegaconf import OmegaConf

    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {short(item)}: expected KEY=VALUE (e.g. train.learning_rate=5e-7)", path="--set")
        key, _, value = item.partition("=")
        key = key.strip()
        if not _KEY_RE.fullmatch(key):
            raise RecipeError(f"--set {short(item)}: bad key {short(key)}; use dotted names like sizes.8b.train.learning_rate",
                              path="--set")
        parts = key.split(".")
        if (parts[0] == "sizes" and len(parts) > 2 and parts[2] not in SECTIONS
                and not difflib.get_close_matches(parts[2], SECTIONS, n=1, cutoff=0.6)):
            end = next((i for i in range(2, len(parts)) if parts[i] in SECTIONS), len(parts))
            fixed = "_".join(parts[1:end])
            rest = ".".join(parts[end:])
            hint = f"sizes.{fixed}" + (f".{rest}" if rest else "")
            raise RecipeError(f"size keys have no dots (omegaconf splits them): write {hint}=... instead of {key}=...",
                              path="--set", key=key)
        if parts[0] == "include":
            raise RecipeError("include cannot be set from the command line; edit the recipe", path="--set", key=key)
        if "${" in value:
            raise RecipeError(f"'${{...}}' interpolation is not allowed (values are literal; got {short(value)}); "
                              "write the value itself", path="--set", key=key)
        try:
            parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"{key}={value}"]), resolve=False)
        except Exception as err:  # omegaconf grammar errors: reported in one line
            reason = " ".join(str(err).split())[:160]
            raise RecipeError(f"--set {short(item)}: cannot parse the value ({reason})", path="--set", key=key) from None
        _merge(merged, parsed, {}, "--set")
    _check_keys(merged, RecipeFile, "", "--set")
    return merged


def load_profile(name_or_path: str, *, src: str = "study.profile") -> ClusterProfile:
    """A cluster profile by name (``slurm/profiles/<name>.yaml``) or path, validated."""
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    if not (raw.endswith((".yaml", ".yml")) or "/" in raw):
        path = profiles_dir() / f"{raw}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in profiles_dir().glob("*.yaml"))
        raise RecipeError(f"unknown cluster profile {raw!r}{_did_you_mean(raw, known)}; "
                          f"profiles live in {_display(profiles_dir())}", path=src)
    loader = _Loader()
    data = loader.read(path)
    shown = _display(path)
    _check_keys(data, ClusterProfile, "", shown)
    try:
        prof = _structured(ClusterProfile, data)
    except Exception as err:
        raise _omegaconf_error(err, {}, shown) from None
    for key in ("gpus_per_node", "max_nodes", "max_time_min", "cpus_per_node", "mem_per_node_gb", "array_parallelism"):
        minimum = 0 if key == "gpus_per_node" else 1
        if getattr(prof, key) < minimum:
            raise RecipeError(f"must be >= {minimum}, got {getattr(prof, key)}", path=shown, key=key)
    for name in prof.export:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise RecipeError(f"{short(name)} is not an environment variable name (sbatch --export=NAME,...); "
                              "list names only, never NAME=value", path=shown, key="export")
    for key in ("gpu_mem_gb", "gpu_tflops"):
        if not math.isfinite(getattr(prof, key)) or getattr(prof, key) < 0:
            raise RecipeError(f"must be a finite number >= 0, got {getattr(prof, key)}", path=shown, key=key)
    if not 0 <= prof.cpus_per_job <= prof.cpus_per_node:
        raise RecipeError(f"must be between 0 (the whole node) and cpus_per_node={prof.cpus_per_node}, "
                          f"got {prof.cpus_per_job}", path=shown, key="cpus_per_job")
    if prof.gpus_per_node > 0 and (prof.gpu_mem_gb <= 0 or prof.gpu_tflops <= 0):
        raise RecipeError("a GPU profile needs gpu_mem_gb and gpu_tflops > 0 (set gpus_per_node: 0 for CPU)",
                          path=shown, key="gpu_mem_gb" if prof.gpu_mem_gb <= 0 else "gpu_tflops")
    return prof


def _omegaconf_error(err: Exception, prov: dict[str, str], default_src: str, prefix: str = "") -> RecipeError:
    """An omegaconf validation error -> a one-line RecipeError naming the file that set the key."""
    key = str(getattr(err, "full_key", "") or "")
    msg = str(getattr(err, "msg", "") or err).split("\n")[0].strip()
    if len(msg) > 4 * ECHO_MAX:  # omegaconf echoes the offending value whole
        msg = msg[: 4 * ECHO_MAX - 3] + "..."
    src = _source_of(key, prov, default_src) if key else default_src
    full = f"{prefix}{key}" if key else (prefix[:-1] or None)
    return RecipeError(f"{msg}; fix the value", path=src, key=full)


# ------------------------------------------------------------------------------ checks
def _checks(size: str, s: SizeSettings, prov: dict[str, str], default_src: str) -> None:
    """Semantic checks omegaconf's types cannot express. ``prov`` is the size's provenance."""

    def fail(key: str, message: str) -> RecipeError:
        return RecipeError(message, path=_source_of(key, prov, default_src), key=f"sizes.{size}.{key}")

    budgets = s.eval.budgets
    if not budgets:
        raise fail("eval.budgets", "needs at least one budget in tokens, e.g. [2048, 4096, 8192]")
    for key in ("budgets", "benchmarks"):
        if len(getattr(s.eval, key)) > MAX_LIST_ITEMS:
            raise fail(f"eval.{key}", f"{len(getattr(s.eval, key))} items; at most {MAX_LIST_ITEMS} (each one "
                       "multiplies the work); split the study")
    seen_b = [b for i, b in enumerate(s.eval.benchmarks) if b in s.eval.benchmarks[:i]]
    if seen_b:
        raise fail("eval.benchmarks", f"{short(seen_b[0])} is listed twice; list each benchmark once")
    if any(b <= 0 for b in budgets):
        raise fail("eval.budgets", f"budgets must be positive token counts, got {budgets}")
    if any(b2 <= b1 for b1, b2 in zip(budgets, budgets[1:])):
        raise fail("eval.budgets", f"budgets must be strictly increasing, got {budgets}; sort them and drop repeats")
    if s.eval.checkpoints and not s.eval.benchmarks:
        raise fail("eval.benchmarks", "no benchmarks to evaluate on; list some (e.g. [aime25, math500]) "
                   "or set eval.checkpoints=[] to skip evaluation")
    _check_benchmarks(s.eval.benchmarks, lambda m: fail("eval.benchmarks", m))
    for c in s.eval.checkpoints:
        if c not in CHECKPOINTS:
            raise fail("eval.checkpoints", f"unknown checkpoint {c!r}; use a subset of {list(CHECKPOINTS)}")
    if s.eval.samples_per_problem < 1:
        raise fail("eval.samples_per_problem", "must be >= 1")
    for sec, st in (("eval", s.eval), ("train", s.train)):
        if st.temperature < 0:
            raise fail(f"{sec}.temperature", f"must be >= 0, got {st.temperature}")
        if not 0 < st.top_p <= 1:
            raise fail(f"{sec}.top_p", f"must be in (0, 1], got {st.top_p}")
    t = s.train
    if t.num_generations < 2:
        raise fail("train.num_generations", f"GRPO needs a group of >= 2 rollouts per prompt, got {t.num_generations}")
    if t.max_steps < 1:
        raise fail("train.max_steps", f"must be >= 1, got {t.max_steps}")
    for key in ("rollout_limit", "prompts_per_step", "mini_batch_prompts", "per_device_batch"):
        v = getattr(t, key)
        if v is not None and v < 1:
            raise fail(f"train.{key}", f"must be a positive integer, got {v} (or null for the rule)")
    if t.learning_rate is not None and not t.learning_rate > 0:
        raise fail("train.learning_rate", f"must be > 0, got {t.learning_rate}")
    if t.zero_stage is not None and t.zero_stage not in (0, 1, 2, 3):
        raise fail("train.zero_stage", f"ZeRO stage must be 0, 1, 2 or 3, got {t.zero_stage}")
    if t.off_policy_staleness < 1:
        raise fail("train.off_policy_staleness", "must be >= 1 (1 = on-policy)")
    lt = t.reward.target_length
    if lt is not None and lt < 1:
        raise fail("train.reward.target_length", f"must be a positive token count, got {lt}")
    if lt is not None and t.rollout_limit is not None and lt > t.rollout_limit:
        raise fail("train.reward.target_length", f"L_T={lt} exceeds L_R=train.rollout_limit={t.rollout_limit}: "
                   "no rollout could be penalised; set target_length <= rollout_limit")
    _check_values(s, fail)
    ctx = s.model.max_position
    if t.rollout_limit is not None and ctx and t.rollout_limit + t.max_prompt_length > ctx:
        # before any memory rule: a context overflow must not be reported as "does not fit"
        raise fail("train.rollout_limit", f"prompt {t.max_prompt_length} + L_R {t.rollout_limit} tokens exceed the "
                   f"model's context {ctx} (model.max_position); lower train.rollout_limit")
    c = s.curate
    if not 0 <= c.min_pass_rate < c.max_pass_rate <= 1:
        raise fail("curate.min_pass_rate", f"need 0 <= min_pass_rate < max_pass_rate <= 1, got "
                   f"{c.min_pass_rate} and {c.max_pass_rate}")
    if c.samples < 1:
        raise fail("curate.samples", "must be >= 1")
    m = s.model
    if m.thinking not in THINKING:
        raise fail("model.thinking", f"unknown thinking mode {m.thinking!r}; use one of {list(THINKING)}")
    if m.size and m.size != size:
        raise fail("model.size", f"{m.size!r} does not match the size key {size!r}; the size file "
                   f"families/{m.family or '<family>'}/{size}.yaml must say size: {size}")
    if m.num_experts <= 0 and (m.model_type.endswith("_moe") or m.model_type in ("mixtral", "olmoe", "deepseek_v2", "deepseek_v3")):
        raise fail("model.num_experts", f"model_type {m.model_type} is a mixture of experts but no expert facts are "
                   "given; add num_experts, experts_per_token and moe_intermediate_size from config.json")
    for stage in STAGES:
        r = getattr(s.resources, stage)
        for f in dataclasses.fields(r):
            v = getattr(r, f.name)
            if v is not None and v < (0 if f.name == "gpus_per_node" else 1):
                raise fail(f"resources.{stage}.{f.name}", f"must be a positive integer, got {v} (or null for the rule)")


def _walk_floats(obj: Any, prefix: str) -> typing.Iterator[tuple[str, float]]:
    """(dotted key, value) of every float leaf of a settings dataclass (dicts included)."""
    items = ([(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj)
             else list(obj.items()) if isinstance(obj, dict) else [])
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, float):
            yield key, v
        elif dataclasses.is_dataclass(v) or isinstance(v, dict):
            yield from _walk_floats(v, key)


def _check_values(s: SizeSettings, fail: Any) -> None:
    """Ranges and names that only the job would otherwise refuse (issue 14 item 5, issue 16 item 9):
    every float finite; counts, steps and batch sizes positive; limits null or positive; the
    string settings TRL and rewards.py read are known names."""
    for key, v in _walk_floats(s, ""):
        if not math.isfinite(v):
            raise fail(key, f"must be a finite number, got {v}")
    at_least = {  # key -> minimum (None-able keys are skipped when None)
        "train.save_steps": 1, "train.logging_steps": 1, "train.lora_rank": 1, "train.lora_alpha": 1,
        "train.max_prompt_length": 1, "train.top_k": 0, "train.dataset.max_rows": 1,
        "train.reward.overlong_cache": 0, "train.reward.l1_min_target": 1, "train.reward.l1_max_target": 1,
        "sft.batch_size": 1, "sft.max_length": 1, "sft.dataset.max_rows": 1,
        "eval.batch_size": 1, "eval.chunk_requests": 1, "eval.answer_tokens": 1, "eval.top_k": 0,
        "eval.max_problems": 1, "eval.min_thinking_tokens": 0, "eval.max_waits": 0, "eval.max_thinking_tokens": 1,
        "curate.max_tokens": 1, "curate.max_prompts": 1,
    }
    notes = {"train.top_k": " (0 = off)", "eval.top_k": " (0 = off)", "eval.max_problems": " (or null for every problem)",
             "train.dataset.max_rows": " (or null for every row)", "sft.dataset.max_rows": " (or null for every row)"}
    for key, minimum in at_least.items():
        v = _get_path(s, key)
        if v is not None and v < minimum:
            raise fail(key, f"must be >= {minimum}{notes.get(key, '')}, got {v}")
    positive = ("train.reward.grade_timeout_s", "eval.grade_timeout_s", "sft.epochs", "sft.learning_rate",
                "eval.stop_gamma", "eval.stop_tau")
    for key in positive:
        v = _get_path(s, key)
        if v is not None and not v > 0:
            raise fail(key, f"must be > 0, got {v}")
    for key in ("train.beta", "train.epsilon", "train.epsilon_high", "train.reward.alpha", "train.reward.l1_alpha"):
        v = _get_path(s, key)
        if v < 0:
            raise fail(key, f"must be >= 0, got {v}")
    if not 0 <= s.train.warmup_ratio <= 1:
        raise fail("train.warmup_ratio", f"must be in [0, 1], got {s.train.warmup_ratio}")
    if s.sft.max_steps != -1 and s.sft.max_steps < 1:
        raise fail("sft.max_steps", f"must be >= 1, or -1 for epochs, got {s.sft.max_steps}")
    names = (("train.scale_rewards", s.train.scale_rewards, SCALE_REWARDS),
             ("train.reward.length_penalty", s.train.reward.length_penalty, LENGTH_PENALTIES))
    for key, v, known in names:
        if v not in known:
            raise fail(key, f"unknown value {short(v)}; use one of {', '.join(known)}")
    for r in s.train.report_to:
        if r not in REPORT_TO:
            raise fail("train.report_to", f"unknown logger {short(r)}{_did_you_mean(str(r), REPORT_TO)}")


def _get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _check_benchmarks(names: list[str], fail: Any) -> None:
    try:
        from .benchmarks import known_benchmarks
    except ImportError:  # the registry module is optional for planning
        return
    known = known_benchmarks()
    for b in names:
        if b in known or b.endswith((".yaml", ".yml")):  # a benchmark YAML: check it as the job will
            from .benchmarks import load_benchmark

            load_benchmark(b)
            continue
        if b.endswith((".jsonl", ".json", ".parquet")):
            continue
        if b.startswith("task://"):  # a generated set (scaling.task), as load_benchmark accepts
            from .task import parse_task_uri

            try:
                parse_task_uri(b)
            except RecipeError as err:
                raise fail(err.reason) from None
            continue
        raise fail(f"unknown benchmark {b!r}{_did_you_mean(b, known)}; add recipes/benchmarks/{b}.yaml")


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
    loader = _Loader()
    chain = loader.chain(study_path, RecipeFile)
    top = chain[-1]
    over = _parse_overrides(list(overrides))

    # ---- the study section: includes < study file < --set
    prov: dict[str, str] = {}
    study_raw: dict[str, Any] = {}
    for layer in chain:
        if "study" in layer.data:
            _merge(study_raw, {"study": layer.data["study"] or {}}, prov, layer.prov)
    if "study" in over:
        _merge(study_raw, {"study": over["study"]}, prov, "--set")
    shown_of = {layer.prov: layer.shown for layer in chain}
    shown_of["--set"] = "--set"
    try:
        st: StudySettings = _structured(StudySettings, study_raw.get("study", {}))
    except Exception as err:
        e = _omegaconf_error(err, {k.removeprefix("study."): v for k, v in prov.items()}, top.prov, "study.")
        raise RecipeError(e.reason, path=shown_of.get(e.path or "", e.path), key=e.key) from None
    src_of = lambda key: shown_of.get(_source_of(key, prov, top.prov), top.shown)  # noqa: E731
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
    fam_dir = _family_dir(st.family, top.path.parent, top.shown, src_of("study.family"))
    known_sizes = family_sizes(fam_dir)
    if not st.sizes:
        raise RecipeError(f"no sizes; list some of {known_sizes}", path=src_of("study.sizes"), key="study.sizes")
    study_sizes: list[str] = []
    for s in st.sizes:
        k = size_key(s)
        if k not in known_sizes:
            raise RecipeError(f"unknown size {s!r} for family {st.family}{_did_you_mean(k, known_sizes)}; "
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
    for layer in [*chain, _Layer(Path("--set"), "--set", "--set", over)]:
        for k, block in (layer.data.get("sizes") or {}).items():
            split = [f"{k}_{sub}" for sub in (block or {}) if f"{k}_{sub}" in known_sizes] if isinstance(block, dict) else []
            if k not in known_sizes and split:
                raise RecipeError(f"size keys have no dots (omegaconf splits them): write sizes.{split[0]}... "
                                  f"instead of sizes.{split[0].replace('_', '.', 1)}...", path=layer.shown, key=f"sizes.{k}")
            if k not in known_sizes:
                raise RecipeError(f"unknown size {k!r} for family {st.family}{_did_you_mean(size_key(k), known_sizes)}",
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
            _merge(merged, {s: data[s] for s in SECTIONS if s in data and data[s] is not None}, sprov, name)
        merged.setdefault("model", {})
        merged["model"].setdefault("size", k)
        merged["model"].setdefault("family", st.family)
        sprov.setdefault("model.size", _prov_name(fam_dir / f"{k}.yaml"))
        sprov.setdefault("model.family", top.prov)
        try:
            obj: SizeSettings = _structured(SizeSettings, merged)
        except Exception as err:
            e = _omegaconf_error(err, sprov, top.prov, f"sizes.{k}.")
            raise RecipeError(e.reason, path=shown_of.get(e.path or "", e.path), key=e.key) from None
        shown_prov = {key: shown_of.get(v, v) for key, v in sprov.items()}
        _checks(k, obj, shown_prov, top.shown)
        obj.model = _resolve_facts(obj.model, k, sprov, shown_of)
        if obj.model.params_total is not None:
            for key in ("params_total", "params_active", "params_embedding", "head_dim", "num_kv_heads"):
                sprov.setdefault(f"model.{key}", "rule:count_params")
        plain = to_dict(obj)
        for leaf in _flatten(plain):
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
    """facts.resolve_facts (counts, head_dim...) with the error re-pointed at the file that set the key."""
    from .facts import resolve_facts

    try:
        return resolve_facts(m)
    except RecipeError as err:
        key = err.key or "model"
        src = _source_of(key, sprov, "")
        raise RecipeError(err.reason, path=shown_of.get(src, src) or None, key=f"sizes.{size}.{key}") from None


def load_method(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The method's settings as plain data (``train``, ``curate``, ``sft``, ``eval``,
    ``resources``), from ``recipes/method/efficient_reasoning.yaml`` and its includes; what
    ``derive.py`` feeds to ``rules.derive_size_settings`` for a new family."""
    p = Path(path) if path else recipes_root() / "method" / "efficient_reasoning.yaml"
    merged: dict[str, Any] = {}
    for layer in _Loader().chain(p, RecipeFile):
        _merge(merged, {s: layer.data[s] for s in SECTIONS if s != "model" and layer.data.get(s) is not None}, {}, layer.prov)
    return merged
