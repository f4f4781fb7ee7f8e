"""The floating-point path of CPU jobs: hardware bf16 or not, and the switch that forces a path.

A CPU with AVX512-BF16 or AMX-BF16 runs the tiny ladder's wider SFT models under bf16 autocast
(``jobs/sft.sft_bf16``); a CPU without them (AVX2 only) runs everything in fp32. Both are paths a
user's machine may take, so both are tested (tests/run.sh runs the tiny ladder's CI profile on each)
whatever the CI machine's CPU is, through one environment variable:

    SCALING_CPU_BF16=0      fp32 everywhere: the path of a CPU without hardware bf16
    SCALING_CPU_BF16=1      bf16 autocast where the width rule allows it, even without hardware bf16
                            (torch then emulates bf16: slower, the same rounding)
    unset or auto           the hardware decides (the default)

Jobs inherit it from the launching shell (local jobs are its children; sbatch exports the caller's
environment). The path a job took is recorded in its DONE marker (``jobs/sft.numerics_env``).
Pure stdlib: ``scaling launch`` checks the value before anything starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import LaunchError

ENV = "SCALING_CPU_BF16"
MODES = {"0": "fp32", "1": "bf16", "auto": "auto", "": "auto"}


def cpu_has_bf16() -> bool:
    """True where the CPU does bf16 dot products in hardware (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def mode(environ: dict[str, str] | None = None) -> str:
    """``fp32``, ``bf16`` or ``auto`` from ``SCALING_CPU_BF16``; a bad value is one-line refused."""
    raw = (os.environ if environ is None else environ).get(ENV, "auto").strip().lower()
    if raw not in MODES:
        raise LaunchError(f"{ENV}={raw!r}: unknown value; use 0 (fp32 everywhere), 1 (bf16 autocast even "
                          "without hardware bf16) or auto (the hardware decides; the default)")
    return MODES[raw]


def cpu_bf16_allowed(environ: dict[str, str] | None = None) -> bool:
    """Whether CPU jobs may use bf16 autocast: forced by ``SCALING_CPU_BF16``, else the hardware."""
    m = mode(environ)
    return cpu_has_bf16() if m == "auto" else m == "bf16"


def describe(environ: dict[str, str] | None = None) -> dict[str, object]:
    """What a DONE marker records of the path: the hardware, the switch, the outcome."""
    return {"cpu_bf16": cpu_has_bf16(), "cpu_bf16_mode": mode(environ), "cpu_bf16_used": cpu_bf16_allowed(environ)}
