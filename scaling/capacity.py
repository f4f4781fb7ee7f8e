"""The capacity model: memory, FLOPs and time of a job, and the layout search that fits a job to a profile.

What it models (and what it does not)
    Memory per GPU = model states (``paramcount.memory_gb``: weights, gradients, AdamW states under
    full fine-tuning / LoRA and ZeRO stages) + activations of one micro-batch with gradient
    checkpointing + the logits of one sequence + (colocated vLLM) the rollout engine's share.
    Time = FLOPs / (GPUs x peak x utilisation) with labelled utilisations; generation and
    training are not overlapped. These are planning estimates, within a factor of ~2; a job's
    time limit adds a safety factor, and training is checkpointable (requeues past the limit).
    Every constant below is a labelled default or cites its source; docs/recipes.md section 5
    describes the model.

Public functions
    tp_candidates / inference_tp     tensor-parallel degrees vLLM accepts; the smallest that fits
    activation_gb / train_memory_gb  per-GPU activations; per-GPU training memory
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
from .paramcount import GIB, ParamCount, count_params, kv_cache_bytes_per_token, memory_gb
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


def train_memory_gb(
    facts: ModelFacts, *, finetune: Finetune, zero_stage: int, num_gpus: int, seq_tokens: int,
    per_device_batch: int, lora_rank: int, lora_targets: list[str],
) -> float:
    """Per-GPU training memory: model states (paramcount.memory_gb) + activations (activation_gb)."""
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
            return None  # group-normalised shapings need whole groups per process (plan.whole_groups_problem)
        for z in zeros:
            if ft is Finetune.lora and z == 3 and not recipe_lora_zero3:
                continue  # LoRA + ZeRO-3 is refused by plan._check: never a candidate the search proposes
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
