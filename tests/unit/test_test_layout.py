"""The suite's own layout: pytest imports test files rootdir-less (no __init__.py), so two test
modules with one basename in different folders stop the whole collection ("import file
mismatch"), in the tier that collects both. One file per name, everywhere under tests/."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_basename_is_unique():
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(TESTS).parts):
            continue
        if path.name.startswith("test_") or path.name in ("conftest.py",):
            seen[path.name].append(str(path.relative_to(TESTS)))
    dupes = {name: where for name, where in seen.items() if len(where) > 1 and name != "conftest.py"}
    assert not dupes, f"test modules sharing a basename (rename one): {dupes}"
