"""The prepared GPU check (perf/gpu_check.py, issue 22) in its dry mode: the same code with tiny
shapes on CPU, through perf/gpu_check.sh --cpu; its one JSON file has every field a GPU run fills."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PHASES = ["sft", "grpo", "grpo_zero2", "grpo_lora", "grpo_moe"]


def test_gpu_check_dry_mode_writes_one_json_with_every_phase(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(["bash", "perf/gpu_check.sh", "--cpu"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert [f.name for f in files] == ["gpu_check.json"]
    report = json.loads(files[0].read_text())
    assert report["mode"] == "cpu" and report["target"] == 0.15
    assert {"python", "torch", "transformers", "trl", "peft"} <= set(report["env"])
    assert [p["phase"] for p in report["phases"]] == PHASES
    by = {p["phase"]: p for p in report["phases"]}
    assert by["grpo_zero2"]["ok"] is False and by["grpo_zero2"]["skipped"]  # why not, recorded
    for name in ("sft", "grpo", "grpo_lora", "grpo_moe"):
        rec = by[name]
        assert rec["ok"], rec
        assert rec["global_step"] == rec["steps"] == {"sft": 5, "grpo": 5}.get(name, 1)
        assert rec["peak_gb"] > 0 and rec["estimate_gb"] > 0 and rec["ratio"] > 0
        assert rec["tokens"] > 0 and rec["tokens_per_s"] > 0
        parts = rec["estimate_parts_gb"]
        assert set(parts) == {"weights_gb", "grads_gb", "optimizer_gb", "autocast_gb", "reference_gb",
                              "activations_gb"}
        assert rec["trainable_dtypes"] == ["float32"]  # fp32 master weights / fp32 LoRA adapters
        line = next(line for line in proc.stdout.splitlines() if line.startswith(name + " "))
        assert "vs capacity.py" in line and "tokens/s" in line
    # beta > 0: TRL built a reference model for full fine-tuning, and capacity counted it; none with LoRA
    assert by["grpo"]["reference_model"] and by["grpo"]["estimate_parts_gb"]["reference_gb"] > 0
    assert not by["grpo_lora"]["reference_model"] and by["grpo_lora"]["estimate_parts_gb"]["reference_gb"] == 0
    assert by["grpo_moe"]["size"] == "1_3m_a0_4m"
