"""Shared fixtures: the repository root and tiny models built once per test session.

Nothing here reaches a model hub: ``scaling.jobs.tiny`` builds a byte-level BPE tokenizer and
randomly initialised Qwen3 / Qwen3-MoE models, saved to a session temp dir, so tests load them
with the same ``from_pretrained(path)`` code as production. torch/transformers are imported only
when a test asks for a model fixture (unit tests that don't stay light).

Fixtures:
  repo_root            Path of the repository (recipes/, tests/data/ ...).
  tiny_tokenizer_dir   str: a saved tiny tokenizer (AutoTokenizer.from_pretrained works).
  tiny_qwen3_dir       str: a saved dense tiny Qwen3 (size ``0_1m``, ~0.05M params) + tokenizer.
  tiny_moe_dir         str: a saved tiny Qwen3-MoE (size ``1_3m_a0_4m``) + tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (parent of tests/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One session directory that holds every tiny artefact."""
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tiny_models_root: Path) -> str:
    """A saved tiny tokenizer (``<think>``/``</think>``, Qwen3-style chat template)."""
    from scaling.jobs.tiny import build_tokenizer

    out = tiny_models_root / "tokenizer"
    build_tokenizer(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tiny_models_root: Path) -> str:
    """A saved dense tiny Qwen3 (the smallest ladder size, seed 0) with its tokenizer."""
    from scaling.jobs.tiny import build_model, tiny_facts

    return build_model(tiny_facts("0_1m"), tiny_models_root / "qwen3_0_1m", seed=0)


@pytest.fixture(scope="session")
def tiny_moe_dir(tiny_models_root: Path) -> str:
    """A saved tiny Qwen3-MoE (8 experts, 2 per token, seed 0) with its tokenizer."""
    from scaling.jobs.tiny import build_model, tiny_facts

    return build_model(tiny_facts("1_3m_a0_4m"), tiny_models_root / "qwen3_moe_1_3m_a0_4m", seed=0)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the whole suite. ``--slurm`` enables the real single-node Slurm tier
    (tests/slurm, after ``bash slurm/ci/start_cluster.sh``); pytest reads options only from the
    top-level conftest when it is run as ``pytest tests ...``."""
    parser.addoption("--slurm", action="store_true", default=False,
                     help="run the real single-node Slurm tests (start slurm/ci/start_cluster.sh first)")


@pytest.fixture(scope="session")
def no_slurm_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH value with every executable of this machine's PATH except Slurm's client and daemons
    (``tests/pathenv.py``): the laptop commands are run under it, whatever this machine has."""
    from tests.pathenv import path_without_slurm

    return path_without_slurm(tmp_path_factory.mktemp("no-slurm-path"))


@pytest.fixture
def off_cluster(no_slurm_path: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process as on a laptop: no Slurm client on PATH, no SLURM_CONF. Returns the PATH."""
    monkeypatch.setenv("PATH", no_slurm_path)
    monkeypatch.delenv("SLURM_CONF", raising=False)
    return no_slurm_path
