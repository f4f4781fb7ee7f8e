"""The YAML caps every recipe and benchmark file passes before omegaconf sees it (issue 14):
size, anchors/aliases, nesting depth, value count and duplicate keys, checked on libyaml's event
stream (linear in the text; nothing is built). Used by recipe.py and benchmarks.py.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import RecipeError, short

# Caps applied BEFORE YAML reaches omegaconf (issue 14: a 584-byte alias bomb hung `check`, a
# 50 MB recipe took 100 s and 2.9 GB). Labelled defaults: the largest shipped recipe file is a few
# KB, so 1 MiB is far above any real one; 32 levels is twice the deepest real nesting (8). With
# no aliases the number of YAML nodes is bounded by the file size, so no separate node cap.
MAX_RECIPE_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 10_000  # values + sections in one file; the largest shipped file has < 1,000


def scan_yaml(text: str, shown: str) -> None:
    """Refuse what YAML allows and a recipe must not have, from the event stream (libyaml's
    parser, linear in the text; nothing is built): anchors and aliases (an alias bomb expands
    exponentially inside omegaconf), nesting deeper than MAX_YAML_DEPTH, and duplicate keys in
    a mapping (YAML keeps the later one silently)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    stack: list[list[Any]] = []  # [is_mapping, expecting_a_key, {key: line}]

    def node_done() -> None:
        if stack and stack[-1][0]:
            stack[-1][1] = not stack[-1][1]

    nodes = 0
    for ev in yaml.parse(text, Loader=loader):
        line = ev.start_mark.line + 1 if ev.start_mark is not None else 0
        if isinstance(ev, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise RecipeError(f"more than {MAX_YAML_NODES:,} YAML values (line {line}); a recipe holds a few "
                                  "hundred: is this the right file?", path=shown)
        if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
            raise RecipeError(f"YAML anchors and aliases (&a / *a) are not allowed (line {line}); "
                              "write each value out, or use include: for shared settings", path=shown)
        if isinstance(ev, yaml.ScalarEvent):
            if stack and stack[-1][0] and stack[-1][1]:
                keys = stack[-1][2]
                if ev.value in keys:
                    raise RecipeError(f"duplicate key {short(ev.value)} (lines {keys[ev.value]} and {line}); "
                                      "keep one (YAML would silently use the last)", path=shown)
                keys[ev.value] = line
            node_done()
        elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([isinstance(ev, yaml.MappingStartEvent), True, {}])
            if len(stack) > MAX_YAML_DEPTH:
                raise RecipeError(f"nested deeper than {MAX_YAML_DEPTH} levels (line {line}); "
                                  "a recipe is a few levels of sections", path=shown)
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            node_done()
