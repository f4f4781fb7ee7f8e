"""The colocated vLLM engine's weights, verified after every weight sync of a GRPO run.

What it does: TRL's ``GRPOTrainer(use_vllm=True, vllm_mode="colocate")`` pushes the policy's
weights into its in-process vLLM engine before each rollout (``VLLMGeneration.sync_weights`` ->
``model.load_weights``). ``install_weight_sync_check(trainer)`` wraps that sync so that after it

1. one tensor per parameter kind (the last layer's ``q_proj``, ``k_proj``, ``o_proj``,
   ``gate_proj``, ``down_proj``, ``input_layernorm``..., the embeddings, the final norm and
   ``lm_head``) is read back FROM THE ENGINE and compared, exactly in the engine's dtype, with the
   policy's tensor; a difference, or a tensor the engine does not let us read, raises ONE
   ``WeightSyncError`` (stale rollouts are a wrong result, not a warning);
2. on vLLM's CPU platform the sync is made real first: its GEMM dispatch
   (``dispatch_cpu_unquantized_gemm``, vllm/model_executor/layers/utils.py) packs every linear
   weight into a oneDNN / SGL kernel at load time and removes ``layer.weight`` (``lm_head`` keeps
   its Parameter, but the kernel computes with the packed copy), so a plain ``load_weights``
   either fails (``'Parameter' object has no attribute 'weight_loader'``) or changes a Parameter
   the kernel no longer reads. The wrapper brackets TRL's sync with vLLM's own layerwise reload
   (``initialize_layerwise_reload`` / ``finalize_layerwise_reload``, the machinery of
   ``GPUModelRunner.reload_weights``): the original Parameters come back, TRL's ``load_weights``
   fills them, and ``process_weights_after_loading`` packs the NEW weights into the kernels.

What the engine computes is what is read: a linear layer with a CPU kernel (``cpu_linear``) is
read through that kernel with rows of the identity as input (``x = e_j`` gives column ``j`` of
the weight, exactly: one product by 1.0, the rest zeros), so a stale packed copy cannot hide
behind an up-to-date Parameter. Stacked vLLM parameters (``qkv_proj``, ``gate_up_proj``: the
model's ``packed_modules_mapping``) are compared shard by shard; a padded vocabulary is compared
on the policy's rows. With tensor parallelism > 1 a sharded tensor is not compared (its shard
layout is the engine's business); the replicated norms still are.

The pure part (names, kinds, shards, the comparison) is unit-tested in the main env
(tests/unit/test_weight_sync.py); the engine part in the vllm tier (tests/vllm_cpu/).
torch and vllm are imported inside functions only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import WeightSyncError

# The columns of a kernel-packed weight read back through the kernel (x = rows of the identity):
# a labelled default, enough to see any update of a trained matrix (every column moves under
# Adam), cheap next to the sync itself (COLUMNS x K x N multiply-adds per checked layer).
PROBE_COLUMNS = 16

_LAYER_INDEX = re.compile(r"\.(\d+)\.")
FIX = ("set train.vllm_mode: none (rollouts with transformers) or use a vLLM build whose colocated "
       "weight update works; see docs/training.md, 'vLLM colocate weight sync'")


# ------------------------------------------------------------------------------ pure: names
def param_kind(name: str) -> str:
    """The kind of a parameter: its name with every layer index replaced by ``*``
    (``model.layers.3.self_attn.q_proj.weight`` -> ``model.layers.*.self_attn.q_proj.weight``)."""
    return _LAYER_INDEX.sub(".*.", name)


def _indices(name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in _LAYER_INDEX.findall(name))


def choose_probe_names(names: Iterable[str]) -> list[str]:
    """One parameter name per kind: the one in the highest layer (the last to be written by a
    layer-by-layer sync), in the order the kinds first appear."""
    best: dict[str, str] = {}
    for name in names:
        kind = param_kind(name)
        if kind not in best or _indices(name) > _indices(best[kind]):
            best[kind] = name
    return list(best.values())


@dataclass(frozen=True)
class EngineTarget:
    """Where a policy parameter lives in the engine: ``engine_name``, and for a stacked vLLM
    parameter the policy names of all its shards in stacking order and this one's ``shard``."""

    engine_name: str
    shard: int | None = None
    shard_names: tuple[str, ...] = ()


def engine_target(name: str, packed: Mapping[str, Sequence[str]]) -> EngineTarget:
    """The engine's name of a HF policy parameter, with vLLM's stacking (``packed``: the vLLM
    model's ``packed_modules_mapping``, e.g. ``{"qkv_proj": ["q_proj", "k_proj", "v_proj"],
    "gate_up_proj": ["gate_proj", "up_proj"]}``)."""
    parts = name.split(".")
    for stacked, shards in packed.items():
        for j, shard in enumerate(shards):
            if len(parts) >= 2 and parts[-2] == shard and shard != stacked:
                prefix, leaf = parts[:-2], parts[-1]
                return EngineTarget(
                    engine_name=".".join([*prefix, stacked, leaf]),
                    shard=j,
                    shard_names=tuple(".".join([*prefix, s, leaf]) for s in shards),
                )
    return EngineTarget(engine_name=name)


def shard_rows(rows: Sequence[int], shard: int) -> tuple[int, int]:
    """(offset, count) of shard ``shard`` in a tensor stacked along dim 0 from shards of
    ``rows[k]`` rows each."""
    if not 0 <= shard < len(rows):
        raise ValueError(f"shard {shard} of {len(rows)}")
    return sum(rows[:shard]), rows[shard]


def probe_columns(k: int, count: int = PROBE_COLUMNS) -> list[int]:
    """``count`` column indices spread evenly over ``range(k)`` (all of them when k <= count),
    first and last included."""
    if k <= count:
        return list(range(k))
    if count == 1:
        return [0]
    return sorted({round(i * (k - 1) / (count - 1)) for i in range(count)})


# ------------------------------------------------------------------------ pure: comparison
@dataclass(frozen=True)
class Difference:
    """One checked tensor whose engine value is not the policy's."""

    name: str
    where: str  # "parameter" or "kernel"
    detail: str  # shape mismatch, or how many elements differ and by how much


def compare(name: str, where: str, policy: Any, engine: Any) -> Difference | None:
    """``None`` when ``engine`` equals ``policy`` exactly (same shape, same values), else the
    Difference. Both must already be in the same dtype (the engine's). The engine may carry
    padding rows past the policy's (a vocabulary padded to a multiple of 64): only the policy's
    rows count."""
    import torch

    if engine.ndim == policy.ndim == 2 and engine.shape[0] > policy.shape[0] and engine.shape[1] == policy.shape[1]:
        engine = engine[: policy.shape[0]]
    if tuple(engine.shape) != tuple(policy.shape):
        return Difference(name, where, f"shape {tuple(engine.shape)} in the engine, {tuple(policy.shape)} in the policy")
    if torch.equal(engine, policy):
        return None
    diff = (engine.double() - policy.double()).abs()
    return Difference(name, where, f"{int((diff > 0).sum())} of {diff.numel()} values differ, max |diff| {diff.max().item():.3g}")


@dataclass
class CheckReport:
    """What one verification compared and what it left out (with why)."""

    compared: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def verdict(report: CheckReport, step: int) -> None:
    """Raise ONE WeightSyncError for a report with a difference, an unreadable tensor, or
    nothing compared at all; return quietly when every checked tensor is equal."""
    if report.differences:
        d = report.differences[0]
        names = {x.name for x in report.differences}
        more = f" ({len(names)} of {len(report.compared)} checked tensors differ)" if len(names) > 1 else ""
        raise WeightSyncError(
            f"vLLM colocate weight sync at step {step}: the rollout engine's {d.name} ({d.where}) is not the policy's: "
            f"{d.detail}{more}; rollouts would sample from stale weights; {FIX}")
    if report.unreadable:
        name, why = report.unreadable[0]
        raise WeightSyncError(
            f"vLLM colocate weight sync at step {step}: cannot read the rollout engine's {name} ({why}), so the sync "
            f"cannot be verified; {FIX}")
    if not report.compared:
        raise WeightSyncError(
            f"vLLM colocate weight sync at step {step}: no policy tensor could be matched to an engine tensor "
            f"({len(report.skipped)} skipped, e.g. {report.skipped[0] if report.skipped else '-'}); {FIX}")


# ------------------------------------------------------------------------------ the engine
def engine_runner(gen: Any) -> Any:
    """The colocated engine's model runner (the same path TRL's sync writes through)."""
    return gen.llm.llm_engine.model_executor.driver_worker.model_runner


def kernel_packs_weights(model: Any) -> bool:
    """Did vLLM's CPU GEMM dispatch give the engine's layers kernels with their own weight copies
    (``layer.cpu_linear``, layers/utils.py ``dispatch_cpu_unquantized_gemm``)?"""
    return any(callable(getattr(m, "cpu_linear", None)) for m in model.modules())


def layerwise_reload() -> tuple[Any, Any] | None:
    """vLLM's (initialize_layerwise_reload, finalize_layerwise_reload), or None for a vLLM without them."""
    try:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload
    except ImportError:
        return None
    return initialize_layerwise_reload, finalize_layerwise_reload


def read_kernel_columns(module: Any, columns: list[int], k: int) -> Any:
    """Columns ``columns`` of the weight a CPU-dispatched layer COMPUTES with, as a
    ``[len(columns), N]`` tensor: the kernel applied to rows of the identity (no bias)."""
    import torch

    dtype = module.weight.dtype
    x = torch.zeros(len(columns), k, dtype=dtype, device=module.weight.device)
    x[torch.arange(len(columns)), torch.tensor(columns)] = 1
    with torch.no_grad():
        return module.cpu_linear(x, module.weight, None)


def policy_tensors(gen: Any, names: list[str]) -> dict[str, Any]:
    """The policy's tensors under TRL's vLLM names: a PEFT model's through TRL's own iterator
    (adapters merged, exactly what the sync pushes; copies), any other model's read directly
    (ZeRO-3 parameters gathered one at a time and copied)."""
    wanted = set(names)
    out: dict[str, Any] = {}
    model = gen.model
    if hasattr(model, "merge_adapter"):  # PEFT: the merged weights, as TRL's sync pushes them
        for name, tensor in gen._iter_named_params():
            if name in wanted:
                out[name] = tensor.detach().clone()
        return out
    params = {gen._fix_param_name_to_vllm(n): p for n, p in model.named_parameters()}
    for name in names:
        p = params.get(name)
        if p is None:
            continue
        if not hasattr(p, "ds_id"):  # a whole tensor already: no copy (an embedding is GBs on a GPU)
            out[name] = p.detach()
            continue
        with gen._dist.gather_params([p]):  # ZeRO-3: whole only inside the gather
            out[name] = p.data.detach().clone()
    return out


def policy_names(gen: Any) -> list[str]:
    model = gen.model
    if hasattr(model, "merge_adapter"):
        return [n for n, _ in gen._iter_named_params()]
    return [gen._fix_param_name_to_vllm(n) for n, _ in model.named_parameters()]


def verify_engine_weights(gen: Any, names: list[str] | None = None) -> CheckReport:
    """Compare one policy tensor per kind with the engine's (see the module docstring)."""
    runner = engine_runner(gen)
    model = runner.model
    dtype = runner.model_config.dtype
    tp = int(getattr(gen, "tensor_parallel_size", 1) or 1)
    packed = dict(getattr(model, "packed_modules_mapping", None) or {})
    all_names = policy_names(gen)
    chosen = names if names is not None else choose_probe_names(all_names)
    targets = {n: engine_target(n, packed) for n in chosen}
    needed = sorted({s for t in targets.values() for s in (t.shard_names or ())} | set(chosen))
    policy = policy_tensors(gen, [n for n in needed if n in set(all_names)])
    engine_params = dict(model.named_parameters(remove_duplicate=False))
    report = CheckReport()
    for name in chosen:
        target = targets[name]
        if name not in policy:
            report.skipped.append((name, "not a policy parameter"))
            continue
        want = policy[name].to(dtype)
        if target.shard is not None:
            if any(s not in policy for s in target.shard_names):
                report.skipped.append((name, "a shard of its stacked engine parameter is missing"))
                continue
            offset, rows = shard_rows([policy[s].shape[0] for s in target.shard_names], target.shard)
        else:
            offset, rows = 0, want.shape[0] if want.ndim else 0
        param = engine_params.get(target.engine_name)
        if param is None:
            report.skipped.append((name, f"no engine parameter {target.engine_name}"))
            continue
        module = model.get_submodule(target.engine_name.rsplit(".", 1)[0]) if "." in target.engine_name else model
        kernel = callable(getattr(module, "cpu_linear", None)) and target.engine_name.endswith(".weight")
        if tp > 1 and (target.shard is not None or tuple(param.shape) != tuple(want.shape)):
            report.skipped.append((name, f"sharded over tensor_parallel_size={tp}"))
            continue
        read_any = False
        if param.numel() > 0:  # the Parameter the engine keeps (embeddings look rows up in it)
            engine = param.detach()
            if target.shard is not None:
                engine = engine[offset: offset + rows]
            d = compare(name, "parameter", want, engine.to(dtype))
            if d is not None:
                report.differences.append(d)
            read_any = True
        if kernel and want.ndim == 2:  # what the layer's CPU kernel computes with
            cols = probe_columns(want.shape[1])
            out = read_kernel_columns(module, cols, want.shape[1])  # [len(cols), N_engine]
            got = out.t()[offset: offset + rows] if target.shard is not None else out.t()  # [N, len(cols)]
            d = compare(name, "kernel", want[:, cols].contiguous(), got.to(dtype).contiguous())
            if d is not None:
                report.differences.append(d)
            read_any = True
        if not read_any:
            report.unreadable.append((name, f"{target.engine_name} is empty and its layer has no kernel to read it through"))
            continue
        report.compared.append(name)
    return report


# -------------------------------------------------------------------------------- the hook
def install_weight_sync_check(trainer: Any, log: Any = print) -> bool:
    """Wrap ``trainer.vllm_generation.sync_weights`` (colocate mode only): a real sync on
    vLLM's CPU platform (layerwise reload around TRL's sync), then the verification; a failure of
    either is ONE WeightSyncError. Returns whether it was installed."""
    gen = getattr(trainer, "vllm_generation", None)
    if gen is None or getattr(gen, "mode", None) != "colocate":
        return False
    trl_sync = gen.sync_weights  # bound now: whatever VLLMGeneration.sync_weights is at this point
    state = {"logged": False}

    def sync_weights() -> None:
        runner = engine_runner(gen)
        step = int(getattr(trainer.state, "global_step", 0))
        reload = layerwise_reload() if kernel_packs_weights(runner.model) else None
        try:
            if reload is not None:
                initialize, finalize = reload
                initialize(runner.model)
                try:
                    trl_sync()
                finally:
                    finalize(runner.model, runner.model_config)
            else:
                trl_sync()
        except WeightSyncError:
            raise
        except Exception as err:  # the upstream failure, named once (its traceback stays chained)
            raise WeightSyncError(
                f"vLLM colocate weight sync at step {step} failed: {type(err).__name__}: {err}; {FIX}") from err
        report = verify_engine_weights(gen)
        verdict(report, step)
        if not state["logged"]:
            how = "layerwise reload (CPU kernels repacked)" if reload is not None else "load_weights"
            log(f"[train] vLLM weight sync verified at step {step}: {len(report.compared)} tensors equal "
                f"({how}; {len(report.skipped)} not comparable)")
            state["logged"] = True

    gen.sync_weights = sync_weights
    return True
