"""The capacity model: memory, FLOPs and time of a job, and the layout search that fits a job to a profile.

What it models (and what it does not)
    Memory per GPU (``train_memory``, a ``TrainMemory`` by part) = model states (weights,
    gradients, AdamW states under full fine-tuning / LoRA and ZeRO stages, in the precision each
    stage really keeps: fp32 master weights under DDP, DeepSpeed's fp32 partitions under ZeRO)
    + TRL's reference model when ``beta > 0`` + activations of one micro-batch with gradient
    checkpointing + the logits of one sequence + (colocated vLLM) the rollout engine's share.
    Time = FLOPs / (GPUs x peak x utilisation) with labelled utilisations; generation and
    training are not overlapped. These are planning estimates, within a factor of ~2; a job's
    time limit adds a safety factor, and training is checkpointable (requeues past the limit).
    Every constant below is a labelled default or cites its source; docs/recipes.md section 5
    describes the model.

Public functions
    tp_candidates / inference_tp     tensor-parallel degrees vLLM accepts; the smallest that fits
    activation_gb / train_memory_gb  per-GPU activations; per-GPU training memory
    train_memory (TrainMemory)       the same by part: weights, grads, optimizer, autocast copy, reference, activations
    reference_model_gb               TRL's reference model per GPU (beta > 0, full fine-tuning)
    lora_trainable_params            LoRA adapter parameters as peft builds them (fused MoE experts)
    forward_flops_per_token          forward FLOPs of one token at a given context
    train_hours / generation_hours   estimated wall time of training / of sampling
    time_limit_min                   a job's time limit from its estimate
    gpu_counts / job_resources       GPU counts a job may request; submitit's resources for a count
    train_layout (TrainLayout)       fine-tuning mode, ZeRO stage, vLLM mode, GPUs, rollout TP, micro-batch
    generation_layout / sft_layout   the layout of an evaluation or curation job / of the SFT job

``rules.derive_size_settings`` turns these into a size's settings (``plan._check`` also asks
``tp_candidates``); this module never imports ``rules``. It imports the standard library only (paramcount.py and records.py
are stdlib too).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import PlanError
from .paramcount import (
    GIB,
    GRAD_BYTES,
    OPTIMIZER_BYTES,
    WEIGHT_BYTES,
    ParamCount,
    count_params,
    is_moe_layer,
    kv_cache_bytes_per_token,
    lora_params,
    memory_gb,
)
from .records import GROUP_SHAPINGS, ClusterProfile, Finetune, ModelFacts, Shaping, SftSettings, TrainSettings, VllmMode

# ------------------------------------------------------------------- labelled defaults
USABLE_MEM_FRAC = 0.90  # labelled default: 10% of GPU memory kept for the CUDA context and fragmentation
VLLM_COLOCATE_MEM_FRAC = 0.30  # TRL GRPOConfig.vllm_gpu_memory_utilization default (colocate)
VLLM_SERVER_MEM_FRAC = 0.90  # vLLM's own gpu_memory_utilization default (server, evaluation)
ROLLOUT_MIN_SEQS = 4  # labelled default: the rollout engine must hold 4 sequences at L_R at once (vLLM needs 1; 4 keeps decoding batched)
EVAL_MIN_SEQS = 8  # labelled default: evaluation must hold k=8 sequences at the largest budget at once
LOGITS_BYTES_PER_VOCAB = 4  # fp32 logits of one tile: TRL 1.16 scores completions with a fused, tiled LM head
LOGITS_TILE_TOKENS = 4096  # TRL kernels/chunked_logprob.py TOKEN_CHUNK_SIZE: tokens per projection tile
ACT_BYTES_PER_HIDDEN = 34  # labelled default: one recomputed layer's activations ~34 bytes x hidden per token (Korthikanti et al. 2022, arXiv 2205.05198, no sequence parallel)
GEN_UTILISATION = 0.10  # labelled default: decode-heavy vLLM generation reaches ~10% of bf16 peak
GEN_UTILISATION_TRANSFORMERS = 0.01  # labelled default: transformers generate() on a sharded training model, ~1% of peak
TRAIN_UTILISATION = 0.30  # labelled default: fwd+bwd with gradient checkpointing and ZeRO reaches ~30% MFU
CPU_GFLOPS_PER_CORE = 10.0  # labelled default: effective fp32 matmul throughput of one CPU core (tiny models)
# SFT on CPU, per core, against the planner's token count (max_length / 2 per trace): calibrated on
# the tiny ladder's SFT jobs (docs/tiny-ladder.md, "Measured figures"); generation-heavy stages
# (GRPO, evaluation) are bound by per-token overhead and keep CPU_GFLOPS_PER_CORE.
CPU_SFT_GFLOPS_PER_CORE = 160.0  # labelled default, measured
CPU_JOB_STARTUP_S = 15.0  # labelled default, measured: a CPU job's imports, model load and data before its first step
MEAN_ROLLOUT_FRAC = 0.60  # labelled default: mean rollout length / L_R over training (starts near L_R, falls toward L_T)
EVAL_MEAN_FRAC = 0.50  # labelled default: mean response length / largest budget (Art Table: 0.6B base 14.9k at 32k)
TARGET_TRAIN_HOURS = 24.0  # labelled default: add GPUs until training is estimated to finish within a day
TARGET_EVAL_FRAC = 0.8  # labelled default: add eval replicas until one task fits in 80% of the time limit
TIME_SAFETY = 1.5  # labelled default: time limit = estimate x 1.5 + startup
STARTUP_MIN = 15  # labelled default: minutes to start a job and load the model
MIN_TIME_MIN = 10  # labelled default: shortest time limit we request
# Precision of the trained weights (issue 22, finding 2). Where no DeepSpeed stage keeps fp32
# master weights (ZeRO-0 = DDP, and the SFT job), jobs/train_config.model_dtype loads the model in
# fp32 and trains with bf16 autocast (GRPOConfig/SFTConfig bf16=True is torch.autocast, it keeps
# the parameters' dtype): fp32 weights (4 B) + fp32 gradients (4 B) + AdamW moments (8 B) per
# parameter, plus the bf16 copies autocast caches of every weight during a forward (2 B; torch's
# autocast weight cache lives until the outermost autocast region exits). DeepSpeed ZeRO 1-3 with
# bf16 keeps bf16 weights and gradients and fp32 master + moments (12 B) in the optimizer
# partitions (the ZeRO paper's K = 12, paramcount.OPTIMIZER_BYTES).
DDP_MASTER_BYTES = 4  # torch.float32 parameters: the master copy is the weights themselves
DDP_GRAD_BYTES = 4  # gradients take the parameters' dtype
DDP_ADAM_BYTES = 8  # torch.optim.AdamW exp_avg + exp_avg_sq in the parameters' dtype (fp32)
AUTOCAST_COPY_BYTES = 2  # bf16 casts of the fp32 weights, cached by torch.autocast for the forward
REF_BYTES = 2  # TRL's reference model in bf16 (jobs/train_config: model_init_kwargs dtype bfloat16 on GPU)


# ------------------------------------------------------------------- cached fact queries
_MEMO: dict[tuple, Any] = {}


def _facts_key(facts: ModelFacts) -> tuple:
    return tuple(getattr(facts, f.name) for f in dataclasses.fields(facts))


def _count(facts: ModelFacts) -> ParamCount:
    """paramcount.count_params, memoised (the layout search asks many times for the same model)."""
    key = ("count", _facts_key(facts))
    if key not in _MEMO:
        _MEMO[key] = count_params(facts)
    return _MEMO[key]


def _memory(facts: ModelFacts, **kw: Any) -> Any:
    """paramcount.memory_gb, memoised on the facts and the arguments."""
    key = ("memory", _facts_key(facts), tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items())))
    if key not in _MEMO:
        if len(_MEMO) > 4096:
            _MEMO.clear()
        _MEMO[key] = memory_gb(facts, **kw)
    return _MEMO[key]



# ------------------------------------------------------------------- parallelism rules
def tp_candidates(facts: ModelFacts, max_tp: int) -> list[int]:
    """Tensor-parallel degrees vLLM accepts for this model, ascending: powers of two that divide
    the attention heads and either divide the KV heads or are a multiple of them (vLLM replicates
    KV heads when TP > kv heads), and divide the MLP width (dense or expert)."""
    kv = facts.num_kv_heads or facts.num_heads
    width = facts.moe_intermediate_size if facts.num_experts else facts.intermediate_size
    out = []
    t = 1
    while t <= max(1, max_tp):
        ok = facts.num_heads % t == 0 and (kv % t == 0 or t % kv == 0) and (width <= 0 or width % t == 0)
        if ok:
            out.append(t)
        t *= 2
    return out


def inference_tp(
    facts: ModelFacts, *, gpu_mem_gb: float, seq_tokens: int, min_seqs: float, mem_frac: float, max_tp: int
) -> int | None:
    """Smallest valid TP whose per-GPU share of the bf16 weights plus the KV cache of
    ``min_seqs`` sequences of ``seq_tokens`` fits ``mem_frac`` of a GPU (vLLM preallocates that
    fraction). None when no TP up to ``max_tp`` fits. Used for rollouts (rule:rollout_tp),
    evaluation (rule:eval_tp) and curation."""
    weights = _memory(facts, finetune="inference").weights_gb
    kv = kv_cache_bytes_per_token(facts) * seq_tokens * min_seqs / GIB
    for t in tp_candidates(facts, max_tp):
        if (weights + kv) / t <= gpu_mem_gb * mem_frac:
            return t
    return None


def activation_gb(facts: ModelFacts, *, seq_tokens: int, per_device_batch: int) -> float:
    """Activations of one micro-batch with gradient checkpointing: the checkpointed layer inputs
    (2 bytes x hidden per token per layer), one recomputed layer (ACT_BYTES_PER_HIDDEN x hidden
    per token, arXiv 2205.05198) and one tile of fp32 logits (TRL's fused LM head never
    materialises the whole (tokens, vocab) logits: LOGITS_TILE_TOKENS x vocab x 4 bytes)."""
    tokens = seq_tokens * per_device_batch
    ckpt = 2 * facts.hidden_size * facts.num_layers * tokens
    layer = ACT_BYTES_PER_HIDDEN * facts.hidden_size * tokens
    logits = LOGITS_BYTES_PER_VOCAB * facts.vocab_size * min(tokens, LOGITS_TILE_TOKENS)
    return (ckpt + layer + logits) / GIB


EXPERT_FUSED = ("gate_proj", "up_proj")  # transformers 5 stores them as one fused experts.gate_up_proj


def lora_trainable_params(facts: ModelFacts, rank: int, targets: list[str] | tuple[str, ...]) -> int:
    """LoRA adapter parameters as peft 0.21 builds them on this model.

    Dense layers, attention and shared experts: ``paramcount.lora_params`` (rank x (in + out) per
    targeted linear). Routed experts are fused 3-D parameters in transformers 5
    (``mlp.experts.gate_up_proj`` (E, 2i, h), ``mlp.experts.down_proj`` (E, h, i)), which
    jobs/train_config.lora_config always targets with ``target_parameters``; peft wraps each with
    one adapter per expert, and when ``gate_proj`` and ``up_proj`` are both in ``targets`` it gives
    the fused ``gate_up_proj`` rank 2r (peft ``utils/transformers_weight_conversion.py``,
    ``_convert_peft_config_moe``: ``rank_pattern`` r x 2 for the two fused matrices). So per MoE
    layer: E x (r_gu x (h + 2i) + r x (i + h)). tests/integration/test_moe_lora.py checks the
    count against peft's own model."""
    wanted = set(targets)
    n = lora_params(facts, rank, sorted(wanted))
    h, i, e = facts.hidden_size, facts.moe_intermediate_size, facts.num_experts
    if e <= 0:
        return n
    rank_gu = 2 * rank if set(EXPERT_FUSED) <= wanted else rank
    for layer in range(facts.num_layers):
        if not is_moe_layer(facts, layer):
            continue
        # lora_params counted the routed experts as separate gate/up/down linears; replace that
        n -= e * rank * (h + i) * sum(1 for name in ("gate_proj", "up_proj", "down_proj") if name in wanted)
        n += e * (rank_gu * (h + 2 * i) + rank * (i + h))
    return n


@dataclasses.dataclass(frozen=True)
class TrainMemory:
    """Per-GPU training memory by part (GiB): what ``train_memory_gb`` adds up."""

    weights_gb: float  # the model's parameters as stored (fp32 under DDP full FT; bf16 otherwise; LoRA: base + adapters)
    grads_gb: float
    optimizer_gb: float  # AdamW moments (+ DeepSpeed's fp32 master partition)
    autocast_gb: float  # bf16 copies of fp32 weights cached by autocast (DDP full FT only)
    reference_gb: float  # TRL's reference model (beta > 0, full fine-tuning)
    activations_gb: float

    @property
    def states_gb(self) -> float:
        return self.weights_gb + self.grads_gb + self.optimizer_gb + self.autocast_gb

    @property
    def total_gb(self) -> float:
        return self.states_gb + self.reference_gb + self.activations_gb

    def describe(self) -> str:
        """``states 9.5 + reference 1.1 + activations 3.2`` (the plan's reasons print it)."""
        ref = f" + reference {self.reference_gb:.1f}" if self.reference_gb else ""
        return f"states {self.states_gb:.1f}{ref} + activations {self.activations_gb:.1f}"


def reference_model_gb(facts: ModelFacts, *, finetune: Finetune, zero_stage: int, num_gpus: int, beta: float) -> float:
    """Per-GPU memory of TRL's reference model (TRL 1.16 ``GRPOTrainer.__init__``): none when
    ``beta == 0`` (``ref_model = None``) or with LoRA (peft: the reference log-probs come from
    the same model with the adapters disabled, ``ref_model = None``); otherwise a second full
    model in bf16 (REF_BYTES), prepared with DeepSpeed at stage 0 under ZeRO 1/2 (a full copy on
    every GPU, ``trl/models/utils.py`` ``prepare_deepspeed``), sharded over the GPUs under ZeRO-3,
    and one full copy per process under DDP (``accelerator.prepare_model(evaluation_mode=True)``)."""
    if beta <= 0 or Finetune(finetune) is Finetune.lora:
        return 0.0
    shard = num_gpus if zero_stage >= 3 else 1
    return _count(facts).total * REF_BYTES / shard / GIB


def train_memory(
    facts: ModelFacts, *, finetune: Finetune, zero_stage: int, num_gpus: int, seq_tokens: int,
    per_device_batch: int, lora_rank: int, lora_targets: list[str], beta: float = 0.0,
) -> TrainMemory:
    """Per-GPU training memory by part (see DDP_MASTER_BYTES .. REF_BYTES above).

    Full fine-tuning, ZeRO-0 (DDP): fp32 weights + fp32 grads + fp32 AdamW moments + autocast's
    bf16 copy = 18 B/param. ZeRO 1-3 (DeepSpeed bf16): bf16 weights (sharded at 3), bf16 grads
    (sharded from 2), fp32 master + moments (sharded from 1) = 2 + 2 + 12 B (paramcount.memory_gb).
    LoRA: the frozen bf16 base (sharded at 3) + adapters (lora_trainable_params) at 16 B/param
    (fp32 under DDP: peft's autocast_adapter_dtype; DeepSpeed's bf16 + fp32 partitions otherwise).
    Plus the reference model (reference_model_gb) and activations (activation_gb)."""
    ft = Finetune(finetune)
    key = ("train_memory", _facts_key(facts), ft.value, zero_stage, num_gpus, seq_tokens, per_device_batch,
           lora_rank, tuple(lora_targets), float(beta))
    if key in _MEMO:
        return _MEMO[key]
    total = _count(facts).total
    n = max(1, num_gpus)
    shard_w = n if zero_stage >= 3 else 1
    shard_g = n if zero_stage >= 2 else 1
    shard_o = n if zero_stage >= 1 else 1
    if ft is Finetune.lora:
        trainable = lora_trainable_params(facts, lora_rank, list(lora_targets))
        weights = total * WEIGHT_BYTES / shard_w
        if zero_stage == 0:
            weights += trainable * DDP_MASTER_BYTES
            grads, optim = trainable * DDP_GRAD_BYTES, trainable * DDP_ADAM_BYTES
        else:
            weights += trainable * WEIGHT_BYTES / shard_w
            grads, optim = trainable * GRAD_BYTES / shard_g, trainable * OPTIMIZER_BYTES / shard_o
        autocast = 0.0
    elif zero_stage == 0:
        weights, grads, optim = total * DDP_MASTER_BYTES, total * DDP_GRAD_BYTES, total * DDP_ADAM_BYTES
        autocast = total * AUTOCAST_COPY_BYTES
    else:
        weights = total * WEIGHT_BYTES / shard_w
        grads, optim, autocast = total * GRAD_BYTES / shard_g, total * OPTIMIZER_BYTES / shard_o, 0.0
    out = TrainMemory(
        weights_gb=weights / GIB, grads_gb=grads / GIB, optimizer_gb=optim / GIB, autocast_gb=autocast / GIB,
        reference_gb=reference_model_gb(facts, finetune=ft, zero_stage=zero_stage, num_gpus=n, beta=beta),
        activations_gb=activation_gb(facts, seq_tokens=seq_tokens, per_device_batch=per_device_batch),
    )
    if len(_MEMO) > 4096:
        _MEMO.clear()
    _MEMO[key] = out
    return out


def train_memory_gb(
    facts: ModelFacts, *, finetune: Finetune, zero_stage: int, num_gpus: int, seq_tokens: int,
    per_device_batch: int, lora_rank: int, lora_targets: list[str], beta: float = 0.0,
) -> float:
    """Per-GPU training memory (train_memory(...).total_gb): model states in the precision each
    stage keeps + TRL's reference model when beta > 0 + activations."""
    return train_memory(facts, finetune=finetune, zero_stage=zero_stage, num_gpus=num_gpus, seq_tokens=seq_tokens,
                        per_device_batch=per_device_batch, lora_rank=lora_rank, lora_targets=lora_targets,
                        beta=beta).total_gb


# ------------------------------------------------------------------------ cost rules
def forward_flops_per_token(facts: ModelFacts, context: float) -> float:
    """Forward FLOPs per token: 2 x active weights touched by the token (embedding lookup free,
    output head counted) + attention scores and values over ``context`` earlier tokens
    (4 x layers x heads x head_dim x context)."""
    pc: ParamCount = _count(facts)
    head = facts.vocab_size * facts.hidden_size
    matmul = 2 * (pc.active - pc.embedding + head)
    attn = 4 * facts.num_layers * facts.num_heads * (facts.head_dim or facts.hidden_size // facts.num_heads) * context
    return matmul + attn


def _throughput(profile: ClusterProfile, gpus: int, utilisation: float) -> float:
    """Effective FLOP/s of ``gpus`` GPUs, or of the node's CPU cores on a CPU profile."""
    if profile.gpus_per_node <= 0:
        return profile.cpus_per_node * CPU_GFLOPS_PER_CORE * 1e9
    return gpus * profile.gpu_tflops * 1e12 * utilisation


def train_hours(
    facts: ModelFacts, profile: ClusterProfile, *, gen_gpus: int, train_gpus: int, prompts: int,
    generations: int, rollout_limit: int, prompt_tokens: int, max_steps: int, beta: float,
    gen_utilisation: float = GEN_UTILISATION,
) -> float:
    """Estimated training wall time: per step, generate prompts x N rollouts of mean length
    MEAN_ROLLOUT_FRAC x L_R (decode at GEN_UTILISATION), then forward+backward with gradient
    checkpointing (4 forwards) plus the reference forward when beta > 0, at TRAIN_UTILISATION."""
    completion = MEAN_ROLLOUT_FRAC * rollout_limit
    tokens = prompts * generations * (completion + prompt_tokens)
    f = forward_flops_per_token(facts, context=prompt_tokens + completion / 2)
    gen_s = prompts * generations * completion * f / _throughput(profile, gen_gpus, gen_utilisation)
    passes = 4 + (1 if beta > 0 else 0)
    train_s = tokens * f * passes / _throughput(profile, train_gpus, TRAIN_UTILISATION)
    return max_steps * (gen_s + train_s) / 3600


def generation_hours(facts: ModelFacts, profile: ClusterProfile, *, gpus: int, sequences: float,
                     max_tokens: int, mean_frac: float, prompt_tokens: int = 256) -> float:
    """Estimated wall time to sample ``sequences`` responses of mean length mean_frac x max_tokens."""
    completion = mean_frac * max_tokens
    f = forward_flops_per_token(facts, context=prompt_tokens + completion / 2)
    return sequences * completion * f / _throughput(profile, gpus, GEN_UTILISATION) / 3600


def time_limit_min(hours: float, profile: ClusterProfile) -> int:
    """Job time limit: estimate x TIME_SAFETY + STARTUP_MIN, rounded up to 10 minutes, at least
    MIN_TIME_MIN and at most the partition's max_time_min (training requeues past it)."""
    minutes = hours * 60 * TIME_SAFETY + STARTUP_MIN
    minutes = max(MIN_TIME_MIN, int(math.ceil(minutes / 10.0)) * 10)
    return min(minutes, profile.max_time_min)


def gpu_counts(profile: ClusterProfile) -> list[int]:
    """GPU counts a job may request: 1, 2, 4 ... up to a node, then whole nodes up to max_nodes."""
    g = profile.gpus_per_node
    out = [c for c in (1, 2, 4, 8, 16) if c < g]
    return out + [g * n for n in range(1, profile.max_nodes + 1)]


def job_resources(profile: ClusterProfile, *, gpus: int, tensor_parallel: int = 1, data_parallel: int = 1,
                  timeout_min: int = 60) -> dict[str, int]:
    """submitit's generic resources for a job of ``gpus`` GPUs: whole nodes above one node, and
    the node's CPUs and host memory in proportion to the GPUs taken. CPU profile: one node, all
    its cores and memory, or ``cpus_per_job`` cores and that share of the memory when the
    profile sets it (rule:cpu_jobs: the local launcher then runs cpus_per_node // cpus_per_job
    jobs at once, each with that many torch threads; on 2 cores two 1-thread jobs of a tiny
    model do ~1.6x the work of one 2-thread job, measured in docs/tiny-ladder.md)."""
    gpn = profile.gpus_per_node
    if gpn <= 0:
        cores = profile.cpus_per_job or profile.cpus_per_node
        mem = max(1, int(profile.mem_per_node_gb * cores / profile.cpus_per_node))
        return dict(nodes=1, gpus_per_node=0, tasks_per_node=1, cpus_per_task=cores,
                    mem_gb=mem, timeout_min=timeout_min, tensor_parallel=1, data_parallel=1)
    nodes = max(1, math.ceil(gpus / gpn))
    per_node = min(gpus, gpn)
    share = per_node / gpn
    return dict(nodes=nodes, gpus_per_node=per_node, tasks_per_node=1,
                cpus_per_task=max(1, int(profile.cpus_per_node * share)),
                mem_gb=max(1, int(profile.mem_per_node_gb * share)), timeout_min=timeout_min,
                tensor_parallel=tensor_parallel, data_parallel=data_parallel)


# ---------------------------------------------------------------- the training layout
@dataclasses.dataclass(frozen=True)
class TrainLayout:
    """How a training job runs on the profile (rule:train_layout)."""

    finetune: Finetune
    zero_stage: int
    vllm_mode: VllmMode
    gpus: int  # all GPUs of the job (server mode: includes the vLLM server's)
    rollout_tp: int
    per_device_batch: int
    mem_per_gpu_gb: float
    hours: float
    reason: str
    ref_gb: float = 0.0  # of mem_per_gpu_gb: TRL's reference model (train_memory's reference_gb)


def train_layout(facts: ModelFacts, profile: ClusterProfile, t: TrainSettings, fixed: dict[str, Any]) -> TrainLayout:
    """Choose fine-tuning mode, ZeRO stage, vLLM mode, GPU count, rollout TP and micro-batch.

    Order of preference (first that fits): full fine-tuning (Art) before LoRA; ZeRO 0, 2, 3
    (least communication first); colocated vLLM (TRL's default, no idle GPUs) before a
    dedicated server, and transformers generation (``none``, slow) only when no engine fits
    beside the training state; the fewest GPUs whose estimated training time is within
    TARGET_TRAIN_HOURS, else the fastest layout within profile.max_nodes. "Fits" means model
    states + activations (+ the colocated engine's VLLM_COLOCATE_MEM_FRAC) <= USABLE_MEM_FRAC of
    a GPU. ``fixed`` holds the values the recipe set (finetune, zero_stage, vllm_mode, gpus,
    tensor_parallel, per_device_batch) and they are respected.
    """
    seq = t.max_prompt_length + t.rollout_limit
    common = dict(prompts=t.prompts_per_step, generations=t.num_generations, rollout_limit=t.rollout_limit,
                  prompt_tokens=t.max_prompt_length // 4, max_steps=t.max_steps, beta=t.beta)
    targets = list(t.lora_targets)
    finetunes = [Finetune(fixed["finetune"])] if fixed.get("finetune") else [Finetune.full, Finetune.lora]
    micro = [fixed["per_device_batch"]] if fixed.get("per_device_batch") else [4, 2, 1]
    # a recipe that fixes both gets its layout, so that plan._check refuses it with the fix
    recipe_lora_zero3 = finetunes == [Finetune.lora] and fixed.get("zero_stage") == 3

    if profile.gpus_per_node <= 0:  # CPU: one process, no vLLM, no ZeRO
        budget = profile.mem_per_node_gb * USABLE_MEM_FRAC
        share = t.prompts_per_step * t.num_generations // t.off_policy_staleness
        for ft in finetunes:
            for mb in micro:
                if share % mb:
                    continue  # the micro-batch must divide the completions of an optimiser step (TRL)
                parts = train_memory(facts, finetune=ft, zero_stage=0, num_gpus=1, seq_tokens=seq,
                                     per_device_batch=mb, lora_rank=t.lora_rank, lora_targets=targets, beta=t.beta)
                mem = parts.total_gb
                if mem <= budget:
                    hours = train_hours(facts, profile, gen_gpus=1, train_gpus=1, **common)
                    return TrainLayout(ft, 0, VllmMode.none, 0, 1, mb, mem, hours,
                                       f"CPU profile: {ft.value} fine-tuning needs {mem:.1f} of {budget:.0f} GB host "
                                       f"memory ({parts.describe()})", parts.reference_gb)
        raise PlanError(f"{facts.size}: training needs more than the {profile.mem_per_node_gb} GB of profile "
                        f"{profile.name}; use a GPU profile (--profile h100_8x80gb) or a smaller model")

    usable = profile.gpu_mem_gb * USABLE_MEM_FRAC
    counts = [fixed["gpus"]] if fixed.get("gpus") else gpu_counts(profile)
    zeros = [fixed["zero_stage"]] if fixed.get("zero_stage") is not None else [0, 2, 3]
    # vLLM colocated (TRL's default) or as a server; transformers generation (none) only as the
    # last resort: the model fits for training but not beside an inference engine
    modes = ([VllmMode(fixed["vllm_mode"])] if fixed.get("vllm_mode")
             else [VllmMode.colocate, VllmMode.server, VllmMode.none])

    def rollout_engine(mode: VllmMode, g: int) -> tuple[int, int, float] | None:
        """(rollout TP, training GPUs, per-GPU training budget) of ``mode`` on ``g`` GPUs."""
        if mode is VllmMode.none:
            return 1, g, usable
        frac = VLLM_COLOCATE_MEM_FRAC if mode is VllmMode.colocate else VLLM_SERVER_MEM_FRAC
        tp = fixed.get("tensor_parallel")
        for min_seqs in (ROLLOUT_MIN_SEQS, 1):  # 1 sequence at L_R is vLLM's minimum
            tp = tp or inference_tp(facts, gpu_mem_gb=profile.gpu_mem_gb, seq_tokens=seq, min_seqs=min_seqs,
                                    mem_frac=frac, max_tp=min(g, profile.gpus_per_node))
        if tp is None:
            return None
        if mode is VllmMode.colocate:
            return (tp, g, usable - profile.gpu_mem_gb * frac) if g % tp == 0 else None
        # server: the smallest valid TP >= the fitting one that leaves a training world dividing the batch
        completions = t.prompts_per_step * t.num_generations // t.off_policy_staleness
        for cand in tp_candidates(facts, min(g, profile.gpus_per_node)):
            if cand >= tp and g - cand >= 1 and (fixed.get("tensor_parallel") is None or cand == tp):
                if completions % (g - cand) == 0:
                    return cand, g - cand, usable
        return None

    def first_fit(ft: Finetune, g: int, mode: VllmMode) -> TrainLayout | None:
        engine = rollout_engine(mode, g)
        if engine is None:
            return None
        tp, train_gpus, budget = engine
        share, rem = divmod(t.prompts_per_step * t.num_generations // t.off_policy_staleness, train_gpus)
        if rem:
            return None  # each training process must get the same number of completions (TRL)
        if Shaping(t.reward.shaping) in GROUP_SHAPINGS and t.prompts_per_step % train_gpus:
            return None  # group-normalised shapings need whole groups per process (plan.whole_groups_problem)
        for z in zeros:
            if ft is Finetune.lora and z == 3 and not recipe_lora_zero3:
                continue  # LoRA + ZeRO-3 is refused by plan._check: never a candidate the search proposes
            for mb in micro:
                if share % mb:
                    continue
                parts = train_memory(facts, finetune=ft, zero_stage=z, num_gpus=train_gpus, seq_tokens=seq,
                                     per_device_batch=mb, lora_rank=t.lora_rank, lora_targets=targets, beta=t.beta)
                mem = parts.total_gb
                if mem <= budget:
                    gen_gpus = tp if mode is VllmMode.server else g
                    util = GEN_UTILISATION_TRANSFORMERS if mode is VllmMode.none else GEN_UTILISATION
                    hours = train_hours(facts, profile, gen_gpus=gen_gpus, train_gpus=train_gpus,
                                        gen_utilisation=util, **common)
                    reason = (f"{ft.value} fine-tuning, ZeRO-{z}, {mb} seq/GPU: {mem:.1f} of {budget:.1f} GB per GPU "
                              f"({parts.describe()}) on {g} GPU(s); vLLM {mode.value} TP {tp}; est. {hours:.1f} h")
                    if parts.reference_gb:
                        ref = "a full copy per GPU" if z < 3 else f"sharded over {train_gpus} GPUs"
                        reason += f"; beta {t.beta:g}: TRL's reference model in bf16, {ref}"
                    return TrainLayout(ft, z, mode, g, tp, mb, mem, hours, reason, parts.reference_gb)
        return None

    for ft in finetunes:
        best: TrainLayout | None = None
        for g in counts:
            for mode in modes:
                cand = first_fit(ft, g, mode)
                if cand is None:
                    continue
                if cand.hours <= TARGET_TRAIN_HOURS:
                    return cand
                if best is None or cand.hours < best.hours:
                    best = cand  # over the target: the fastest layout the profile allows
                break  # colocate fits: do not also try a server at this GPU count
        if best is not None:
            return dataclasses.replace(best, reason=best.reason + f" (over the {TARGET_TRAIN_HOURS:.0f} h target: "
                                       "the fastest layout the profile allows; requeues past the time limit)")
    most = max(counts)
    full = train_memory(facts, finetune=Finetune.full, zero_stage=3, num_gpus=most, seq_tokens=seq,
                        per_device_batch=1, lora_rank=t.lora_rank, lora_targets=targets, beta=t.beta)
    lora = train_memory_gb(facts, finetune=Finetune.lora, zero_stage=2, num_gpus=most, seq_tokens=seq,
                           per_device_batch=1, lora_rank=t.lora_rank, lora_targets=targets, beta=t.beta)
    raise PlanError(f"{facts.size}: training does not fit profile {profile.name} ({profile.gpus_per_node}x"
                    f"{profile.gpu_mem_gb:g} GB, max_nodes {profile.max_nodes}): at best {full.total_gb:.1f} GB per GPU "
                    f"(full, ZeRO-3 over {most} GPUs: {full.describe()}) or {lora:.1f} GB (LoRA, ZeRO-2) against "
                    f"{usable:.1f} GB usable with {1 - USABLE_MEM_FRAC:.0%} headroom; use a profile with more GPU "
                    "memory or nodes, lower train.rollout_limit, or set train.beta: 0 (no reference model)")


# ------------------------------------------------------------- generation and SFT layouts
def generation_layout(facts: ModelFacts, profile: ClusterProfile, *, seq: int, sequences: float, max_tokens: int,
                      mean_frac: float, fill_node: bool = False, tensor_parallel: int | None = None,
                      data_parallel: int | None = None) -> tuple[int, int, float]:
    """(tensor_parallel, data_parallel, hours) of a generation job (evaluation, curation).

    TP: rule:eval_tp (smallest TP holding weights + EVAL_MIN_SEQS sequences in vLLM's 90%).
    DP: replicas of the engine; the fewest (powers of two, within a node) that bring the estimate
    under TARGET_EVAL_FRAC of the time limit, or the whole node when ``fill_node``. A
    ``tensor_parallel`` / ``data_parallel`` the recipe fixed is kept."""
    if profile.gpus_per_node <= 0:
        hours = generation_hours(facts, profile, gpus=1, sequences=sequences, max_tokens=max_tokens, mean_frac=mean_frac)
        return 1, 1, hours
    tp = tensor_parallel
    for min_seqs in (EVAL_MIN_SEQS, 1):  # 1 sequence at the budget is vLLM's minimum (slower, still correct)
        tp = tp or inference_tp(facts, gpu_mem_gb=profile.gpu_mem_gb, seq_tokens=seq, min_seqs=min_seqs,
                                mem_frac=VLLM_SERVER_MEM_FRAC, max_tp=profile.gpus_per_node)
    if tp is None:
        raise PlanError(f"{facts.size}: the model and the KV cache of one sequence of {seq} tokens do "
                        f"not fit {profile.gpus_per_node}x{profile.gpu_mem_gb:g} GB even at the largest TP; use a "
                        "profile with more GPU memory or lower eval.budgets")
    max_dp = max(1, profile.gpus_per_node // tp)
    if data_parallel:
        dp = data_parallel
    elif fill_node:
        dp = max_dp
    else:
        dp = 1
        while dp < max_dp:
            h = generation_hours(facts, profile, gpus=tp * dp, sequences=sequences, max_tokens=max_tokens,
                                 mean_frac=mean_frac)
            if h * 60 * TIME_SAFETY <= profile.max_time_min * TARGET_EVAL_FRAC:
                break
            dp *= 2
    hours = generation_hours(facts, profile, gpus=tp * dp, sequences=sequences, max_tokens=max_tokens,
                             mean_frac=mean_frac)
    return tp, dp, hours


def sft_layout(facts: ModelFacts, profile: ClusterProfile, sft: SftSettings, tokens: float, *, gpus: int | None,
               lora_rank: int, lora_targets: list[str]) -> tuple[int, int, float, str]:
    """(gpus, zero_stage, hours, reason) of the SFT job over ``tokens`` tokens: the fewest GPUs
    (``gpus`` when the recipe fixed them) whose ZeRO 0/2/3 full fine-tuning state fits and whose
    estimate is within TARGET_TRAIN_HOURS (6 x active FLOPs/token)."""
    f = forward_flops_per_token(facts, context=sft.max_length / 2)
    counts = [gpus] if gpus else gpu_counts(profile)
    if profile.gpus_per_node <= 0:  # one process of cpus_per_job cores, no checkpointing: 3 passes
        cores = profile.cpus_per_job or profile.cpus_per_node
        hours = tokens * f * 3 / (cores * CPU_SFT_GFLOPS_PER_CORE * 1e9) / 3600
        return 0, 0, hours, "CPU profile"
    budget = profile.gpu_mem_gb * USABLE_MEM_FRAC
    chosen = None
    for g in counts:
        for z in (0, 2, 3):
            mem = train_memory_gb(facts, finetune=Finetune.full, zero_stage=z, num_gpus=g, seq_tokens=sft.max_length,
                                  per_device_batch=1, lora_rank=lora_rank, lora_targets=list(lora_targets))
            if mem <= budget:
                hours = tokens * f * 4 / _throughput(profile, g, TRAIN_UTILISATION) / 3600
                chosen = (g, z, hours, f"full SFT, ZeRO-{z}: {mem:.1f} of {budget:.1f} GB per GPU on {g} GPU(s); "
                          f"est. {hours:.1f} h")
                if hours <= TARGET_TRAIN_HOURS:
                    return chosen
                break
    if chosen is None:
        raise PlanError(f"{facts.size}: SFT does not fit profile {profile.name}; use a profile with more GPU memory")
    return chosen


# ------------------------------------------------------------------ stop lead time (issue 22, finding 6)
# How long before the kill Slurm's warning signal must come (``--signal=USR2@<lead>``) so that the
# workers can finish the step they are in, write the checkpoint and exit before the time limit.
CHECKPOINT_WRITE_GBPS = 1.0  # labelled default: sustained write of one node to the shared file system, GB/s (one Lustre/GPFS client writes ~1-3 GB/s; the low end, not measured here)
CKPT_BYTES_FULL_ZERO = 14  # bytes/param of a DeepSpeed ZeRO checkpoint: bf16 weights 2 (rank 0) + fp32 master 4 + AdamW m, v 8 (sharded over every rank); 14b -> ~207 GB
CKPT_BYTES_FULL_DDP = 12  # bytes/param under DDP (ZeRO-0), all written by rank 0: fp32 weights 4 + AdamW m, v 8
CKPT_BYTES_LORA = 12  # bytes/adapter param: fp32 adapter 4 + AdamW m, v 8 (the frozen base is not saved)
STOP_MARGIN_S = 60  # labelled default: the stop's own overhead (signal forward, barrier, exit, scontrol requeue)
STOP_LEAD_MIN_S = 300  # labelled default: never less than the fixed lead used before this rule
STOP_LEAD_MAX_FRAC = 0.5  # labelled default: at most half the time limit (a longer lead leaves no time to train)
SLURM_SIGNAL_MAX_S = 65535  # Slurm's --signal accepts sig_time up to 0xffff seconds (sbatch(1))


def checkpoint_write_s(facts: ModelFacts, *, finetune: Finetune, zero_stage: int, nodes: int, lora_rank: int = 0,
                       lora_targets: list[str] | tuple[str, ...] = ()) -> tuple[float, float]:
    """(checkpoint GB, seconds to write it) of one training checkpoint. Under ZeRO every rank
    writes its shard of the optimizer states (the nodes write in parallel) and rank 0 the bf16
    weights; under DDP and LoRA rank 0 writes everything; each node at CHECKPOINT_WRITE_GBPS."""
    n = _count(facts).total
    if Finetune(finetune) is Finetune.lora:
        rank0, sharded = CKPT_BYTES_LORA * lora_trainable_params(facts, lora_rank, list(lora_targets)), 0.0
    elif zero_stage <= 0:
        rank0, sharded = CKPT_BYTES_FULL_DDP * n, 0.0
    else:
        rank0, sharded = 2.0 * n, (CKPT_BYTES_FULL_ZERO - 2) * n
    node0_bytes = rank0 + sharded / max(1, nodes)
    return (rank0 + sharded) / 1e9, node0_bytes / (CHECKPOINT_WRITE_GBPS * 1e9)


def stop_lead_s(facts: ModelFacts, *, finetune: Finetune, zero_stage: int, nodes: int, hours: float, max_steps: int,
                staleness: int, timeout_min: int, lora_rank: int = 0,
                lora_targets: list[str] | tuple[str, ...] = ()) -> tuple[int, str]:
    """(seconds, reason) of the warning's lead (rule:stop_lead): the longest step (the one that
    generates the rollouts of ``staleness`` optimiser steps: the mean step ``hours / max_steps``
    x staleness) + the checkpoint's write (``checkpoint_write_s``) + STOP_MARGIN_S, rounded up to a
    minute; at least STOP_LEAD_MIN_S, at most STOP_LEAD_MAX_FRAC of the time limit and Slurm's maximum.
    The stop waits for the end of the current step, then saves: so the sum, not the larger."""
    step_s = hours * 3600.0 / max(1, max_steps) * max(1, staleness)
    gb, write_s = checkpoint_write_s(facts, finetune=finetune, zero_stage=zero_stage, nodes=nodes,
                                     lora_rank=lora_rank, lora_targets=lora_targets)
    want = int(math.ceil((step_s + write_s + STOP_MARGIN_S) / 60.0)) * 60
    cap = min(SLURM_SIGNAL_MAX_S, int(timeout_min * 60 * STOP_LEAD_MAX_FRAC))
    lead = max(STOP_LEAD_MIN_S, min(want, cap))
    reason = (f"step {step_s:.0f} s + checkpoint {gb:.0f} GB at {CHECKPOINT_WRITE_GBPS:g} GB/s per node "
              f"({write_s:.0f} s) + {STOP_MARGIN_S} s -> {lead} s"
              + (f" (capped at {cap} s: half the time limit)" if want > cap and cap >= STOP_LEAD_MIN_S else ""))
    return lead, reason
