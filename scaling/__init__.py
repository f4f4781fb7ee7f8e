"""scaling: efficient-reasoning scaling studies.

recipe -> plan -> jobs (train, evaluate) -> records -> metrics/fits -> report.

The public API is re-exported lazily so `import scaling` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_study": "scaling.recipe",
    "make_plan": "scaling.plan",
    "launch": "scaling.launch",
    "collect": "scaling.collect",
    "compute_metrics": "scaling.metrics",
    "fit_trends": "scaling.fit",
    "write_report": "scaling.report",
    "ScalingError": "scaling.errors",
    "RecipeError": "scaling.errors",
    "PlanError": "scaling.errors",
    "ModelFacts": "scaling.records",
    "RunSpec": "scaling.records",
    "JobSpec": "scaling.records",
    "Plan": "scaling.records",
    "EvalRecord": "scaling.records",
    "TrainSignal": "scaling.records",
    "TrendFit": "scaling.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scaling' has no attribute {name!r}")
