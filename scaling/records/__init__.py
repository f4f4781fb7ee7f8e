"""Every record that crosses a stage boundary, in data-flow order.

recipe -> (ModelFacts, *Settings, RewardSpec, Resources) -> RunSpec/JobSpec/Plan
       -> jobs -> EvalRecord / TrainSignal (Parquet columns) -> BudgetMetric -> SizePoint -> TrendFit

The package, in that order:

* ``enums.py``     the values a recipe may spell (Shaping, Finetune, ...), ``SCHEMA_VERSION``,
                   ``GROUP_SHAPINGS``;
* ``settings.py``  YAML-facing records: plain ``kw_only`` dataclasses that double as the
                   omegaconf schema of recipes, profiles and run.yaml (``None`` = "derived by a
                   rule in rules.py"; a planned ``RunSpec`` has no ``None`` left where its job reads);
* ``results.py``   records only our code creates (``frozen=True``): the plan's jobs, the jobs'
                   bulk outputs (Parquet column schemas) and the analysis's points and fits;
* ``convert.py``   the one dump/load pair: ``to_dict`` and ``from_dict`` (omegaconf-validated).

Everything is re-exported here: import from ``scaling.records`` (pickles of earlier versions
name ``scaling.records.<Class>`` and keep loading). Standard library only (pyarrow and
omegaconf inside the helpers that need them).
"""

from .convert import from_dict, to_dict
from .enums import (
    GROUP_SHAPINGS,
    SCHEMA_VERSION,
    Backend,
    EvalProtocol,
    Finetune,
    Grader,
    Intervention,
    LossType,
    MaskRule,
    Shaping,
    Stage,
    VllmMode,
)
from .results import (
    Alert,
    BudgetMetric,
    DerivedSettings,
    Estimates,
    EvalRecord,
    JobSpec,
    PhaseSplit,
    StepChoice,
    StepPoint,
    Plan,
    SizePoint,
    TrainSignal,
    TrendFit,
    arrow_schema,
    check_column_types,
    check_schema,
    to_table,
)
from .settings import (
    DEFAULT_PROFILE,
    ClusterProfile,
    CurateSettings,
    DatasetSpec,
    EvalSettings,
    ModelFacts,
    RecipeFile,
    ResourceSettings,
    Resources,
    RewardSpec,
    RunSpec,
    SftSettings,
    SizeFile,
    SizeSettings,
    StageResources,
    StepSelection,
    StudySettings,
    TrainSettings,
)

__all__ = [
    "SCHEMA_VERSION", "GROUP_SHAPINGS", "Stage", "Finetune", "Shaping", "MaskRule", "LossType", "VllmMode",
    "EvalProtocol", "Intervention", "Backend", "Grader",
    "ModelFacts", "DatasetSpec", "RewardSpec", "TrainSettings", "CurateSettings", "SftSettings", "EvalSettings",
    "Resources", "ClusterProfile", "RunSpec", "StageResources", "ResourceSettings", "SizeSettings", "StudySettings",
    "RecipeFile", "SizeFile", "DEFAULT_PROFILE",
    "Estimates", "DerivedSettings", "JobSpec", "Plan", "EvalRecord", "TrainSignal", "BudgetMetric", "SizePoint", "TrendFit", "PhaseSplit", "Alert",
    "StepPoint", "StepChoice", "StepSelection",
    "arrow_schema", "to_table", "check_schema", "check_column_types", "from_dict", "to_dict",
]
