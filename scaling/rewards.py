"""Length-aware reward shapings for GRPO, as pure functions, plus one TRL adapter.

Each shaping maps per-completion facts (``correct``, ``lengths`` in *tokens*, sometimes the
group or a per-prompt target) to rewards. Its formula is in its docstring, checked by a doctest.
``ShapedReward`` turns any of them into a TRL reward function: it grades the text after
``</think>`` with ``scaling.grade.grade_many``, measures lengths from ``completion_ids`` (never
characters), applies the shaping and the masking rules, and returns ``None`` for masked
completions (see ``excluded`` and docs/rewards.md for how a masked completion leaves the loss).

Sources (formulas in docs/rewards.md; the terms they share are in ``scaling.reward_terms``):
Art of Efficient Reasoning (arXiv 2602.20945): truncation, Kimi-1.5, Laser, Laser-D, masks;
L1/LCPO (arXiv 2503.04697); DAPO soft overlong (arXiv 2503.14476); TLDR-style multi-level
control (arXiv 2505.07961, parameterisation ours).

Standard library only: importable by the planner and picklable for submitit.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from .grade import grade_many
from .records import MaskRule, RewardSpec, Shaping
from .reward_terms import (
    difficulty_bucket,
    length_cost,
    normalised_lengths,
    overlong_penalty,
    parse_l1_target,
    parse_level,
)


# ----------------------------------------------------------------------------- shapings


def vanilla(correct: Sequence[bool]) -> list[float]:
    r"""R = 1[correct]   (the correctness-only baseline).

    >>> vanilla([True, False])
    [1.0, 0.0]
    """
    return [1.0 if c else 0.0 for c in correct]


def truncation(
    correct: Sequence[bool],
    lengths: Sequence[int],
    *,
    target_length: int,
    finished: Sequence[bool] | None = None,
) -> list[float]:
    r"""R = 1[correct] · 1[len ≤ L_T]   (Art, the method's choice).

    A rollout that hit the rollout limit L_R (``finished`` False) has no answer and gets 0.

    >>> truncation([True, True, False], [3, 5, 2], target_length=4)
    [1.0, 0.0, 0.0]
    >>> truncation([True], [3], target_length=4, finished=[False])
    [0.0]
    """
    fin = finished if finished is not None else [True] * len(correct)
    return [1.0 if (c and f and n <= target_length) else 0.0 for c, n, f in zip(correct, lengths, fin, strict=True)]


def kimi(correct: Sequence[bool], lengths: Sequence[int], *, alpha: float = 0.4) -> list[float]:
    r"""Kimi-1.5 over ONE group: λ = α·(0.5 − l~);  R = 1[c]·(1 + λ) + 1[¬c]·min(0, λ).

    >>> [round(r, 3) for r in kimi([True, True, False], [10, 30, 30])]
    [1.2, 0.8, -0.2]
    >>> kimi([True, False], [5, 5])
    [1.0, 0.0]
    """
    out = []
    for c, lt in zip(correct, normalised_lengths(lengths), strict=True):
        lam = alpha * (0.5 - lt)
        out.append(1.0 + lam if c else min(0.0, lam))
    return out


def laser(correct: Sequence[bool], lengths: Sequence[int], *, target_length: int, alpha: float = 0.4) -> list[float]:
    r"""Laser: R = 1[c] · (1 + α·1[len < L_T]).

    >>> laser([True, True, False], [3, 5, 2], target_length=4)
    [1.4, 1.0, 0.0]
    """
    return [(1.0 + (alpha if n < target_length else 0.0)) if c else 0.0 for c, n in zip(correct, lengths, strict=True)]


def laser_d(
    correct: Sequence[bool],
    lengths: Sequence[int],
    *,
    target_length: int,
    alpha: float = 0.4,
    bucket_targets: dict[str, int] | None = None,
) -> list[float]:
    r"""Laser-D over ONE group: R = 1[c]·(1 + α·1[len < L_T]) + 1[¬c]·α·1[len ≥ L_T].

    With ``bucket_targets`` the group's L_T is the target of its difficulty bucket
    (``difficulty_bucket`` of the group accuracy); buckets not listed use ``target_length``.

    >>> laser_d([True, False, False], [3, 5, 2], target_length=4)
    [1.4, 0.4, 0.0]
    >>> laser_d([True, True, False], [3, 5, 2], target_length=4, bucket_targets={"easy": 6})
    [1.4, 1.4, 0.0]
    """
    lt = target_length
    if bucket_targets and len(correct):
        acc = sum(bool(c) for c in correct) / len(correct)
        lt = int(bucket_targets.get(difficulty_bucket(acc), target_length))
    return [
        (1.0 + (alpha if n < lt else 0.0)) if c else (alpha if n >= lt else 0.0)
        for c, n in zip(correct, lengths, strict=True)
    ]


def l1_exact(
    correct: Sequence[bool], lengths: Sequence[int], targets: Sequence[int], *, alpha: float = 0.0003
) -> list[float]:
    r"""L1-Exact (LCPO): R = 1[c] − α·|N − len|, N = the target stated in the prompt.

    >>> [round(r, 4) for r in l1_exact([True, False], [1100, 100], [1000, 100])]
    [0.97, 0.0]
    """
    return [(1.0 if c else 0.0) - alpha * abs(t - n) for c, n, t in zip(correct, lengths, targets, strict=True)]


def l1_max(
    correct: Sequence[bool],
    lengths: Sequence[int],
    targets: Sequence[int],
    *,
    alpha: float = 0.0003,
    delta: float = 0.5,
) -> list[float]:
    r"""L1-Max (LCPO): R = 1[c] · clip(α·(N − len) + δ, 0, 1).

    >>> [round(r, 4) for r in l1_max([True, True, True, False], [1000, 500, 4000, 10], [1000] * 4)]
    [0.5, 0.65, 0.0, 0.0]
    """
    return [
        (min(1.0, max(0.0, alpha * (t - n) + delta)) if c else 0.0)
        for c, n, t in zip(correct, lengths, targets, strict=True)
    ]


def dapo_overlong(
    correct: Sequence[bool], lengths: Sequence[int], *, max_length: int, cache: int, factor: float = 1.0
) -> list[float]:
    r"""R = 1[c] + overlong_penalty(len)   (correctness in {0,1}; DAPO itself uses ±1).

    >>> dapo_overlong([True, True, False], [10, 75, 100], max_length=100, cache=50)
    [1.0, 0.5, -1.0]
    """
    pen = overlong_penalty(lengths, max_length=max_length, cache=cache, factor=factor)
    return [(1.0 if c else 0.0) + p for c, p in zip(correct, pen, strict=True)]


def tldr(correct: Sequence[bool], costs: Sequence[float], lambdas: Sequence[float]) -> list[float]:
    r"""TLDR-style multi-level control: R = 1[c] − λ_level · f(len)  (λ from the prompt's level tag).

    >>> tldr([True, True, False], [0.5, 0.5, 1.0], [0.5, 0.0, 0.2])
    [0.75, 1.0, -0.2]
    """
    return [(1.0 if c else 0.0) - lam * f for c, f, lam in zip(correct, costs, lambdas, strict=True)]


def excluded(
    correct: Sequence[bool], lengths: Sequence[int], *, target_length: int, rules: Sequence[MaskRule | str]
) -> list[bool]:
    r"""Which completions the masking variants exclude from the loss ("long" = len > L_T).

    -I = [incorrect]; -L&C = [long_correct]; -L&C-S&I = [long_correct, short_incorrect];
    -L&C-L&I = [long_correct, long_incorrect].

    >>> excluded([True, True, False, False], [3, 9, 3, 9], target_length=4, rules=["long_correct", "short_incorrect"])
    [False, True, True, False]
    """
    names = {r.value if isinstance(r, MaskRule) else str(r) for r in rules}
    unknown = names - {m.value for m in MaskRule}
    if unknown:
        raise ValueError(f"unknown mask rule(s) {sorted(unknown)}; known: {[m.value for m in MaskRule]}")
    out = []
    for c, n in zip(correct, lengths, strict=True):
        long = n > target_length
        out.append(
            ("incorrect" in names and not c)
            or ("long_correct" in names and c and long)
            or ("short_incorrect" in names and not c and not long)
            or ("long_incorrect" in names and not c and long)
        )
    return out


def mask_label(rules: Sequence[MaskRule | str]) -> str:
    """The paper's name of a masking variant, e.g. ["long_correct", "short_incorrect"] -> "-L&C-S&I".

    >>> mask_label(["long_correct", "long_incorrect"])
    '-L&C-L&I'
    """
    short = {"incorrect": "-I", "long_correct": "-L&C", "short_incorrect": "-S&I", "long_incorrect": "-L&I"}
    order = ["incorrect", "long_correct", "short_incorrect", "long_incorrect"]
    names = {r.value if isinstance(r, MaskRule) else str(r) for r in rules}
    return "".join(short[n] for n in order if n in names)


# ----------------------------------------------------------------------------- adapter


def _text(completion: Any) -> str:
    """A TRL completion is a string (standard format) or a list of messages (conversational)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _groups(prompts: Sequence[Any]) -> list[list[int]]:
    """Indices grouped by prompt (a GRPO group = the N completions of one prompt), in order."""
    idx: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        idx.setdefault(repr(p), []).append(i)
    return list(idx.values())


class ShapedReward:
    """A TRL reward function for one ``RewardSpec``: grade, measure tokens, shape, mask.

    Call signature (TRL's): ``(prompts, completions, completion_ids, answer=..., **kwargs)``
    -> ``list[float | None]``; ``None`` marks a masked completion. TRL 1.16 treats a ``None``
    reward as "unscorable": the completion is left out of its group's mean/std and its advantage
    is set to 0. ``jobs/train.py``'s trainer hook additionally zeroes its completion mask (so it
    also leaves the token normaliser and the KL term) using ``last_excluded``.

    ``grader`` (tests only) replaces ``scaling.grade.grade_many``; it must be picklable.
    ``tokenizer`` (optional, picklable): decode ``completion_ids`` here instead of trusting TRL's
    text, which loses ``</think>`` when the tokenizer marks it special (see ``texts``).
    Callable class rather than a closure so it pickles for submitit. ``__name__`` is the key TRL
    logs the reward under (``rewards/<name>/mean``).
    """

    def __init__(
        self,
        spec: RewardSpec,
        rollout_limit: int,
        num_generations: int,
        *,
        require_think_end: bool = True,
        think_end: str = "</think>",
        eos_token_ids: Sequence[int] = (),
        grade_kind: str = "math",
        grader: Callable[..., list[Any]] | None = None,
        tokenizer: Any = None,
        think_start: str = "<think>",
    ) -> None:
        if rollout_limit <= 0:
            raise ValueError(f"rollout_limit must be > 0, got {rollout_limit}")
        self.spec = spec
        self.shaping = Shaping(spec.shaping)
        self.rollout_limit = int(rollout_limit)
        self.target_length = int(spec.target_length or rollout_limit)
        self.num_generations = int(num_generations)
        self.require_think_end = require_think_end
        self.think_end = think_end
        self.eos_token_ids = [int(t) for t in eos_token_ids]
        self.grade_kind = grade_kind
        self.grader = grader
        self.tokenizer = tokenizer
        self.think_start = think_start
        self.mask_rules = [MaskRule(m) for m in spec.mask]
        label = mask_label(self.mask_rules).replace("&", "").replace("-", "_")  # "-L&C-S&I" -> "_LC_SI"
        self.__name__ = f"{self.shaping.value}_mask{label}" if label else self.shaping.value
        self.last_excluded: list[bool] = []
        self.last_stats: dict[str, float] = {}

    # -- pieces, each usable alone -------------------------------------------------
    def texts(self, completions: Sequence[Any], completion_ids: Sequence[Sequence[int]]) -> list[str]:
        """The completion texts to grade. TRL decodes with ``skip_special_tokens=True``, which
        drops ``</think>`` when a tokenizer marks it special; with a ``tokenizer`` we decode the
        ids ourselves, keeping the thinking tags and removing the other special tokens."""
        if self.tokenizer is None:
            return [_text(c) for c in completions]
        keep = {self.think_start, self.think_end}
        drop = [t for t in getattr(self.tokenizer, "all_special_tokens", []) if t and t not in keep]
        out = []
        for ids in completion_ids:
            text = self.tokenizer.decode(list(ids), skip_special_tokens=False)
            for tok in drop:
                text = text.replace(tok, "")
            out.append(text)
        return out

    def grade(self, texts: list[str], answers: list[str]) -> list[Any]:
        """Grades (``correct``, ``status``) of the completion texts against the gold answers."""
        grader = self.grader if self.grader is not None else grade_many
        return list(
            grader(
                texts,
                answers,
                kind=self.grade_kind,
                timeout_s=self.spec.grade_timeout_s,
                think_end=self.think_end,
                require_think_end=self.require_think_end,
            )
        )

    def finished(self, ids: Sequence[int]) -> bool:
        """A completion finished on its own: it ends with EOS, or stopped before the rollout limit."""
        if ids and self.eos_token_ids and int(ids[-1]) in self.eos_token_ids:
            return True
        return len(ids) < self.rollout_limit

    def shape(self, prompts: Sequence[Any], correct: list[bool], lengths: list[int], fin: list[bool]) -> list[float]:
        """Rewards of one batch (groups found by prompt) under ``self.spec``."""
        s, spec = self.shaping, self.spec
        correct = [c and f for c, f in zip(correct, fin, strict=True)]  # unfinished is never correct
        if s is Shaping.vanilla:
            return vanilla(correct)
        if s is Shaping.truncation:
            return truncation(correct, lengths, target_length=self.target_length, finished=fin)
        if s is Shaping.laser:
            return laser(correct, lengths, target_length=self.target_length, alpha=spec.alpha)
        if s is Shaping.dapo_overlong:
            return dapo_overlong(
                correct,
                lengths,
                max_length=self.rollout_limit,
                cache=spec.overlong_cache,
                factor=spec.overlong_factor,
            )
        if s in (Shaping.l1_exact, Shaping.l1_max):
            targets = []
            for p in prompts:
                t = parse_l1_target(_text(p) if not isinstance(p, str) else p)
                targets.append(t if t is not None else self.target_length)
            fn = l1_exact if s is Shaping.l1_exact else l1_max
            kw = {"alpha": spec.l1_alpha} | ({"delta": spec.l1_delta} if s is Shaping.l1_max else {})
            return fn(correct, lengths, targets, **kw)
        out = [0.0] * len(correct)
        for g in _groups(prompts):
            gc, gl = [correct[i] for i in g], [lengths[i] for i in g]
            if s is Shaping.kimi:
                r = kimi(gc, gl, alpha=spec.alpha)
            elif s is Shaping.laser_d:
                r = laser_d(
                    gc,
                    gl,
                    target_length=self.target_length,
                    alpha=spec.alpha,
                    bucket_targets=dict(spec.laser_d_targets) or None,
                )
            else:  # tldr
                prompt = prompts[g[0]]
                level = parse_level(prompt if isinstance(prompt, str) else _text(prompt), dict(spec.level_tags))
                lam = float(spec.levels.get(level, 0.0)) if level is not None else 0.0
                costs = length_cost(
                    gl, kind=spec.length_penalty, rollout_limit=self.rollout_limit, target_length=self.target_length
                )
                r = tldr(gc, costs, [lam] * len(g))
            for i, v in zip(g, r, strict=True):
                out[i] = v
        return out

    # -- TRL entry point ------------------------------------------------------------
    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]],
        answer: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if answer is None:
            raise ValueError("ShapedReward needs the dataset's 'answer' column (see jobs/data.py)")
        texts = self.texts(completions, completion_ids)
        lengths = [len(ids) for ids in completion_ids]
        fin = [self.finished(ids) for ids in completion_ids]
        grades = self.grade(texts, [str(a) for a in answer])
        correct = [bool(g.correct) and f for g, f in zip(grades, fin, strict=True)]
        rewards = self.shape(prompts, correct, lengths, fin)
        mask = (
            excluded(correct, lengths, target_length=self.target_length, rules=self.mask_rules)
            if self.mask_rules
            else [False] * len(rewards)
        )
        self.last_excluded = mask
        self.last_stats = batch_stats(prompts, correct, lengths, fin, rewards, mask)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for k, v in self.last_stats.items():
                log_metric(f"signals/{k}", v)
        return [None if m else float(r) for r, m in zip(rewards, mask, strict=True)]


def batch_stats(
    prompts: Sequence[Any],
    correct: Sequence[bool],
    lengths: Sequence[int],
    finished: Sequence[bool],
    rewards: Sequence[float],
    masked: Sequence[bool],
) -> dict[str, float]:
    """Per-call training-signal sums and counts (TRL averages each over calls and processes, so
    ``mean(x_sum) / mean(x_n)`` is the exact pooled mean over the logging window).

    >>> s = batch_stats(["p", "p"], [True, False], [4, 8], [True, False], [1.0, 0.0], [False, False])
    >>> s["tokens_correct_sum"], s["n_correct"], s["truncated_n"], s["zero_std_groups"]
    (4.0, 1.0, 1.0, 0.0)
    """
    def pooled(sel: Sequence[bool]) -> tuple[float, float]:
        vals = [n for n, s in zip(lengths, sel, strict=True) if s]
        return float(sum(vals)), float(len(vals))

    out: dict[str, float] = {}
    out["tokens_sum"], out["n"] = pooled([True] * len(lengths))
    out["tokens_correct_sum"], out["n_correct"] = pooled(correct)
    out["tokens_incorrect_sum"], out["n_incorrect"] = pooled([not c for c in correct])
    out["tokens_positive_sum"], out["n_positive"] = pooled([r > 0 for r in rewards])
    out["tokens_negative_sum"], out["n_negative"] = pooled([r <= 0 for r in rewards])
    out["tokens_median"] = float(statistics.median(lengths)) if lengths else 0.0
    out["truncated_n"] = float(sum(not f for f in finished))
    out["masked_n"] = float(sum(bool(m) for m in masked))
    groups = _groups(prompts)
    zero = 0
    for g in groups:
        vals = [rewards[i] for i in g if not masked[i]]
        zero += int(len(vals) < 2 or max(vals) == min(vals))
    out["zero_std_groups"] = float(zero)
    out["n_groups"] = float(len(groups))
    return out
