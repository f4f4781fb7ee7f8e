"""Size names, one home: keys (``0_6b``), display labels (``0.6B``) and parameter counts.

A size travels as a key in recipes, plan.json, output folders and records; it is shown as its
family's label in the report; the fits read a parameter count from either. The four readings:

* ``size_key("0.6B")``                  -> ``"0_6b"``            (recipe.load_study, plan)
* ``size_label("30b_a3b")``             -> ``"30B-A3B"``         (collect, when plan.json has no label)
* ``parse_size("30B-A3B", "active")``   -> ``3_000_000_000``    (fit, analyse, figures, report)
* ``size_key_and_label("Qwen3-0.6B", total, active, moe)`` -> ``("0_6b", "0.6B")`` (derive)

Standard library only.
"""

from __future__ import annotations

import re


def size_key(name: str) -> str:
    """A size key from a key or a display label: ``0.6B`` -> ``0_6b``, ``30B-A3B`` -> ``30b_a3b``."""
    return re.sub(r"[.\-\s]+", "_", str(name).strip().lower())


def size_label(size: str) -> str:
    """A display label from a size key: ``0_6b`` -> ``0.6B``, ``30b_a3b`` -> ``30B-A3B``,
    ``4b_instruct_2507`` -> ``4B-instruct-2507`` (used when plan.json has no label)."""
    m = re.match(r"^(\d+)(?:_(\d+))?([kmbt])(?:_a(\d+)(?:_(\d+))?([kmbt]))?(.*)$", size, re.IGNORECASE)
    if not m:
        return size
    num = m[1] + (f".{m[2]}" if m[2] else "") + m[3].upper()
    if m[4]:
        num += "-A" + m[4] + (f".{m[5]}" if m[5] else "") + m[6].upper()
    return num + m[7].replace("_", "-")


_UNITS = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_SIZE_RE = re.compile(
    r"^\s*(?P<num>\d+(?:[._]\d+)?)\s*(?P<unit>[kmbt])"
    r"(?:[-_ ]?a(?P<anum>\d+(?:[._]\d+)?)\s*(?P<aunit>[kmbt]))?(?:[-_ ].*)?$",
    re.IGNORECASE,
)


def parse_size(text: str | float | int, convention: str = "active") -> int:
    """A size string -> parameter count. ``70b`` -> 7e10, ``0.6B``/``0_6b`` -> 6e8, ``500m``,
    ``30b_a3b``/``30B-A3B`` -> 3e9 active or 3e10 total, plain numbers (``7e10``) as they are.
    Suffixes after the size (``4b_instruct_2507``) are ignored. ValueError if unreadable."""
    if convention not in ("active", "total"):
        raise ValueError(f"params convention must be 'active' or 'total', not {convention!r}")
    if isinstance(text, (int, float)):
        if not text > 0:
            raise ValueError(f"parameter count must be positive, got {text}")
        return int(text)
    s = str(text).strip()
    try:
        v = float(s)
    except ValueError:
        m = _SIZE_RE.match(s)
        if not m:
            raise ValueError(f"cannot read size {text!r}: use e.g. 70b, 0.6b, 500m, 30b-a3b or a number") from None
        total = float(m["num"].replace("_", ".")) * _UNITS[m["unit"].lower()]
        if m["anum"] and convention == "active":
            return int(round(float(m["anum"].replace("_", ".")) * _UNITS[m["aunit"].lower()]))
        return int(round(total))
    if not v > 0:
        raise ValueError(f"parameter count must be positive, got {text!r}")
    return int(v)


_SIZE_TOKEN = re.compile(r"^(\d+x)?\d+(\.\d+)?[bm]$", re.IGNORECASE)
_ACTIVE_TOKEN = re.compile(r"^a\d+(\.\d+)?b$", re.IGNORECASE)


def _fmt_billions(n: int) -> str:
    b = n / 1e9
    text = f"{b:.1f}" if b < 10 else f"{b:.0f}"
    return text.removesuffix(".0")


def size_key_and_label(name: str, total: int, active: int, moe: bool) -> tuple[str, str]:
    """(size key, display label) from the model name's size token, else from the counts."""
    tokens = [t for t in re.split(r"[-_]", name) if t]
    start = next((i for i, t in enumerate(tokens) if _SIZE_TOKEN.match(t)), None)
    if start is not None:
        parts, in_size = [], True
        for i, t in enumerate(tokens[start:]):
            in_size = in_size and (i == 0 or bool(_SIZE_TOKEN.match(t) or _ACTIVE_TOKEN.match(t)))
            parts.append(t.upper().replace("X", "x") if in_size else t)  # 30b-a3b -> 30B-A3B
        label = "-".join(parts)
    else:
        label = _fmt_billions(total) + "B" + (f"-A{_fmt_billions(active)}B" if moe else "")
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_"), label
