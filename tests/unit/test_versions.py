"""``scaling --version`` and the library versions launch records in study.yaml (issue 11, item 6)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import yaml

from scaling.versions import LIBRARIES, NOT_INSTALLED, StudyWithVersions, library_versions


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def test_version_lists_every_library_with_its_installed_version():
    out = subprocess.run([sys.executable, "-m", "scaling", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert list(lines) == ["scaling", *LIBRARIES]
    for name in ("torch", "transformers", "trl", "accelerate", "peft"):
        assert lines[name] == _installed(name)
    assert lines["deepspeed"] == _installed("deepspeed")


def test_version_imports_no_heavy_library():
    code = ("import sys; from scaling.versions import version_text; version_text(); "
            "print([m for m in ('torch', 'transformers', 'trl', 'vllm', 'deepspeed') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_study_yaml_ends_with_the_library_versions():
    class Study:
        name = "s"

        def to_yaml(self) -> str:
            return "study: s\nconfig: {a: 1}\n"

    doc = yaml.safe_load(StudyWithVersions(Study()).to_yaml())
    assert doc["study"] == "s" and doc["config"] == {"a": 1}
    assert doc["library_versions"] == library_versions()
    assert StudyWithVersions(Study()).name == "s"


def test_launch_records_library_versions_in_study_yaml(tmp_path, monkeypatch):
    from scaling import launch as L
    from tests.slurm import bodies as B
    from tests.unit.test_launch import FakeScheduler

    monkeypatch.setenv("PYTHONPATH", str(B.REPO_ROOT))
    runs = tmp_path / "runs"
    plan = B.small_study("s")
    assert L.launch(B.FakeStudy("s"), plan, executor=FakeScheduler(), runs_dir=runs, poll_s=0.0) == 0
    doc = yaml.safe_load((runs / "s" / "study.yaml").read_text())
    assert doc["name"] == "s" and doc["library_versions"] == library_versions()
