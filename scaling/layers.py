"""Recipe files -> layers: YAML read with caps, ``include:`` chains, unknown keys refused per
file, ``--set`` parsed, and the merge that records which file set every leaf.

The merge order (later wins) and why values are literal are in recipe.py's docstring. A layer
is plain data; ``merge_into`` deep-merges one into the running result and records its name for
every leaf it sets (the provenance ``scaling plan --explain`` prints). YAML is read with PyYAML's
C loader after ``yamlscan.scan_yaml`` has checked the caps, not with ``OmegaConf.load``: omegaconf
has no size/depth/alias caps and its pure-Python loader is slower; omegaconf parses ``--set``.

Standard library, yaml and (for ``--set``) omegaconf only.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError, short
from .records import RecipeFile
from .records.convert import type_hints, unwrap_optional
from .yamlscan import MAX_RECIPE_BYTES, scan_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("model", "train", "curate", "sft", "eval", "resources")  # what a size resolves to
_KEY_RE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def recipes_root() -> Path:
    """Where ``include:`` and families are looked up after the including file's folder."""
    return Path(os.environ.get("SCALING_RECIPES", REPO_ROOT / "recipes"))


def display_path(path: Path) -> str:
    """How a file is named in error messages: relative to the working directory if inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def prov_name(path: Path) -> str:
    """How a file is named in provenance: relative to the recipes root (``families/qwen3/8b.yaml``),
    else as in error messages."""
    try:
        return str(path.resolve().relative_to(recipes_root().resolve()))
    except ValueError:
        return display_path(path)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean X?)`` for a close match, else the known names."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    shown = ", ".join(sorted(choices)[:40])
    return f"; known: {shown}"


_HINTS: dict[type, dict[str, Any]] = {}


def check_keys(data: Any, cls: type, prefix: str, src: str) -> None:
    """Refuse unknown keys (with a did-you-mean) and non-mappings where a section is expected.
    Types and enum values are checked later by omegaconf on the merged size."""
    if not isinstance(data, dict):
        raise RecipeError(
            f"expected a mapping of {cls.__name__} keys, got {type(data).__name__} {data!r}"[:200],
            path=src, key=prefix or None,
        )
    hints = type_hints(cls)
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if not isinstance(k, str):
            raise RecipeError(f"keys must be strings, got {k!r}; quote it (size keys look like 0_6b)", path=src, key=key)
        if k not in hints:
            where = prefix or "the top level"
            raise RecipeError(f"unknown key in {where}{did_you_mean(k, list(hints))}", path=src, key=key)
        if v is None:
            continue
        tp = unwrap_optional(hints[k])
        if dataclasses.is_dataclass(tp):
            check_keys(v, tp, key, src)
        elif typing.get_origin(tp) is dict:
            vt = unwrap_optional(typing.get_args(tp)[1])
            if not isinstance(v, dict):
                raise RecipeError(f"expected a mapping, got {type(v).__name__} {v!r}"[:200], path=src, key=key)
            if dataclasses.is_dataclass(vt):
                for kk, vv in v.items():
                    check_keys({} if vv is None else vv, vt, f"{key}.{kk}", src)


def merge_into(dst: dict, src: dict, prov: dict[str, str], source: str, prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst`` (later wins), recording ``source`` for every leaf set.
    Lists and scalars are leaves; a mapping replaces nothing, it merges key by key."""
    for k, v in src.items():
        key = prefix + str(k)
        if isinstance(v, dict):
            if not isinstance(dst.get(k), dict):
                dst[k] = {}
                for p in [p for p in prov if p == key or p.startswith(key + ".")]:
                    del prov[p]
            merge_into(dst[k], v, prov, source, key + ".")
            if not v:
                prov.setdefault(key, source)
        else:
            dst[k] = copy.deepcopy(v)
            for p in [p for p in prov if p.startswith(key + ".")]:
                del prov[p]
            prov[key] = source


def source_of(key: str, prov: dict[str, str], default: str) -> str:
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
class Layer:
    path: Path
    prov: str  # provenance name
    shown: str  # name in errors
    data: dict[str, Any]


class Loader:
    """Reads YAML files once per ``load_study`` call and expands ``include:`` chains."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, Any]] = {}

    def read(self, path: Path) -> dict[str, Any]:
        path = path.resolve()
        if path not in self._cache:
            shown = display_path(path)
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

    def chain(self, path: Path, schema: type, _seen: tuple[Path, ...] = (), _done: set[Path] | None = None) -> list[Layer]:
        """``path``'s layers in merge order: its includes (recursively, each file once), then itself."""
        path = path.resolve()
        done = set() if _done is None else _done
        if path in _seen:
            cycle = " -> ".join(display_path(p) for p in (*_seen, path))
            raise RecipeError(f"include cycle: {cycle}; remove one include", path=display_path(path), key="include")
        data = self.read(path)
        shown = display_path(path)
        inc = data.get("include", [])
        if isinstance(inc, str):
            inc = [inc]
        if not isinstance(inc, list) or not all(isinstance(i, str) for i in inc):
            raise RecipeError("include must be a file name or a list of file names", path=shown, key="include")
        layers: list[Layer] = []
        for name in inc:
            target = self.find_include(name, path.parent, shown)
            if target in done:
                continue
            layers += self.chain(target, schema, (*_seen, path), done)
        body = {k: v for k, v in data.items() if k != "include"}
        check_keys(body, schema, "", shown)
        for sec in SECTIONS:
            if sec in body and body[sec] is None:
                body[sec] = {}
        layers.append(Layer(path, prov_name(path), shown, body))
        done.add(path)
        return layers

    @staticmethod
    def find_include(name: str, here: Path, shown: str) -> Path:
        for base in (here, recipes_root()):
            cand = (base / name).expanduser()
            if cand.is_file():
                return cand.resolve()
        raise RecipeError(
            f"include {name!r} not found (looked in {display_path(here)} and {display_path(recipes_root())}); fix the file name",
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


def family_dir(family: str, study_dir: Path, shown: str, key_src: str) -> Path:
    roots = [study_dir, recipes_root()]
    for root in roots:
        d = root / "families" / family
        if (d / "family.yaml").is_file() or (d.is_dir() and any(d.glob("*.yaml"))):
            return d
    known = sorted({p.name for r in roots if (r / "families").is_dir() for p in (r / "families").iterdir() if p.is_dir()})
    raise RecipeError(f"unknown family {family!r}{did_you_mean(family, known)}; add recipes/families/{family}/",
                      path=key_src, key="study.family")


def family_sizes(family_dir: Path) -> list[str]:
    """Size keys of a family: every ``<key>.yaml`` except ``family.yaml`` and ``_helpers.yaml``."""
    return sorted(p.stem for p in family_dir.glob("*.yaml") if p.stem != "family" and not p.stem.startswith("_"))


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
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
        merge_into(merged, parsed, {}, "--set")
    check_keys(merged, RecipeFile, "", "--set")
    return merged


