"""Per-size rules: model facts + cluster profile + method settings -> concrete settings and resources.

What it does
    Every setting a recipe leaves ``null`` is derived here by a small pure function whose
    docstring cites its source: Art (arXiv 2602.20945) where the paper states a value or gives
    advice, otherwise a *labelled default* (a named module constant below, documented in
    docs/recipes.md). ``derive_size_settings(facts, profile, cfg)`` is the single entry point,
    used by ``plan.py`` (every study) and ``derive.py`` (a new family's recipe): no second copy.

How to see it
    ``scaling plan recipes/qwen3-ladder.yaml --explain 8b`` prints each value with
    ``rule:<name>`` and the one-line reason the rule gave.

What the resource rules model (and what they do not)
    Memory per GPU = model states (``facts.memory_gb``: weights, gradients, AdamW states under
    full fine-tuning / LoRA and ZeRO stages) + activations of one micro-batch with gradient
    checkpointing + the logits of one sequence + (colocated vLLM) the rollout engine's share.
    Time = FLOPs / (GPUs x peak x utilisation) with labelled utilisations; generation and
    training are not overlapped. These are planning estimates, within a factor of ~2; a job's
    time limit adds a safety factor, and training is checkpointable (requeues past the limit).

This module imports the standard library only (facts.py and records.py are stdlib too).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import PlanError
from .facts import GIB, ParamCount, count_params, kv_cache_bytes_per_token, memory_gb, resolve_facts
from .records import ClusterProfile, Finetune, ModelFacts, Shaping, VllmMode

# shapings whose reward uses the whole group of a prompt: a process must hold whole groups
GROUP_SHAPINGS = frozenset({Shaping.kimi, Shaping.laser_d, Shaping.tldr})

# ----------------------------------------------------------------- stated values (Art)
ART_LEARNING_RATE = 1e-6  # Art §optimisation: every run, full fine-tuning
ART_LARGEST_PARAMS = 30.6e9  # the largest model Art trained at lr 1e-6: Qwen3-30B-A3B-*-2507, 30.53B total as counted by facts.py (rounded up so that model itself keeps 1e-6)
ART_DEFAULT_ROLLOUT_LIMIT = 8192  # Art advice: L_R = L_T ~ 8k by default
ART_THINKING_ROLLOUT_LIMIT = 16384  # Art: Qwen3-4B-Thinking-2507 trained at 16k/16k (thinking models: raise both)
ART_INSTRUCT_TARGET_FRAC = 0.75  # Art: Qwen3-4B-Instruct-2507 L_T/L_R = 6k/8k ("L_T a bit below L_R")
ART_SMALL_PROMPTS = 128  # Art: 0.6B and 1.7B trained with 128 prompts per batch
ART_LARGE_PROMPTS = 32  # Art: the 4B runs trained with 32 prompts per batch
ART_SMALL_MAX_PARAMS = 3e9  # between Art's 1.7B (128 prompts) and 4B (32 prompts) runs

# ------------------------------------------------------------------- labelled defaults
LORA_LR_MULTIPLIER = 10.0  # labelled default: LoRA's best lr is ~10x full FT ("LoRA Without Regret", Thinking Machines 2025)
TOKEN_ROUNDING = 512  # labelled default: derived token limits are multiples of 512
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
DEFAULT_DATASET_ROWS = 40315  # DeepScaleR-Preview-Dataset rows (curation reads all of them unless max_prompts)
DEFAULT_SFT_ROWS = 10000  # labelled default: SFT traces when the recipe does not cap rows or steps
DEFAULT_BENCHMARK_PROBLEMS = 500  # labelled default: problems of a benchmark not in the table below
# Public sizes of the shipped benchmarks (used for time estimates only)
BENCHMARK_PROBLEMS = {"aime24": 30, "aime25": 30, "amc": 83, "amc23": 40, "math500": 500, "minerva": 272,
                      "olympiadbench": 675, "gpqa_diamond": 198, "gsm8k": 1319}


# ------------------------------------------------------------------- cached fact queries
_MEMO: dict[tuple, Any] = {}


def _facts_key(facts: ModelFacts) -> tuple:
    return tuple(getattr(facts, f.name) for f in dataclasses.fields(facts))


def _count(facts: ModelFacts) -> ParamCount:
    """facts.count_params, memoised (the layout search asks many times for the same model)."""
    key = ("count", _facts_key(facts))
    if key not in _MEMO:
        _MEMO[key] = count_params(facts)
    return _MEMO[key]


def _memory(facts: ModelFacts, **kw: Any) -> Any:
    """facts.memory_gb, memoised on the facts and the arguments."""
    key = ("memory", _facts_key(facts), tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items())))
    if key not in _MEMO:
        if len(_MEMO) > 4096:
            _MEMO.clear()
        _MEMO[key] = memory_gb(facts, **kw)
    return _MEMO[key]


# ------------------------------------------------------------------------ setting rules
def _round_tokens(n: float) -> int:
    return max(TOKEN_ROUNDING, int(n) // TOKEN_ROUNDING * TOKEN_ROUNDING)


def lr_by_size(facts: ModelFacts, finetune: Finetune) -> float:
    """Learning rate. Art (§optimisation) used 1e-6 for every full fine-tuning run from 0.6B to
    30B-A3B, so full FT up to Art's largest model gets 1e-6. Beyond it (not in Art) we scale by
    sqrt(ART_LARGEST_PARAMS / params_total), the usual "larger models need smaller steps" heuristic,
    labelled as ours. LoRA multiplies by LORA_LR_MULTIPLIER (10x, LoRA Without Regret)."""
    total = facts.params_total or _count(facts).total
    lr = ART_LEARNING_RATE * min(1.0, math.sqrt(ART_LARGEST_PARAMS / total))
    if Finetune(finetune) is Finetune.lora:
        lr *= LORA_LR_MULTIPLIER
    return float(f"{lr:.3g}")


def rollout_limit(facts: ModelFacts, *, enable_thinking: bool, max_prompt_length: int) -> int:
    """L_R (max completion tokens while training). Art's advice: L_R = L_T ~ 8k by default and
    higher for thinking models (Art trained Qwen3-4B-Thinking-2507 at 16k). So: thinking-only
    models (``thinking: always``) 16384, everything else 8192; capped so prompt + completion
    fit the model's context (max_position)."""
    lr = ART_THINKING_ROLLOUT_LIMIT if facts.thinking == "always" else ART_DEFAULT_ROLLOUT_LIMIT
    cap = facts.max_position - max_prompt_length
    return min(lr, _round_tokens(cap)) if cap > 0 else lr


def target_length(facts: ModelFacts, *, enable_thinking: bool, limit: int) -> int:
    """L_T. Art: sampling at the target (L_T = L_R) gives the best length/accuracy frontier; for
    instruct (non-thinking) models set L_T a bit below L_R (Art's 4B-Instruct-2507: 6k of 8k), so
    non-thinking responses get L_T = 0.75 x L_R rounded down to a multiple of 512."""
    thinking = facts.thinking == "always" or (facts.thinking == "hybrid" and enable_thinking)
    if thinking:
        return limit
    return _round_tokens(limit * ART_INSTRUCT_TARGET_FRAC)


def prompts_per_step(facts: ModelFacts) -> int:
    """Prompts per rollout batch. Art used 128 for Qwen3-0.6B and 1.7B and 32 for both 4B runs
    (larger models cost more per rollout); we extend the pattern: < 3B total params -> 128,
    otherwise 32 (8B, 14B, 32B and 30B-A3B are not stated by Art: labelled extension)."""
    total = facts.params_total or _count(facts).total
    return ART_SMALL_PROMPTS if total < ART_SMALL_MAX_PARAMS else ART_LARGE_PROMPTS


def mini_batch(prompts: int, staleness: int) -> int:
    """Prompts per optimiser step = prompts_per_step / off_policy_staleness: one optimiser step
    per rollout batch when on-policy (staleness 1, Art's Qwen3 runs); S steps per batch when
    off-policy (Art's staleness S). Refuses a batch S does not divide."""
    if staleness < 1 or prompts % staleness:
        raise PlanError(f"train.off_policy_staleness={staleness} does not divide train.prompts_per_step={prompts}; "
                        "pick a staleness that divides the batch (1 = on-policy)")
    return prompts // staleness


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


def train_memory_gb(
    facts: ModelFacts, *, finetune: Finetune, zero_stage: int, num_gpus: int, seq_tokens: int,
    per_device_batch: int, lora_rank: int, lora_targets: list[str],
) -> float:
    """Per-GPU training memory: model states (facts.memory_gb) + activations (activation_gb)."""
    states = _memory(facts, finetune=Finetune(finetune), zero_stage=zero_stage, num_gpus=num_gpus,
                     lora_rank=lora_rank, lora_targets=list(lora_targets)).total_gb
    return states + activation_gb(facts, seq_tokens=seq_tokens, per_device_batch=per_device_batch)


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


def train_layout(facts: ModelFacts, profile: ClusterProfile, t: Any, fixed: dict[str, Any]) -> TrainLayout:
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

    if profile.gpus_per_node <= 0:  # CPU: one process, no vLLM, no ZeRO
        budget = profile.mem_per_node_gb * USABLE_MEM_FRAC
        share = t.prompts_per_step * t.num_generations // t.off_policy_staleness
        for ft in finetunes:
            for mb in micro:
                if share % mb:
                    continue  # the micro-batch must divide the completions of an optimiser step (TRL)
                mem = train_memory_gb(facts, finetune=ft, zero_stage=0, num_gpus=1, seq_tokens=seq,
                                      per_device_batch=mb, lora_rank=t.lora_rank, lora_targets=targets)
                if mem <= budget:
                    hours = train_hours(facts, profile, gen_gpus=1, train_gpus=1, **common)
                    return TrainLayout(ft, 0, VllmMode.none, 0, 1, mb, mem, hours,
                                       f"CPU profile: {ft.value} fine-tuning needs {mem:.1f} of {budget:.0f} GB host memory")
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
            return None  # group-normalised shapings need whole groups per process (jobs/train.py)
        for z in zeros:
            if ft is Finetune.lora and z == 3:
                continue  # LoRA + ZeRO-3 is refused by plan.py: never a candidate
            for mb in micro:
                if share % mb:
                    continue
                mem = train_memory_gb(facts, finetune=ft, zero_stage=z, num_gpus=train_gpus, seq_tokens=seq,
                                      per_device_batch=mb, lora_rank=t.lora_rank, lora_targets=targets)
                if mem <= budget:
                    gen_gpus = tp if mode is VllmMode.server else g
                    util = GEN_UTILISATION_TRANSFORMERS if mode is VllmMode.none else GEN_UTILISATION
                    hours = train_hours(facts, profile, gen_gpus=gen_gpus, train_gpus=train_gpus,
                                        gen_utilisation=util, **common)
                    reason = (f"{ft.value} fine-tuning, ZeRO-{z}, {mb} seq/GPU: {mem:.1f} of {budget:.1f} GB per GPU "
                              f"on {g} GPU(s); vLLM {mode.value} TP {tp}; est. {hours:.1f} h")
                    return TrainLayout(ft, z, mode, g, tp, mb, mem, hours, reason)
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
    full = train_memory_gb(facts, finetune=Finetune.full, zero_stage=3, num_gpus=most, seq_tokens=seq,
                           per_device_batch=1, lora_rank=t.lora_rank, lora_targets=targets)
    lora = train_memory_gb(facts, finetune=Finetune.lora, zero_stage=2, num_gpus=most, seq_tokens=seq,
                           per_device_batch=1, lora_rank=t.lora_rank, lora_targets=targets)
    raise PlanError(f"{facts.size}: training does not fit profile {profile.name} ({profile.gpus_per_node}x"
                    f"{profile.gpu_mem_gb:g} GB, max_nodes {profile.max_nodes}): at best {full:.1f} GB per GPU "
                    f"(full, ZeRO-3 over {most} GPUs) or {lora:.1f} GB (LoRA, ZeRO-2) against {usable:.1f} GB usable; "
                    "use a profile with more GPU memory or nodes, or lower train.rollout_limit")


# ------------------------------------------------------------------------ entry point
def _get(cfg: Any, dotted: str) -> Any:
    cur = cfg
    for part in dotted.split("."):
        if cur is None:
            return None
        cur = cur.get(part) if isinstance(cur, dict) else getattr(cur, part, None)
    return cur.value if hasattr(cur, "value") and not isinstance(cur, (int, float, str)) else cur


def _typed(cfg: Any) -> Any:
    """Accept a recipe.SizeSettings or a (partial) plain dict of the same shape."""
    from .recipe import SizeSettings, _structured

    if isinstance(cfg, SizeSettings):
        return cfg
    data = {k: v for k, v in (cfg or {}).items() if k in ("train", "curate", "sft", "eval", "resources")}
    return _structured(SizeSettings, data)


def derive_size_settings(facts: ModelFacts, profile: ClusterProfile, method_cfg: Any) -> dict[str, Any]:
    """Every per-size value the recipe left ``null``, derived by the rules above.

    ``method_cfg``: the size's settings (``recipe.SizeSettings`` or a plain dict with ``train``,
    ``curate``, ``sft``, ``eval``, ``resources``); values it sets are kept, ``None`` is derived.
    Returns plain data::

        {"train": {...}, "curate": {...},                 # only the derived keys
         "resources": {"curate"|"sft"|"train"|"eval": {Resources fields}},
         "estimates": {"train_hours", "train_gpu_hours", "eval_hours": {benchmark: h}, ...},
         "provenance": {"train.learning_rate": "rule:lr_by_size", ...},
         "reasons": {"train.finetune": "one line why", ...}}
    """
    facts = resolve_facts(facts) if facts.params_total is None else facts
    s = _typed(method_cfg)
    if s.train.finetune is not None and Finetune(s.train.finetune) is Finetune.lora and s.train.zero_stage == 3:
        raise PlanError(f"{facts.size}: finetune=lora with zero_stage=3 is not supported; set "
                        f"sizes.{facts.size}.train.finetune=full or sizes.{facts.size}.train.zero_stage=2")
    t = dataclasses.replace(s.train, reward=dataclasses.replace(s.train.reward))
    prov: dict[str, str] = {}
    reasons: dict[str, str] = {}
    out: dict[str, Any] = {"train": {}, "curate": {}, "resources": {}, "estimates": {}}

    def put(section: str, key: str, value: Any, rule: str, why: str = "") -> None:
        node = out[section]
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value.value if hasattr(value, "value") else value
        prov[f"{section}.{key}"] = f"rule:{rule}"
        if why:
            reasons[f"{section}.{key}"] = why

    if t.rollout_limit is None:
        t.rollout_limit = rollout_limit(facts, enable_thinking=t.enable_thinking, max_prompt_length=t.max_prompt_length)
        put("train", "rollout_limit", t.rollout_limit, "rollout_limit",
            f"thinking={facts.thinking}: Art advises 8k by default, 16k for thinking-only models")
    if t.reward.target_length is None:
        t.reward.target_length = target_length(facts, enable_thinking=t.enable_thinking, limit=t.rollout_limit)
        why = "L_T = L_R (Art)" if t.reward.target_length == t.rollout_limit else "non-thinking: L_T = 0.75 x L_R (Art 6k/8k)"
        put("train", "reward.target_length", t.reward.target_length, "target_length", why)
    if t.prompts_per_step is None:
        t.prompts_per_step = prompts_per_step(facts)
        put("train", "prompts_per_step", t.prompts_per_step, "prompts_per_step",
            f"{facts.params_total / 1e9:.1f}B total params: Art used 128 below 3B, 32 from 4B")
    if t.mini_batch_prompts is None:
        t.mini_batch_prompts = mini_batch(t.prompts_per_step, t.off_policy_staleness)
        put("train", "mini_batch_prompts", t.mini_batch_prompts, "mini_batch",
            f"prompts_per_step / off_policy_staleness {t.off_policy_staleness}")
    elif t.prompts_per_step % t.mini_batch_prompts:
        raise PlanError(f"{facts.size}: train.mini_batch_prompts={t.mini_batch_prompts} does not divide "
                        f"train.prompts_per_step={t.prompts_per_step}; pick a divisor or null (rule)")

    rt = s.resources.train
    fixed = {"finetune": t.finetune, "zero_stage": t.zero_stage, "vllm_mode": t.vllm_mode,
             "per_device_batch": t.per_device_batch, "tensor_parallel": rt.tensor_parallel,
             "gpus": _fixed_gpus(rt, profile)}
    lay = train_layout(facts, profile, t, fixed)
    if t.finetune is None:
        t.finetune = lay.finetune
        put("train", "finetune", lay.finetune, "finetune", lay.reason)
    if t.zero_stage is None:
        put("train", "zero_stage", lay.zero_stage, "zero_stage", lay.reason)
    if t.vllm_mode is None:
        put("train", "vllm_mode", lay.vllm_mode, "vllm_mode", lay.reason)
    if t.per_device_batch is None:
        put("train", "per_device_batch", lay.per_device_batch, "per_device_batch", lay.reason)
    if t.learning_rate is None:
        put("train", "learning_rate", lr_by_size(facts, t.finetune), "lr_by_size",
            "Art: 1e-6 for full fine-tuning up to 30.5B" + (" x10 for LoRA" if t.finetune is Finetune.lora else ""))
    limit = time_limit_min(lay.hours, profile)
    res = job_resources(profile, gpus=lay.gpus, tensor_parallel=lay.rollout_tp, timeout_min=limit)
    _resources(out, prov, reasons, "train", res, rt, "train_layout", lay.reason)
    est = out["estimates"]
    if not profile.requeue:
        _warn_if_over(est, "train", lay.hours, profile, "the profile does not requeue: lower train.max_steps or "
                      "use a larger profile")
    est.update(train_hours=lay.hours, train_gpu_hours=lay.hours * max(lay.gpus, 0),
               train_mem_per_gpu_gb=lay.mem_per_gpu_gb, train_requeues=max(0, math.ceil(lay.hours * 60 / limit) - 1))

    # ---- evaluation: one array task per benchmark
    ev = s.eval
    max_budget = max(ev.budgets) if ev.budgets else t.rollout_limit
    est["eval_hours"] = {}
    if ev.benchmarks and ev.checkpoints:
        problems = {b: _problems(b, ev.max_problems) for b in ev.benchmarks}
        heaviest = max(problems.values())
        tp, dp, hours = _generation_layout(facts, profile, s.resources.eval, seq=max_budget + 1024,
                                           sequences=heaviest * ev.samples_per_problem, max_tokens=max_budget,
                                           mean_frac=EVAL_MEAN_FRAC)
        for b, n in problems.items():
            est["eval_hours"][b] = hours * n / heaviest
        _warn_if_over(est, "eval", hours, profile, "set eval.max_problems, lower eval.budgets or use a larger profile")
        res = job_resources(profile, gpus=tp * dp, tensor_parallel=tp, data_parallel=dp,
                            timeout_min=time_limit_min(hours, profile))
        why = (f"TP {tp} holds the weights + {EVAL_MIN_SEQS} sequences of {max_budget} tokens in "
               f"{VLLM_SERVER_MEM_FRAC:.0%} of a GPU; {dp} replica(s) keep the largest benchmark "
               f"({heaviest} problems x {ev.samples_per_problem}) within the time limit")
        if profile.gpus_per_node <= 0:
            why = f"CPU profile: one local process with the node's {profile.cpus_per_node} cores; est. {hours:.2f} h"
        _resources(out, prov, reasons, "eval", res, s.resources.eval, "eval_layout", why)

    # ---- curation: pass rate of the model over train.dataset
    c = s.curate
    if c.max_tokens is None:
        put("curate", "max_tokens", t.rollout_limit, "curate_max_tokens", "a prompt is easy if solved within L_R")
    if c.enabled:
        rows = c.max_prompts or t.dataset.max_rows or DEFAULT_DATASET_ROWS
        tp, dp, hours = _generation_layout(facts, profile, s.resources.curate, seq=t.rollout_limit + t.max_prompt_length,
                                           sequences=rows * c.samples, max_tokens=c.max_tokens or t.rollout_limit,
                                           mean_frac=MEAN_ROLLOUT_FRAC, fill_node=True)
        est["curate_hours"] = hours
        _warn_if_over(est, "curate", hours, profile, "set curate.max_prompts or use a larger profile")
        res = job_resources(profile, gpus=tp * dp, tensor_parallel=tp, data_parallel=dp,
                            timeout_min=time_limit_min(hours, profile))
        _resources(out, prov, reasons, "curate", res, s.resources.curate, "curate_layout",
                   f"{rows} prompts x {c.samples} samples; TP {tp} x {dp} replicas")

    # ---- SFT
    if s.sft.enabled:
        sft = s.sft
        rows = sft.dataset.max_rows or DEFAULT_SFT_ROWS
        tokens = (sft.max_steps * sft.batch_size if sft.max_steps > 0 else rows * sft.epochs) * sft.max_length * 0.5
        g_layout = _sft_layout(facts, profile, sft, s.resources.sft, tokens, t)
        g, z, hours, why = g_layout
        est["sft_hours"] = hours
        res = job_resources(profile, gpus=g, timeout_min=time_limit_min(hours, profile))
        _resources(out, prov, reasons, "sft", res, s.resources.sft, "sft_layout", why)

    if profile.gpus_per_node <= 0:  # CPU: a small job's time is mostly its start (imports, model load)
        start_h = CPU_JOB_STARTUP_S / 3600
        for key in ("sft_hours", "train_hours", "curate_hours"):
            if key in est:
                est[key] += start_h
        est["eval_hours"] = {b: h + start_h for b, h in est["eval_hours"].items()}  # one process per benchmark
    out["provenance"] = prov
    out["reasons"] = reasons
    return out


def _warn_if_over(est: dict[str, Any], stage: str, hours: float, profile: ClusterProfile, fix: str) -> None:
    """A job that cannot requeue (curation, evaluation) and whose padded estimate exceeds the
    partition's time limit gets a warning in the plan (it would be killed and rerun by resume)."""
    if hours * 60 * TIME_SAFETY + STARTUP_MIN > profile.max_time_min:
        est.setdefault("warnings", {})[stage] = (
            f"{stage}: estimated {hours:.1f} h (x{TIME_SAFETY} safety) exceeds the {profile.max_time_min / 60:.0f} h "
            f"limit of profile {profile.name}; {fix}")


def _fixed_gpus(given: Any, profile: ClusterProfile) -> int | None:
    """GPUs of a job whose recipe fixed nodes and/or gpus_per_node (None: the rules choose)."""
    if given.gpus_per_node is None and given.nodes is None:
        return None
    per_node = profile.gpus_per_node if given.gpus_per_node is None else given.gpus_per_node
    return (given.nodes or 1) * per_node


def _problems(benchmark: str, cap: int | None) -> int:
    n = BENCHMARK_PROBLEMS.get(benchmark, DEFAULT_BENCHMARK_PROBLEMS)
    return min(n, cap) if cap else n


def _resources(out: dict, prov: dict, reasons: dict, stage: str, derived: dict[str, int], given: Any,
               rule: str, why: str) -> None:
    """Merge derived resources with the recipe's per-stage overrides (given values win)."""
    res = {}
    for key, value in derived.items():
        mine = getattr(given, key, None)
        res[key] = mine if mine is not None else value
        if mine is None:
            prov[f"resources.{stage}.{key}"] = f"rule:{rule}"
    reasons[f"resources.{stage}"] = why
    out["resources"][stage] = res


def _generation_layout(facts: ModelFacts, profile: ClusterProfile, given: Any, *, seq: int, sequences: float,
                       max_tokens: int, mean_frac: float, fill_node: bool = False) -> tuple[int, int, float]:
    """(tensor_parallel, data_parallel, hours) of a generation job (evaluation, curation).

    TP: rule:eval_tp (smallest TP holding weights + EVAL_MIN_SEQS sequences in vLLM's 90%).
    DP: replicas of the engine; the fewest (powers of two, within a node) that bring the estimate
    under TARGET_EVAL_FRAC of the time limit, or the whole node when ``fill_node``."""
    if profile.gpus_per_node <= 0:
        hours = generation_hours(facts, profile, gpus=1, sequences=sequences, max_tokens=max_tokens, mean_frac=mean_frac)
        return 1, 1, hours
    tp = given.tensor_parallel
    for min_seqs in (EVAL_MIN_SEQS, 1):  # 1 sequence at the budget is vLLM's minimum (slower, still correct)
        tp = tp or inference_tp(facts, gpu_mem_gb=profile.gpu_mem_gb, seq_tokens=seq, min_seqs=min_seqs,
                                mem_frac=VLLM_SERVER_MEM_FRAC, max_tp=profile.gpus_per_node)
    if tp is None:
        raise PlanError(f"{facts.size}: the model and the KV cache of one sequence of {seq} tokens do "
                        f"not fit {profile.gpus_per_node}x{profile.gpu_mem_gb:g} GB even at the largest TP; use a "
                        "profile with more GPU memory or lower eval.budgets")
    max_dp = max(1, profile.gpus_per_node // tp)
    if given.data_parallel:
        dp = given.data_parallel
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


def _sft_layout(facts: ModelFacts, profile: ClusterProfile, sft: Any, given: Any, tokens: float,
                t: Any) -> tuple[int, int, float, str]:
    """(gpus, zero_stage, hours, reason) of the SFT job: the fewest GPUs whose ZeRO 0/2/3 full
    fine-tuning state fits and whose estimate is within TARGET_TRAIN_HOURS (6 x active FLOPs/token)."""
    f = forward_flops_per_token(facts, context=sft.max_length / 2)
    counts = [max(1, (given.nodes or 1) * given.gpus_per_node)] if given.gpus_per_node else gpu_counts(profile)
    if profile.gpus_per_node <= 0:  # one process of cpus_per_job cores, no checkpointing: 3 passes
        cores = profile.cpus_per_job or profile.cpus_per_node
        hours = tokens * f * 3 / (cores * CPU_SFT_GFLOPS_PER_CORE * 1e9) / 3600
        return 0, 0, hours, "CPU profile"
    budget = profile.gpu_mem_gb * USABLE_MEM_FRAC
    chosen = None
    for g in counts:
        for z in (0, 2, 3):
            mem = train_memory_gb(facts, finetune=Finetune.full, zero_stage=z, num_gpus=g, seq_tokens=sft.max_length,
                                  per_device_batch=1, lora_rank=t.lora_rank, lora_targets=list(t.lora_targets))
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
