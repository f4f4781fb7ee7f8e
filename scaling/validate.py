"""Plain data -> typed settings, and the checks of one size's values.

``structured(cls, data)`` builds a record of scaling/records through omegaconf's structured
validation (types, enum values, unknown keys); a shortcut builds it directly when every value
already has exactly the declared type (``_fast``), because omegaconf costs ~15 ms per size and
~80 ms to import, against ~0.3 ms (measured: docs/architecture.md "Why recipes merge by hand").
``check_size`` then checks ranges and names that types cannot express; each message names the
file that set the key and the fix. Cross-field rules are the plan's (plan._check).

Standard library only (omegaconf imported when a value needs its decision; the benchmark
registry when a size lists benchmarks).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import types
import typing
from typing import Any

from .benchmarks import known_benchmarks, load_benchmark
from .errors import ECHO_MAX, RecipeError, short
from .layers import did_you_mean, source_of
from .records import SizeSettings
from .records.convert import type_hints
from .schedule import checkpoint_problem

STAGES = ("curate", "sft", "train", "eval")
CHECKPOINTS = ("base", "trained")
THINKING = ("hybrid", "always", "none")
MAX_LIST_ITEMS = 64  # eval.budgets, eval.benchmarks (real lists have 5-10): each one multiplies jobs
SCALE_REWARDS = ("group", "batch", "none")  # TRL GRPOConfig.scale_rewards
LENGTH_PENALTIES = ("linear", "group", "hinge")  # rewards.tldr_penalty
# transformers' report_to names (integration_utils.INTEGRATION_TO_CALLBACK, 5.x) + none/all;
# tests/unit/test_recipe.py compares this list with the installed transformers.
REPORT_TO = ("all", "azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow",
             "mlflow", "neptune", "none", "swanlab", "tensorboard", "trackio", "wandb")
# the loggers scaling/jobs/tracking.py points into the job directory (the others write elsewhere)
TRACKERS = ("trackio", "tensorboard", "wandb", "none")


class _Slow(Exception):
    """The fast path cannot decide: let omegaconf validate (and convert, or explain the error)."""


def _fast(tp: Any, v: Any) -> Any:
    """Build ``tp`` from plain data when every value already has exactly the declared type.

    A shortcut, not a second validator: it accepts only what omegaconf accepts unchanged
    (ints for int, ints/floats for float, enum values, lists, nested mappings) and raises
    ``_Slow`` for everything else (strings to convert, None in a required field, bad values),
    so omegaconf's structured merge still decides every case that needs a decision."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _fast(inner[0], v)
        raise _Slow
    if v is None:
        raise _Slow
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            raise _Slow
        hints = type_hints(tp)
        if any(k not in hints for k in v):
            raise _Slow
        out = {k: _fast(hints[k], x) for k, x in v.items()}
        for f in dataclasses.fields(tp):  # omegaconf merges a given mapping into a mapping default
            if f.name in out and isinstance(out[f.name], dict) and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
                if isinstance(default, dict) and default:
                    out[f.name] = {**default, **out[f.name]}
        return tp(**out)
    if origin is list:
        if not isinstance(v, list):
            raise _Slow
        (item,) = typing.get_args(tp)
        return [_fast(item, x) for x in v]
    if origin is dict:
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise _Slow
        item = typing.get_args(tp)[1]
        return {k: _fast(item, x) for k, x in v.items()}
    if tp is Any:
        return copy.deepcopy(v)
    if tp in (bool, int, str) and type(v) is tp:
        return v
    if tp is float and type(v) in (int, float):
        return float(v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(v, tp):
            return v
        if type(v) is str and v in tp._value2member_map_:
            return tp(v)
    raise _Slow


def structured(cls: type, data: dict[str, Any]) -> Any:
    """``data`` validated into ``cls`` through omegaconf structured configs (fast path first)."""
    try:
        return _fast(cls, data)
    except _Slow:
        from omegaconf import OmegaConf

        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
        _verify_types(cls, obj, "")
        return obj


class _TypeMismatch(Exception):
    """What omegaconf let through although it does not match the schema (a list inside a list[int])."""

    def __init__(self, key: str, msg: str):
        super().__init__(msg)
        self.full_key, self.msg = key, msg


def _verify_types(tp: Any, v: Any, key: str) -> None:
    """Check what omegaconf built against the type hints: omegaconf 2.3 accepts a nested list
    where ``list[int]`` is declared (``budgets: [[1]]``), which then fails far from the recipe."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if v is None:
            return
        if len(args) == 1:
            return _verify_types(args[0], v, key)
        return
    if dataclasses.is_dataclass(tp):
        hints = type_hints(tp)
        for f in dataclasses.fields(tp):
            _verify_types(hints[f.name], getattr(v, f.name), f"{key}.{f.name}" if key else f.name)
        return
    if origin is list:
        (item,) = typing.get_args(tp)
        for i, x in enumerate(v if isinstance(v, list) else []):
            _verify_types(item, x, f"{key}[{i}]")
        return
    if origin is dict:
        item = typing.get_args(tp)[1]
        for k, x in (v.items() if isinstance(v, dict) else []):
            _verify_types(item, x, f"{key}.{k}")
        return
    ok = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}.get(tp)
    if ok is not None and (not isinstance(v, ok) or (tp is not bool and isinstance(v, bool) and tp is int)):
        raise _TypeMismatch(key, f"expected {tp.__name__}, got {type(v).__name__} {short(v)}")


def omegaconf_error(err: Exception, prov: dict[str, str], default_src: str, prefix: str = "") -> RecipeError:
    """An omegaconf validation error -> a one-line RecipeError naming the file that set the key."""
    key = str(getattr(err, "full_key", "") or "")
    msg = str(getattr(err, "msg", "") or err).split("\n")[0].strip()
    if len(msg) > 4 * ECHO_MAX:  # omegaconf echoes the offending value whole
        msg = msg[: 4 * ECHO_MAX - 3] + "..."
    src = source_of(key, prov, default_src) if key else default_src
    full = f"{prefix}{key}" if key else (prefix[:-1] or None)
    return RecipeError(f"{msg}; fix the value", path=src, key=full)




# ------------------------------------------------------------------------------ checks
def check_size(size: str, s: SizeSettings, prov: dict[str, str], default_src: str) -> None:
    """Value checks omegaconf's types cannot express (ranges, names, list shapes) of one size.
    ``prov`` is the size's provenance. Rules across fields (L_T <= L_R, prompt + L_R within the
    context, LoRA with ZeRO-3, ...) are the plan's (plan._check)."""

    def fail(key: str, message: str) -> RecipeError:
        return RecipeError(message, path=source_of(key, prov, default_src), key=f"sizes.{size}.{key}")

    budgets = s.eval.budgets
    if not budgets:
        raise fail("eval.budgets", "needs at least one budget in tokens, e.g. [2048, 4096, 8192]")
    for key in ("budgets", "benchmarks"):
        if len(getattr(s.eval, key)) > MAX_LIST_ITEMS:
            raise fail(f"eval.{key}", f"{len(getattr(s.eval, key))} items; at most {MAX_LIST_ITEMS} (each one "
                       "multiplies the work); split the study")
    seen_b = [b for i, b in enumerate(s.eval.benchmarks) if b in s.eval.benchmarks[:i]]
    if seen_b:
        raise fail("eval.benchmarks", f"{short(seen_b[0])} is listed twice; list each benchmark once")
    if any(b <= 0 for b in budgets):
        raise fail("eval.budgets", f"budgets must be positive token counts, got {budgets}")
    if any(b2 <= b1 for b1, b2 in zip(budgets, budgets[1:])):
        raise fail("eval.budgets", f"budgets must be strictly increasing, got {budgets}; sort them and drop repeats")
    if s.eval.checkpoints and not s.eval.benchmarks:
        raise fail("eval.benchmarks", "no benchmarks to evaluate on; list some (e.g. [aime25, math500]) "
                   "or set eval.checkpoints=[] to skip evaluation")
    _check_benchmarks(s.eval.benchmarks, lambda m: fail("eval.benchmarks", m))
    problem = checkpoint_problem(s.eval.checkpoints)  # base, trained, step-N, 'every N' (schedule.py)
    if problem:
        raise fail("eval.checkpoints", problem)
    if s.eval.select_step is not None and s.eval.select_step.benchmark:
        _check_benchmarks([s.eval.select_step.benchmark], lambda m: fail("eval.select_step.benchmark", m))
    if s.eval.samples_per_problem < 1:
        raise fail("eval.samples_per_problem", "must be >= 1")
    for sec, st in (("eval", s.eval), ("train", s.train)):
        if st.temperature < 0:
            raise fail(f"{sec}.temperature", f"must be >= 0, got {st.temperature}")
        if not 0 < st.top_p <= 1:
            raise fail(f"{sec}.top_p", f"must be in (0, 1], got {st.top_p}")
    t = s.train
    if t.num_generations < 2:
        raise fail("train.num_generations", f"GRPO needs a group of >= 2 rollouts per prompt, got {t.num_generations}")
    if t.max_steps < 1:
        raise fail("train.max_steps", f"must be >= 1, got {t.max_steps}")
    for key in ("rollout_limit", "prompts_per_step", "mini_batch_prompts", "per_device_batch"):
        v = getattr(t, key)
        if v is not None and v < 1:
            raise fail(f"train.{key}", f"must be a positive integer, got {v} (or null for the rule)")
    if t.learning_rate is not None and not t.learning_rate > 0:
        raise fail("train.learning_rate", f"must be > 0, got {t.learning_rate}")
    if t.zero_stage is not None and t.zero_stage not in (0, 1, 2, 3):
        raise fail("train.zero_stage", f"ZeRO stage must be 0, 1, 2 or 3, got {t.zero_stage}")
    if t.off_policy_staleness < 1:
        raise fail("train.off_policy_staleness", "must be >= 1 (1 = on-policy)")
    lt = t.reward.target_length
    if lt is not None and lt < 1:
        raise fail("train.reward.target_length", f"must be a positive token count, got {lt}")
    _check_values(s, fail)
    _check_sources(s, fail)
    c = s.curate
    if not 0 <= c.min_pass_rate < c.max_pass_rate <= 1:
        raise fail("curate.min_pass_rate", f"need 0 <= min_pass_rate < max_pass_rate <= 1, got "
                   f"{c.min_pass_rate} and {c.max_pass_rate}")
    if c.samples < 1:
        raise fail("curate.samples", "must be >= 1")
    m = s.model
    if m.thinking not in THINKING:
        raise fail("model.thinking", f"unknown thinking mode {m.thinking!r}; use one of {list(THINKING)}")
    if m.size and m.size != size:
        raise fail("model.size", f"{m.size!r} does not match the size key {size!r}; the size file "
                   f"families/{m.family or '<family>'}/{size}.yaml must say size: {size}")
    if m.num_experts <= 0 and (m.model_type.endswith("_moe") or m.model_type in ("mixtral", "olmoe", "deepseek_v2", "deepseek_v3")):
        raise fail("model.num_experts", f"model_type {m.model_type} is a mixture of experts but no expert facts are "
                   "given; add num_experts, experts_per_token and moe_intermediate_size from config.json")
    for stage in STAGES:
        r = getattr(s.resources, stage)
        for f in dataclasses.fields(r):
            v = getattr(r, f.name)
            if v is not None and v < (0 if f.name == "gpus_per_node" else 1):
                raise fail(f"resources.{stage}.{f.name}", f"must be a positive integer, got {v} (or null for the rule)")


def _walk_floats(obj: Any, prefix: str) -> typing.Iterator[tuple[str, float]]:
    """(dotted key, value) of every float leaf of a settings dataclass (dicts included)."""
    items = ([(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj)
             else list(obj.items()) if isinstance(obj, dict) else [])
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, float):
            yield key, v
        elif dataclasses.is_dataclass(v) or isinstance(v, dict):
            yield from _walk_floats(v, key)


def _check_values(s: SizeSettings, fail: Any) -> None:
    """Ranges and names that only the job would otherwise refuse (issue 14 item 5, issue 16 item 9):
    every float finite; counts, steps and batch sizes positive; limits null or positive; the
    string settings TRL and rewards.py read are known names."""
    for key, v in _walk_floats(s, ""):
        if not math.isfinite(v):
            raise fail(key, f"must be a finite number, got {v}")
    at_least = {  # key -> minimum (None-able keys are skipped when None)
        "train.save_steps": 1, "train.logging_steps": 1, "train.lora_rank": 1, "train.lora_alpha": 1,
        "train.max_prompt_length": 1, "train.top_k": 0, "train.dataset.max_rows": 1,
        "train.reward.overlong_cache": 0, "train.reward.l1_min_target": 1, "train.reward.l1_max_target": 1,
        "sft.batch_size": 1, "sft.max_length": 1, "sft.dataset.max_rows": 1,
        "eval.batch_size": 1, "eval.chunk_requests": 1, "eval.answer_tokens": 1, "eval.top_k": 0,
        "eval.max_problems": 1, "eval.min_thinking_tokens": 0, "eval.max_waits": 0, "eval.max_thinking_tokens": 1,
        "curate.max_tokens": 1, "curate.max_prompts": 1,
    }
    notes = {"train.top_k": " (0 = off)", "eval.top_k": " (0 = off)", "eval.max_problems": " (or null for every problem)",
             "train.dataset.max_rows": " (or null for every row)", "sft.dataset.max_rows": " (or null for every row)"}
    for key, minimum in at_least.items():
        v = _get_path(s, key)
        if v is not None and v < minimum:
            raise fail(key, f"must be >= {minimum}{notes.get(key, '')}, got {v}")
    positive = ("train.reward.grade_timeout_s", "eval.grade_timeout_s", "sft.epochs", "sft.learning_rate",
                "eval.stop_gamma", "eval.stop_tau")
    for key in positive:
        v = _get_path(s, key)
        if v is not None and not v > 0:
            raise fail(key, f"must be > 0, got {v}")
    for key in ("train.beta", "train.epsilon", "train.epsilon_high", "train.reward.alpha", "train.reward.l1_alpha"):
        v = _get_path(s, key)
        if v < 0:
            raise fail(key, f"must be >= 0, got {v}")
    if not 0 <= s.train.warmup_ratio <= 1:
        raise fail("train.warmup_ratio", f"must be in [0, 1], got {s.train.warmup_ratio}")
    if s.sft.max_steps != -1 and s.sft.max_steps < 1:
        raise fail("sft.max_steps", f"must be >= 1, or -1 for epochs, got {s.sft.max_steps}")
    names = (("train.scale_rewards", s.train.scale_rewards, SCALE_REWARDS),
             ("train.reward.length_penalty", s.train.reward.length_penalty, LENGTH_PENALTIES))
    for key, v, known in names:
        if v not in known:
            raise fail(key, f"unknown value {short(v)}; use one of {', '.join(known)}")
    for key, loggers in (("train.report_to", s.train.report_to), ("sft.report_to", s.sft.report_to)):
        for r in loggers:
            if r not in REPORT_TO:
                raise fail(key, f"unknown logger {short(r)}{did_you_mean(str(r), REPORT_TO)}")
            if r not in TRACKERS:  # jobs write only inside their job dir: jobs/tracking.py sets up these
                raise fail(key, f"logger {short(r)} is not set up by the jobs; use {', '.join(TRACKERS)}")


def _get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _check_sources(s: SizeSettings, fail: Any) -> None:
    """The datasets the jobs will load: ``train.dataset`` (curation and GRPO) always, ``sft.dataset``
    when SFT runs. The rule is the job's own (``jobs.data.source_problem``): a ``task://`` URI that
    does not parse (unknown parameter, split, n < 1), a local file that is not there."""
    from .jobs.data import source_problem  # stdlib-only module; datasets is imported only when loading

    for key, spec, runs in (("train.dataset", s.train.dataset, True), ("sft.dataset", s.sft.dataset, s.sft.enabled)):
        problem = source_problem(spec.source) if runs else None
        if problem is not None:
            raise fail(f"{key}.source", problem)


def _check_benchmarks(names: list[str], fail: Any) -> None:
    from .jobs.data import source_problem  # the evaluation job's rule for the data it loads

    known = known_benchmarks()
    for b in names:
        if b in known or b.endswith((".yaml", ".yml")):  # a benchmark YAML: check it as the job will
            spec = load_benchmark(b)
            problem = source_problem(spec.location)
            if problem is not None:
                raise fail(f"benchmark {b}: {problem}")
            continue
        if b.endswith((".jsonl", ".json", ".parquet")) or b.startswith("task://"):  # a data file, a generated set
            problem = source_problem(b)
            if problem is not None:
                raise fail(problem)
            continue
        raise fail(f"unknown benchmark {b!r}{did_you_mean(b, known)}; add recipes/benchmarks/{b}.yaml")
