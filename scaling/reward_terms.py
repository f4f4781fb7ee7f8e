"""The terms the reward shapings (``scaling.rewards``) are built from: group-normalised lengths,
Laser-D's difficulty buckets, the prompt parsers (L1's target, TLDR's level tag), DAPO's soft
overlong penalty and TLDR's length cost. Pure functions, each checked by a doctest.

Sources: Art of Efficient Reasoning (arXiv 2602.20945): Kimi-1.5 and Laser-D; L1/LCPO (arXiv
2503.04697); DAPO (arXiv 2503.14476); TLDR-style control (arXiv 2505.07961, parameterisation
ours). Formulas in docs/rewards.md.

Standard library only: importable by the planner and picklable for submitit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_L1_TARGET = re.compile(r"Think for (\d+) tokens", re.IGNORECASE)


def normalised_lengths(lengths: Sequence[int]) -> list[float]:
    r"""l~ = (len − min_group) / (max_group − min_group); l~ = 0.5 for every member when max = min.

    Our definition for the degenerate group (the paper is silent): 0.5 is the midpoint, so an
    all-equal group gets no length bonus or penalty in Kimi's formula.

    >>> normalised_lengths([10, 20, 30])
    [0.0, 0.5, 1.0]
    >>> normalised_lengths([7, 7])
    [0.5, 0.5]
    """
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.5] * len(lengths)
    return [(n - lo) / (hi - lo) for n in lengths]


def difficulty_bucket(group_accuracy: float) -> str:
    """Laser-D's bucket of a group: accuracy ≥ 2/3 "easy", [1/3, 2/3) "medium", < 1/3 "hard".

    >>> [difficulty_bucket(a) for a in (1.0, 0.5, 0.0)]
    ['easy', 'medium', 'hard']
    """
    if group_accuracy >= 2 / 3:
        return "easy"
    if group_accuracy >= 1 / 3:
        return "medium"
    return "hard"


def parse_l1_target(prompt: str) -> int | None:
    """The L1 target N from a prompt containing "Think for N tokens." (None when absent).

    >>> parse_l1_target("Solve x. Think for 512 tokens.")
    512
    >>> parse_l1_target("Solve x.") is None
    True
    """
    m = _L1_TARGET.search(prompt)
    return int(m.group(1)) if m else None


def overlong_penalty(lengths: Sequence[int], *, max_length: int, cache: int, factor: float = 1.0) -> list[float]:
    r"""DAPO soft overlong punishment: min(−(len − (L_max − L_cache)) / L_cache · factor, 0).

    Zero up to L_max − L_cache, then linear down to −factor at L_max (held there beyond).
    ``cache`` is clipped to ``max_length`` so the ramp never starts below zero.

    >>> overlong_penalty([10, 75, 100, 120], max_length=100, cache=50)
    [0.0, -0.5, -1.0, -1.0]
    """
    cache = max(1, min(cache, max_length))
    start = max_length - cache
    return [max(-factor, min(-(n - start) / cache * factor, 0.0)) + 0.0 for n in lengths]


def parse_level(prompt: str, level_tags: dict[str, str]) -> str | None:
    """The TLDR level whose tag occurs in the prompt (the longest matching tag wins); None if none.

    >>> parse_level("2+2? Think briefly.", {"short": "Think briefly.", "long": "Think thoroughly."})
    'short'
    """
    hits = [(len(tag), lvl) for lvl, tag in level_tags.items() if tag and tag in prompt]
    return max(hits)[1] if hits else None


def length_cost(lengths: Sequence[int], *, kind: str, rollout_limit: int, target_length: int) -> list[float]:
    r"""TLDR's f(len) in [0, 1]: ``linear`` len/L_R; ``group`` l~ (group min/max, one group);
    ``hinge`` max(0, len − L_T) / L_R.

    >>> length_cost([50, 100], kind="linear", rollout_limit=100, target_length=60)
    [0.5, 1.0]
    >>> length_cost([50, 100], kind="hinge", rollout_limit=100, target_length=60)
    [0.0, 0.4]
    """
    if kind == "linear":
        return [min(n, rollout_limit) / rollout_limit for n in lengths]
    if kind == "group":
        return normalised_lengths(lengths)
    if kind == "hinge":
        return [max(0, min(n, rollout_limit) - target_length) / rollout_limit for n in lengths]
    raise ValueError(f"length_penalty must be linear | group | hinge, got {kind!r}")
