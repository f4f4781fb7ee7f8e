"""Fixtures of the vllm tier (see vllm_tier.py): the SFT'ed tiny thinking model, built once."""

from __future__ import annotations

import pytest

from vllm_tier import build_think_model, require_vllm


@pytest.fixture(scope="session")
def think_model(tmp_path_factory) -> str:
    """The SFT'ed tiny thinking model (vllm_tier.build_think_model). The session's torch runs one
    thread: the models are tiny, and on a busy 2-core machine a second OpenMP thread only spins."""
    require_vllm()
    import torch

    torch.set_num_threads(1)
    return build_think_model(tmp_path_factory.mktemp("vllm_tier") / "think")
