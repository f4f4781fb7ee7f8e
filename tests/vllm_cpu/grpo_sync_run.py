"""One GRPO run of the project's training job with colocated vLLM rollouts, in a process of its
own (one in-process engine per process: TRL's colocate mode starts vLLM with the
``external_launcher`` backend in the trainer's process), watched from outside the weight sync.

    python tests/vllm_cpu/grpo_sync_run.py MODEL_DIR WORK_DIR VARIANT   (writes WORK_DIR/summary.json)

VARIANT:
* ``native``   this CPU as it is;
* ``avx2``     vLLM's dispatch as on an x86 CPU with AVX2 only: ``torch.cpu._is_avx512_supported``,
  ``_is_avx512_bf16_supported`` and ``_is_amx_tile_supported`` answer False before vLLM starts
  (vllm/platforms/cpu.py ``import_kernels`` then loads ``vllm._C_AVX2``; layers/utils.py
  ``check_cpu_sgl_kernel`` refuses the SGL kernels), and the parent sets ``ONEDNN_MAX_CPU_ISA=AVX2``
  (oneDNN's own ISA cap, which decides whether ``create_onednn_mm`` can build a bf16 matmul);
* ``stale``    TRL's ``VLLMGeneration.sync_weights`` replaced by a no-op: the engine keeps the
  initial weights while the policy trains (the silent-stale bug, forced);
* ``no_reload`` the project's CPU repair (vLLM's layerwise reload) unavailable: TRL's plain sync.

Around every sync (outside the project's check) it reads, with code of its own, what the engine
computes with -- ``lm_head``, the last layer's stacked ``qkv_proj`` and ``down_proj`` (through the
layer's CPU kernel with the identity as input when it has one, else its Parameter), the final
norm -- and the policy's tensors, and records per sync whether the engine equals the policy and
whether it moved.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vllm_tier  # noqa: E402,F401  (the tier's engine settings, before anything imports vllm)

VARIANTS = ("native", "avx2", "stale", "no_reload")


def simulate_avx2() -> None:
    import torch

    for name in ("_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported",
                 "_is_amx_fp16_supported", "_is_avx512_vnni_supported"):
        if hasattr(torch.cpu, name):
            setattr(torch.cpu, name, lambda: False)


def engine_model(gen):
    return gen.llm.llm_engine.model_executor.driver_worker.model_runner.model


def effective_weight(module, k: int, dtype):
    """The [N, k] weight a layer computes with: through its CPU kernel (identity input) if it has
    one, else its Parameter; None when neither can be read."""
    import torch

    kernel = getattr(module, "cpu_linear", None)
    if callable(kernel):
        eye = torch.eye(k, dtype=module.weight.dtype)
        with torch.no_grad():
            return kernel(eye, module.weight, None).t().to(dtype).clone()
    if module.weight.numel() == 0:
        return None
    return module.weight.detach().to(dtype).clone()


def readings(gen, policy_model, layer: int):
    """{name: (engine tensor or None, policy tensor)} in the engine's dtype."""
    import torch

    model = engine_model(gen)
    dtype = gen.llm.llm_engine.model_executor.driver_worker.model_runner.model_config.dtype
    p = {n: t.detach() for n, t in policy_model.named_parameters()}
    pre = f"model.layers.{layer}."
    qkv = torch.cat([p[pre + f"self_attn.{s}_proj.weight"] for s in "qkv"]).to(dtype)
    down = p[pre + "mlp.down_proj.weight"].to(dtype)
    head = p["lm_head.weight"].to(dtype)
    out = {}
    out["qkv_proj"] = (effective_weight(model.get_submodule(pre + "self_attn.qkv_proj"), qkv.shape[1], dtype), qkv)
    out["down_proj"] = (effective_weight(model.get_submodule(pre + "mlp.down_proj"), down.shape[1], dtype), down)
    e = effective_weight(model.get_submodule("lm_head"), head.shape[1], dtype)
    out["lm_head"] = (None if e is None else e[: head.shape[0]], head)
    lm_param = model.get_submodule("lm_head").weight.detach().to(dtype)[: head.shape[0]].clone()
    out["lm_head.param"] = (lm_param, head)
    out["norm"] = (model.get_submodule("model.norm").weight.detach().to(dtype).clone(), p["model.norm.weight"].to(dtype))
    return out


def run(model_dir: str, work: Path, variant: str) -> dict:
    import torch
    from trl.generation.vllm_generation import VLLMGeneration

    from scaling.durable import read_done
    from scaling.errors import WeightSyncError
    from scaling.jobs import train, trainer_hooks, weight_sync
    from test_vllm_grpo import write_run

    torch.set_num_threads(1)
    summary: dict = {"variant": variant, "syncs": [], "generations": []}
    real_generate = VLLMGeneration.generate

    def generate(self, *args, **kwargs):
        out = real_generate(self, *args, **kwargs)
        summary["generations"].append(len(out[1]))
        return out

    VLLMGeneration.generate = generate
    if variant == "stale":
        VLLMGeneration.sync_weights = lambda self: None
    if variant == "no_reload":
        weight_sync.layerwise_reload = lambda: None
    real_install = train.install_weight_sync_check
    layer = 1  # the think model's last layer (vllm_tier.think_facts: 2 layers)

    def install(trainer):
        installed = real_install(trainer)
        gen = trainer.vllm_generation
        checked_sync = gen.sync_weights
        qkv = engine_model(gen).get_submodule(f"model.layers.{layer}.self_attn.qkv_proj")
        summary["engine_layout"] = {  # what vLLM's CPU GEMM dispatch did with a linear layer
            "qkv_weight_numel": int(qkv.weight.numel()), "has_cpu_kernel": callable(getattr(qkv, "cpu_linear", None)),
            "avx512": bool(torch.cpu._is_avx512_supported()), "amx": bool(torch.cpu._is_amx_tile_supported()),
            "dtype": str(gen.llm.llm_engine.model_executor.driver_worker.model_runner.model_config.dtype),
        }
        previous = {}

        def watched_sync():
            before = readings(gen, gen.model, layer)
            entry = {"step": int(trainer.state.global_step)}
            entry["policy_moved"] = {k: k in previous and not torch.equal(previous[k], w) for k, (_, w) in before.items()}
            previous.update({k: w for k, (_, w) in before.items()})
            summary["syncs"].append(entry)
            try:
                checked_sync()
            finally:
                after = readings(gen, gen.model, layer)
                entry["readable"] = {k: v[0] is not None for k, v in after.items()}
                entry["equal"] = {k: a is not None and torch.equal(a, w) for k, (a, w) in after.items()}
                entry["moved"] = {k: (before[k][0] is not None and after[k][0] is not None
                                      and not torch.equal(before[k][0], after[k][0])) for k in after}

        gen.sync_weights = watched_sync
        summary["installed"] = installed
        return installed

    train.install_weight_sync_check = install
    run_yaml = write_run(work, model_dir)
    config = train.make_grpo_config(train.load_run(run_yaml), run_yaml.parent, "cpu")
    summary["use_vllm"], summary["vllm_mode"] = bool(config.use_vllm), config.vllm_mode
    try:
        train.main(str(run_yaml))
        summary["outcome"] = "done"
    except WeightSyncError as err:
        summary["outcome"] = "error"
        summary["error"] = str(err)
        summary["cause"] = repr(err.__cause__) if err.__cause__ is not None else None
    except BaseException as err:  # anything else is a failure of the run: kept for the test's message
        summary["outcome"] = "crash"
        summary["error"] = "".join(traceback.format_exception(err))[-4000:]
    done = read_done(run_yaml.parent)
    summary["done_steps"] = None if done is None else done.get("steps")
    summary["signal_steps"] = [r["step"] for r in trainer_hooks.read_signals(run_yaml.parent)]
    summary["tokens_mean"] = [r["tokens_mean"] for r in trainer_hooks.read_signals(run_yaml.parent)]
    return summary


def main(argv: list[str]) -> int:
    model_dir, work, variant = argv[0], Path(argv[1]), argv[2]
    if variant not in VARIANTS:
        raise SystemExit(f"variant must be one of {VARIANTS}")
    if variant == "avx2":
        assert os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2", "the avx2 variant needs ONEDNN_MAX_CPU_ISA=AVX2"
        simulate_avx2()
    work.mkdir(parents=True, exist_ok=True)
    summary = run(model_dir, work, variant)
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
