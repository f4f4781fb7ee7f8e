"""Per-size rules: model facts + cluster profile + method settings -> concrete settings and resources.

What it does
    Every setting a recipe leaves ``null`` is derived here by a small pure function whose
    docstring cites its source: Art (arXiv 2602.20945) where the paper states a value or gives
    advice, otherwise a *labelled default* (a named module constant, documented in
    docs/recipes.md). ``derive_size_settings(facts, profile, cfg)`` is the single entry point,
    used by ``plan.py`` (every study) and ``derive.py`` (a new family's recipe): no second copy.
    The memory / FLOPs / time model and the layout search it uses live in ``capacity.py``; the
    cross-field checks of what a recipe can get wrong live in ``plan._check``.

Public functions
    lr_by_size, rollout_limit, target_length, prompts_per_step, mini_batch   the paper's rules
    vllm_is_mode   TRL's trainer-vs-vLLM importance-sampling correction (labelled default)
    derive_size_settings   facts + profile + settings -> derived settings, resources, estimates

How to see it
    ``scaling plan recipes/qwen3-ladder.yaml --explain 8b`` prints each value with
    ``rule:<name>`` and the one-line reason the rule gave.

This module imports the standard library only (capacity.py, paramcount.py and records.py are stdlib too).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from .capacity import (
    CPU_JOB_STARTUP_S,
    EVAL_MEAN_FRAC,
    EVAL_MIN_SEQS,
    MEAN_ROLLOUT_FRAC,
    STARTUP_MIN,
    TIME_SAFETY,
    VLLM_SERVER_MEM_FRAC,
    generation_layout,
    job_resources,
    sft_layout,
    time_limit_min,
    train_layout,
)
from .errors import PlanError
from .paramcount import count_params, resolve_facts
from .records import (
    ClusterProfile,
    CurateSettings,
    DerivedSettings,
    Estimates,
    EvalSettings,
    Finetune,
    ModelFacts,
    Resources,
    SftSettings,
    TrainSettings,
    from_dict,
)
from .records.convert import type_hints, unwrap_optional

# ----------------------------------------------------------------- stated values (Art)
ART_LEARNING_RATE = 1e-6  # Art §optimisation: every run, full fine-tuning
ART_LARGEST_PARAMS = 30.6e9  # the largest model Art trained at lr 1e-6: Qwen3-30B-A3B-*-2507, 30.53B total as counted by paramcount.py (rounded up so that model itself keeps 1e-6)
ART_DEFAULT_ROLLOUT_LIMIT = 8192  # Art advice: L_R = L_T ~ 8k by default
ART_THINKING_ROLLOUT_LIMIT = 16384  # Art: Qwen3-4B-Thinking-2507 trained at 16k/16k (thinking models: raise both)
ART_INSTRUCT_TARGET_FRAC = 0.75  # Art: Qwen3-4B-Instruct-2507 L_T/L_R = 6k/8k ("L_T a bit below L_R")
ART_SMALL_PROMPTS = 128  # Art: 0.6B and 1.7B trained with 128 prompts per batch
ART_LARGE_PROMPTS = 32  # Art: the 4B runs trained with 32 prompts per batch
ART_SMALL_MAX_PARAMS = 3e9  # between Art's 1.7B (128 prompts) and 4B (32 prompts) runs

# ------------------------------------------------------------------- labelled defaults
LORA_LR_MULTIPLIER = 10.0  # labelled default: LoRA's best lr is ~10x full FT ("LoRA Without Regret", Thinking Machines 2025)
TOKEN_ROUNDING = 512  # labelled default: derived token limits are multiples of 512
DEFAULT_DATASET_ROWS = 40315  # DeepScaleR-Preview-Dataset rows (curation reads all of them unless max_prompts)
DEFAULT_SFT_ROWS = 10000  # labelled default: SFT traces when the recipe does not cap rows or steps
# TRL 1.16's vLLM importance-sampling correction (GRPOConfig.vllm_importance_sampling_mode). Its default,
# "sequence_mask", sums the trainer-vs-vLLM log-ratio over the whole completion and zeroes the loss of
# every completion whose exp(sum) leaves [C_min, C_max] (trl/trainer/grpo_trainer.py, "Compute the
# importance sampling ratio when using vLLM"): the longer a completion, the more per-token mismatch it
# sums, so long completions are dropped more often -- a length filter inside a study of length.
# Labelled default: "token_truncate", truncated importance sampling per token (TIS, Yao et al. 2025,
# "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"): each token's ratio is
# clipped at vllm_is_cap and no completion is dropped, whatever its length.
VLLM_IS_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")  # what TRL 1.16 accepts
VLLM_IS_MODE = "token_truncate"  # labelled default (see above)
DEFAULT_BENCHMARK_PROBLEMS = 500  # labelled default: problems of a benchmark not in the table below
# Public sizes of the shipped benchmarks (used for time estimates only)
BENCHMARK_PROBLEMS = {"aime24": 30, "aime25": 30, "amc": 83, "amc23": 40, "math500": 500, "minerva": 272,
                      "olympiadbench": 675, "gpqa_diamond": 198, "gsm8k": 1319}


# ------------------------------------------------------------------------ setting rules
def _round_tokens(n: float) -> int:
    return max(TOKEN_ROUNDING, int(n) // TOKEN_ROUNDING * TOKEN_ROUNDING)


def lr_by_size(facts: ModelFacts, finetune: Finetune) -> float:
    """Learning rate. Art (§optimisation) used 1e-6 for every full fine-tuning run from 0.6B to
    30B-A3B, so full FT up to Art's largest model gets 1e-6. Beyond it (not in Art) we scale by
    sqrt(ART_LARGEST_PARAMS / params_total), the usual "larger models need smaller steps" heuristic,
    labelled as ours. LoRA multiplies by LORA_LR_MULTIPLIER (10x, LoRA Without Regret)."""
    total = facts.params_total or count_params(facts).total
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
    total = facts.params_total or count_params(facts).total
    return ART_SMALL_PROMPTS if total < ART_SMALL_MAX_PARAMS else ART_LARGE_PROMPTS


def vllm_is_mode() -> str:
    """TRL's vLLM importance-sampling mode: VLLM_IS_MODE ("token_truncate"), not TRL's default
    "sequence_mask", whose whole-completion ratio drops long completions more often than short ones
    (a length filter; see the comment at VLLM_IS_MODES). Labelled default, not a paper's value."""
    return VLLM_IS_MODE


def mini_batch(prompts: int, staleness: int) -> int:
    """Prompts per optimiser step = prompts_per_step / off_policy_staleness: one optimiser step
    per rollout batch when on-policy (staleness 1, Art's Qwen3 runs); S steps per batch when
    off-policy (Art's staleness S). Refuses a batch S does not divide."""
    if staleness < 1 or prompts % staleness:
        raise PlanError(f"train.off_policy_staleness={staleness} does not divide train.prompts_per_step={prompts}; "
                        "pick a staleness that divides the batch (1 = on-policy)")
    return prompts // staleness


# ------------------------------------------------------------------------ entry point
_SECTIONS = {"train": TrainSettings, "curate": CurateSettings, "sft": SftSettings, "eval": EvalSettings}
_STAGES = ("curate", "sft", "train", "eval")


def _typed(cfg: Any) -> tuple[TrainSettings, CurateSettings, SftSettings, EvalSettings, dict[str, dict[str, Any]]]:
    """A size's settings as (train, curate, sft, eval, resource overrides per stage).

    ``cfg`` is a ``recipe.SizeSettings`` (anything with those attributes) or a (partial) plain
    dict of the same shape, whose sections are validated by ``records.from_dict``. The overrides
    are plain ``{stage: {Resources field: value or None}}``."""
    if isinstance(cfg, dict):
        sections = {k: from_dict(cls, cfg.get(k) or {}) for k, cls in _SECTIONS.items()}
        res = cfg.get("resources") or {}
        given = {st: dict(res.get(st) or {}) for st in _STAGES}
    else:
        sections = {k: getattr(cfg, k) for k in _SECTIONS}
        given = {st: {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}
                 for st in _STAGES for r in (getattr(cfg.resources, st),)}
    return sections["train"], sections["curate"], sections["sft"], sections["eval"], given


def derive_size_settings(facts: ModelFacts, profile: ClusterProfile, method_cfg: Any) -> DerivedSettings:
    """Every per-size value the recipe left ``None``, derived by the rules above and the capacity
    model (capacity.py).

    ``method_cfg``: the size's settings (``records.SizeSettings`` or a plain dict with ``train``,
    ``curate``, ``sft``, ``eval``, ``resources``); values it sets are kept, ``None`` is derived.
    Values the recipe set that do not go together (LoRA with ZeRO-3, a mini-batch that does not
    match the batch) are refused by ``plan._check``, not here. Returns a ``records.DerivedSettings``:
    the train and curate settings filled in, the resources of each stage, the estimates, and the
    rule and reason of every derived key.
    """
    facts = resolve_facts(facts) if facts.params_total is None else facts
    train, curate, sft, ev, given = _typed(method_cfg)
    t = dataclasses.replace(train, reward=dataclasses.replace(train.reward))
    c = dataclasses.replace(curate)
    prov: dict[str, str] = {}
    reasons: dict[str, str] = {}
    resources: dict[str, Resources] = {}
    est: dict[str, Any] = {}
    sections = {"train": t, "curate": c}

    def put(section: str, key: str, value: Any, rule: str, why: str = "") -> None:
        *parents, leaf = key.split(".")
        node = sections[section]
        for part in parents:
            node = getattr(node, part)
        tp = unwrap_optional(type_hints(type(node))[leaf])
        setattr(node, leaf, tp(value) if isinstance(tp, type) and issubclass(tp, enum.Enum) else value)
        prov[f"{section}.{key}"] = f"rule:{rule}"
        if why:
            reasons[f"{section}.{key}"] = why

    def place(stage: str, derived: dict[str, int], rule: str, why: str) -> None:
        """Derived resources merged with the recipe's resources.<stage> values (given values win)."""
        mine = given[stage]
        for key in derived:
            if mine.get(key) is None:
                prov[f"resources.{stage}.{key}"] = f"rule:{rule}"
        reasons[f"resources.{stage}"] = why
        resources[stage] = Resources(**{k: v if mine.get(k) is None else mine[k] for k, v in derived.items()})

    if t.rollout_limit is None:
        put("train", "rollout_limit", rollout_limit(facts, enable_thinking=t.enable_thinking,
                                                    max_prompt_length=t.max_prompt_length), "rollout_limit",
            f"thinking={facts.thinking}: Art advises 8k by default, 16k for thinking-only models")
    if t.reward.target_length is None:
        lt = target_length(facts, enable_thinking=t.enable_thinking, limit=t.rollout_limit)
        why = "L_T = L_R (Art)" if lt == t.rollout_limit else "non-thinking: L_T = 0.75 x L_R (Art 6k/8k)"
        put("train", "reward.target_length", lt, "target_length", why)
    if t.prompts_per_step is None:
        put("train", "prompts_per_step", prompts_per_step(facts), "prompts_per_step",
            f"{facts.params_total / 1e9:.1f}B total params: Art used 128 below 3B, 32 from 4B")
    if t.vllm_is_mode is None:
        put("train", "vllm_is_mode", vllm_is_mode(), "vllm_is_mode",
            f"per-token truncated IS, capped at {t.vllm_is_cap:g}: drops no completion for its length "
            "(TRL's default sequence_mask sums the log-ratio over the whole completion)")
    if t.mini_batch_prompts is None:
        put("train", "mini_batch_prompts", mini_batch(t.prompts_per_step, t.off_policy_staleness), "mini_batch",
            f"prompts_per_step / off_policy_staleness {t.off_policy_staleness}")

    rt = given["train"]
    fixed = {"finetune": t.finetune, "zero_stage": t.zero_stage, "vllm_mode": t.vllm_mode,
             "per_device_batch": t.per_device_batch, "tensor_parallel": rt.get("tensor_parallel"),
             "gpus": _fixed_gpus(rt, profile)}
    lay = train_layout(facts, profile, t, fixed)
    if t.finetune is None:
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
    place("train", job_resources(profile, gpus=lay.gpus, tensor_parallel=lay.rollout_tp, timeout_min=limit),
          "train_layout", lay.reason)
    warnings: dict[str, str] = {}
    if not profile.requeue:
        _warn_if_over(warnings, "train", lay.hours, profile, "the profile does not requeue: lower train.max_steps or "
                      "use a larger profile")
    est.update(train_hours=lay.hours, train_gpu_hours=lay.hours * max(lay.gpus, 0),
               train_mem_per_gpu_gb=lay.mem_per_gpu_gb, train_ref_mem_gb=lay.ref_gb, train_requeues=max(0, math.ceil(lay.hours * 60 / limit) - 1))

    # ---- evaluation: one array task per benchmark
    max_budget = max(ev.budgets) if ev.budgets else t.rollout_limit
    est["eval_hours"] = {}
    if ev.benchmarks and ev.checkpoints:
        problems = {b: _problems(b, ev.max_problems) for b in ev.benchmarks}
        heaviest = max(problems.values())
        tp, dp, hours = generation_layout(facts, profile, seq=max_budget + 1024,
                                          sequences=heaviest * ev.samples_per_problem, max_tokens=max_budget,
                                          mean_frac=EVAL_MEAN_FRAC,
                                          tensor_parallel=given["eval"].get("tensor_parallel"),
                                          data_parallel=given["eval"].get("data_parallel"))
        for b, n in problems.items():
            est["eval_hours"][b] = hours * n / heaviest
        _warn_if_over(warnings, "eval", hours, profile, "set eval.max_problems, lower eval.budgets or use a larger profile")
        why = (f"TP {tp} holds the weights + {EVAL_MIN_SEQS} sequences of {max_budget} tokens in "
               f"{VLLM_SERVER_MEM_FRAC:.0%} of a GPU; {dp} replica(s) keep the largest benchmark "
               f"({heaviest} problems x {ev.samples_per_problem}) within the time limit")
        if profile.gpus_per_node <= 0:
            why = f"CPU profile: one local process with the node's {profile.cpus_per_node} cores; est. {hours:.2f} h"
        place("eval", job_resources(profile, gpus=tp * dp, tensor_parallel=tp, data_parallel=dp,
                                    timeout_min=time_limit_min(hours, profile)), "eval_layout", why)

    # ---- curation: pass rate of the model over train.dataset
    if c.max_tokens is None:
        put("curate", "max_tokens", t.rollout_limit, "curate_max_tokens", "a prompt is easy if solved within L_R")
    if c.enabled:
        rows = c.max_prompts or t.dataset.max_rows or DEFAULT_DATASET_ROWS
        tp, dp, hours = generation_layout(facts, profile, seq=t.rollout_limit + t.max_prompt_length,
                                          sequences=rows * c.samples, max_tokens=c.max_tokens or t.rollout_limit,
                                          mean_frac=MEAN_ROLLOUT_FRAC, fill_node=True,
                                          tensor_parallel=given["curate"].get("tensor_parallel"),
                                          data_parallel=given["curate"].get("data_parallel"))
        est["curate_hours"] = hours
        _warn_if_over(warnings, "curate", hours, profile, "set curate.max_prompts or use a larger profile")
        place("curate", job_resources(profile, gpus=tp * dp, tensor_parallel=tp, data_parallel=dp,
                                      timeout_min=time_limit_min(hours, profile)), "curate_layout",
              f"{rows} prompts x {c.samples} samples; TP {tp} x {dp} replicas")

    # ---- SFT
    if sft.enabled:
        rows = sft.dataset.max_rows or DEFAULT_SFT_ROWS
        tokens = (sft.max_steps * sft.batch_size if sft.max_steps > 0 else rows * sft.epochs) * sft.max_length * 0.5
        gs = given["sft"]
        fixed_gpus = max(1, (gs.get("nodes") or 1) * gs["gpus_per_node"]) if gs.get("gpus_per_node") else None
        g, z, hours, why = sft_layout(facts, profile, sft, tokens, gpus=fixed_gpus, lora_rank=t.lora_rank,
                                      lora_targets=list(t.lora_targets))
        est["sft_hours"] = hours
        place("sft", job_resources(profile, gpus=g, timeout_min=time_limit_min(hours, profile)), "sft_layout", why)

    if profile.gpus_per_node <= 0:  # CPU: a small job's time is mostly its start (imports, model load)
        start_h = CPU_JOB_STARTUP_S / 3600
        for key in ("sft_hours", "train_hours", "curate_hours"):
            if key in est:
                est[key] += start_h
        est["eval_hours"] = {b: h + start_h for b, h in est["eval_hours"].items()}  # one process per benchmark
    return DerivedSettings(train=t, curate=c, resources=resources, estimates=Estimates(**est, warnings=warnings),
                           provenance=prov, reasons=reasons)


def _warn_if_over(warnings: dict[str, str], stage: str, hours: float, profile: ClusterProfile, fix: str) -> None:
    """A job that cannot requeue (curation, evaluation) and whose padded estimate exceeds the
    partition's time limit gets a warning in the plan (it would be killed and rerun by resume)."""
    if hours * 60 * TIME_SAFETY + STARTUP_MIN > profile.max_time_min:
        warnings[stage] = (
            f"{stage}: estimated {hours:.1f} h (x{TIME_SAFETY} safety) exceeds the {profile.max_time_min / 60:.0f} h "
            f"limit of profile {profile.name}; {fix}")


def _fixed_gpus(given: dict[str, Any], profile: ClusterProfile) -> int | None:
    """GPUs of a job whose recipe fixed nodes and/or gpus_per_node (None: the rules choose)."""
    nodes, gpus_per_node = given.get("nodes"), given.get("gpus_per_node")
    if gpus_per_node is None and nodes is None:
        return None
    per_node = profile.gpus_per_node if gpus_per_node is None else gpus_per_node
    return (nodes or 1) * per_node


def _problems(benchmark: str, cap: int | None) -> int:
    n = BENCHMARK_PROBLEMS.get(benchmark, DEFAULT_BENCHMARK_PROBLEMS)
    return min(n, cap) if cap else n
