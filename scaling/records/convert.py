"""Records <-> plain data: ``to_dict`` for YAML/JSON, ``from_dict`` back through omegaconf's
structured validation (run.yaml is checked exactly like a recipe). Standard library only
(omegaconf inside ``from_dict``)."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from ..errors import RecordError


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints`` of a record class, cached (the records use postponed annotations)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def unwrap_optional(tp: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def from_plain(tp: Any, value: Any, where: str) -> Any:
    """Plain JSON data our code wrote (plan.json, manifest.json) -> typed records (nested
    dataclasses, enums, lists, dicts, optionals), built directly: no omegaconf, whose validation
    ``from_dict`` applies to run.yaml, a file a user may edit. An unknown key or a non-object where
    a record belongs is a ``RecordError`` naming ``where``."""
    tp = unwrap_optional(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object for {tp.__name__}")
        hints = type_hints(tp)
        unknown = set(value) - set(hints)
        if unknown:
            raise RecordError(f"{where}: unknown keys {sorted(unknown)} for {tp.__name__}")
        return tp(**{k: from_plain(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [from_plain(item, v, where) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: from_plain(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    return value


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (possibly nested) YAML-facing dataclass from plain data, through omegaconf's
    structured validation (so run.yaml is checked exactly like a recipe).

    Values are literal: a ``${...}`` string (which omegaconf would resolve, e.g. to an
    environment variable) is refused, so a hand-edited run.yaml cannot pull a secret into a job's
    outputs. Recipes refuse it at ``scaling check`` already."""
    from omegaconf import OmegaConf


    def scan(v: Any, key: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                scan(x, f"{key}.{k}" if key else str(k))
        elif isinstance(v, (list, tuple)):
            for x in v:
                scan(x, key)
        elif isinstance(v, str) and "${" in v:
            raise RecordError(f"{cls.__name__}: {key}: '${{...}}' interpolation is not allowed (values are literal); "
                              "re-plan the study with `scaling launch`")

    scan(data, "")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))


def to_dict(obj: Any) -> Any:
    """A dataclass -> plain data (enums as their values) for YAML/JSON."""

    def conv(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return conv(obj)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts as dotted keys (lists are leaves)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict) and data:
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = data
    return out
