"""Options and fixtures of the real-Slurm tier (``@pytest.mark.slurm``).

Enable with ``--slurm`` (or select the marker: ``-m slurm``) after ``bash slurm/ci/start_cluster.sh``.
Without either, the tests here are skipped (and the default marker selection deselects them).
The cluster's ``SLURM_CONF`` is read from ``$SCALING_SLURM_DIR/env.sh`` (default
/tmp/scaling-slurm-ci) when the environment does not set it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--slurm``. pytest reads options only from initial conftests, so ``pytest tests/slurm --slurm``
    works from here; ``pytest tests --slurm`` needs the same option in tests/conftest.py."""
    try:
        parser.addoption("--slurm", action="store_true", default=False,
                         help="run the real single-node Slurm tests (start slurm/ci/start_cluster.sh first)")
    except ValueError:  # already registered by tests/conftest.py
        pass


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "slurm", False):
        config.option.markexpr = "slurm"  # --slurm selects the tier (overrides the default deselection)


def _enabled(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "slurm", False)) or "slurm" in (config.option.markexpr or "").replace(
        "not slurm", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _enabled(config):
        return
    skip = pytest.mark.skip(reason="real Slurm tests: pass --slurm after slurm/ci/start_cluster.sh")
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """SLURM_CONF of the running CI cluster; fails (not skips) when it is not reachable."""
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        env_sh = Path(os.environ.get("SCALING_SLURM_DIR", "/tmp/scaling-slurm-ci")) / "env.sh"
        if env_sh.exists():
            conf = env_sh.read_text().strip().split("=", 1)[1]
    if not conf or shutil.which("sinfo") is None:
        pytest.fail("no Slurm cluster: run `bash slurm/ci/start_cluster.sh` first")
    os.environ["SLURM_CONF"] = conf
    res = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.fail(f"sinfo failed with SLURM_CONF={conf}: {res.stderr.strip()}")
    return conf


@pytest.fixture(scope="session")
def slurm_runs_root():
    """Study directories of this session, outside pytest's rotating basetemp (which other pytest
    runs on the same machine may delete while a Slurm job still writes there)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="scaling-slurm-tests-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm_env(slurm_cluster, slurm_runs_root, request, monkeypatch):
    """A fresh runs dir per test; jobs import tests.slurm.bodies (cwd and PYTHONPATH = repo root)."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("COLUMNS", "200")
    runs = slurm_runs_root / request.node.name / "runs"
    runs.mkdir(parents=True)
    return runs
