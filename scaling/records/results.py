"""Records our code creates: the plan's jobs, the jobs' outputs, and the analysis's points and fits.

``JobSpec``/``Plan`` (plan.py -> launch.py); bulk records ``EvalRecord``/``TrainSignal`` are
column schemas: jobs write Parquet through ``to_table``, readers use pyarrow columns and never
build millions of instances; ``BudgetMetric -> SizePoint -> TrendFit`` carry the analysis.
Standard library only (pyarrow is imported inside the Parquet helpers).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import RecordError, short

from .enums import SCHEMA_VERSION
from .settings import ClusterProfile, CurateSettings, Resources, RunSpec, TrainSettings


# ------------------------------------------------------------------------- our records
@dataclass(frozen=True, kw_only=True)
class Estimates:
    """The planner's time and memory estimates for one size (capacity.py's model; hours of one job,
    all array tasks)."""

    train_hours: float = 0.0
    train_gpu_hours: float = 0.0
    train_mem_per_gpu_gb: float = 0.0
    train_ref_mem_gb: float = 0.0  # of train_mem_per_gpu_gb: TRL's reference model (beta > 0, full FT)
    train_requeues: int = 0
    eval_hours: dict[str, float] = field(default_factory=dict)  # benchmark -> hours of its array task
    curate_hours: float | None = None  # None: curation disabled
    sft_hours: float | None = None  # None: SFT disabled
    warnings: dict[str, str] = field(default_factory=dict)  # stage -> why its job may be killed


@dataclass(frozen=True, kw_only=True)
class DerivedSettings:
    """rules.derive_size_settings -> plan.py: one size's settings with every ``None`` the recipe
    left filled by a rule, the jobs' resources, the estimates, and why.

    ``provenance`` names the rule of every derived key (``train.learning_rate`` ->
    ``rule:lr_by_size``; keys the recipe set are absent), ``reasons`` the one line each rule gave
    (``scaling plan --explain`` prints both)."""

    train: TrainSettings
    curate: CurateSettings
    resources: dict[str, Resources]  # stage -> allocation (the recipe's resources.<stage> values win)
    estimates: Estimates
    provenance: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One submission (or one job array). Built by plan.py, submitted by launch.py."""

    name: str  # "<study>.<size>.<stage>" sanitised
    run_id: str
    entry: str  # "scaling.jobs.train:main"
    after: list[str] = field(default_factory=list)  # afterok dependencies, by run_id
    array: list[str] = field(default_factory=list)  # array items (benchmarks); [] = single job
    resources: Resources = field(default_factory=Resources)
    gpu_hours: float = 0.0  # estimate (whole job, all array tasks)
    checkpointable: bool = False  # requeues itself on timeout/preemption
    hours: float = 0.0  # the planner's wall-time estimate (whole job, all array tasks; CPU jobs too)
    signal_delay_s: int = 0  # checkpointable: lead of Slurm's warning signal (capacity.stop_lead_s); 0 = the fixed default


@dataclass(frozen=True, kw_only=True)
class Plan:
    study: str
    profile: ClusterProfile
    runs: list[RunSpec]
    jobs: list[JobSpec]
    gpu_hours: float
    sources: list[str] = field(default_factory=list)  # recipe files, in include order
    # why each rule-derived value is what it is ("8b/train:train.finetune" -> one line), and the
    # planner's estimates ("8b/train:hours" -> "18.3"); shown by `scaling plan --explain`
    notes: dict[str, str] = field(default_factory=dict)

    def run(self, run_id: str) -> RunSpec:
        for r in self.runs:
            if r.run_id == run_id:
                return r
        raise KeyError(run_id)


@dataclass(frozen=True, kw_only=True)
class EvalRecord:
    """One row per (problem, sample, budget). Written by jobs/evaluate.py to
    ``<study>/<size>/eval-<checkpoint>/<benchmark>/records.parquet``; read by collect.py."""

    run_id: str
    model: str
    size: str
    checkpoint: str
    benchmark: str
    problem_id: str
    sample: int
    budget_tokens: int
    finished: bool  # ended on its own within budget_tokens
    correct: bool
    grade: str  # ok | wrong | no_answer | timeout | error | truncated
    response_tokens: int  # tokens scored at this budget (<= budget_tokens, + forced answer)
    thinking_tokens: int
    decoded_tokens: int  # tokens actually decoded for this row's generation (cost accounting)
    answer: str  # extracted answer only; full text in texts.parquet


@dataclass(frozen=True, kw_only=True)
class TrainSignal:
    """One row per logged training step. Written by jobs/trainer_hooks.py to signals.parquet."""

    run_id: str
    size: str
    step: int
    reward_mean: float
    reward_std: float
    accuracy: float
    tokens_mean: float
    tokens_median: float
    tokens_positive_mean: float  # reward > 0
    tokens_negative_mean: float
    tokens_correct_mean: float
    tokens_incorrect_mean: float
    truncated_frac: float  # completions clipped at L_R
    zero_std_frac: float  # groups with zero reward variance
    entropy: float
    kl: float
    # TRL's trainer-vs-vLLM importance-sampling correction (train.vllm_is_mode; NaN without vLLM):
    # sampling/importance_sampling_ratio/{min,mean,max} and sampling/sampling_logp_difference/{mean,max}
    is_ratio_min: float = math.nan
    is_ratio_mean: float = math.nan
    is_ratio_max: float = math.nan
    logp_diff_mean: float = math.nan
    logp_diff_max: float = math.nan


@dataclass(frozen=True, kw_only=True)
class BudgetMetric:
    """One per (size, checkpoint, benchmark, budget). metrics.py."""

    size: str
    checkpoint: str
    benchmark: str
    budget_tokens: int
    k: int
    n_problems: int
    accuracy: float  # mean@k
    accuracy_lo: float
    accuracy_hi: float
    pass_at_k: float
    tokens_mean: float
    tokens_median: float
    tokens_correct_mean: float
    tokens_incorrect_mean: float
    truncated_frac: float
    tokens_per_accuracy: float = float("nan")
    accuracy_per_1k_tokens: float = float("nan")
    tokens_mean_lo: float = float("nan")  # bootstrap interval over problems (metrics.py)
    tokens_mean_hi: float = float("nan")
    n_rows: int = 0  # (problem, sample) rows behind this metric


@dataclass(frozen=True, kw_only=True)
class SizePoint:
    """One size on one trend axis."""

    family: str
    size: str
    params: int
    params_convention: str  # active | total
    arm: str  # base | trained
    benchmark: str
    budget_tokens: int
    metric: str
    value: float
    lo: float
    hi: float
    n_problems: int
    label: str = ""  # display label of the size ("30B-A3B")
    # paired bootstrap replicates of ``value`` (numpy array, resampling problems; the same
    # resamples for every size of a benchmark) or None; fit.py refits on them
    boot: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class TrendFit:
    metric: str
    form: str  # log_linear | saturating
    coef: dict[str, float]
    coef_lo: dict[str, float]
    coef_hi: dict[str, float]
    r2: float
    loso_error: float
    points: list[SizePoint]
    arm: str = ""
    benchmark: str = ""
    budget_tokens: int = 0
    criterion: str = ""  # why this form was chosen (AICc values)
    boot: list[dict[str, float]] = field(default_factory=list, repr=False)  # bootstrap coefs
    params_convention: str = "active"  # x = log10(params_<convention>)
    level: float = 0.95  # coverage of coef_lo/coef_hi and predict() intervals
    resid_sd: float = float("nan")  # sd of the residuals around the fit (metric units)
    point_sd: float = float("nan")  # median sampling sd of the points (metric units)
    loso_errors: dict[str, float] = field(default_factory=dict)  # size -> held-out error
    x_ref: float = 0.0  # log10(params) the coefficients are centred on (fit.py)


@dataclass(frozen=True, kw_only=True)
class PhaseSplit:
    """Two training phases of one size (signals.py -> report.py): length adaptation, then
    reasoning refinement. ``transition_step`` is -1 when the rule finds no plateau."""

    size: str
    run_id: str
    transition_step: int
    reason: str  # how the rule decided (one line)
    steps: int  # logged steps
    tokens_start: float  # smoothed length at the first logged step
    tokens_plateau: float  # the plateau level the rule used
    truncated_frac_adaptation: float = float("nan")  # mean truncation in phase 1
    truncated_frac_refinement: float = float("nan")  # mean truncation in phase 2
    reward_change_refinement: float = float("nan")  # reward at the end minus at the transition
    accuracy_change_refinement: float = float("nan")


@dataclass(frozen=True, kw_only=True)
class Alert:
    """A warning the report must show (signals.py -> report.py)."""

    kind: str  # length_collapse | short_is_correct | few_samples | no_plateau | missing
    message: str  # one line, with the numbers that triggered it
    size: str = ""
    benchmark: str = ""
    checkpoint: str = ""


# ------------------------------------------------------- evaluation along training (issue 26)
@dataclass(frozen=True, kw_only=True)
class StepPoint:
    """One point of a size's along-training curve: a checkpoint (step-N or trained) on one
    benchmark at one budget, with the bootstrap intervals of the rest of the report."""

    size: str
    checkpoint: str  # step-N | trained
    step: int  # N; trained = train.max_steps
    benchmark: str
    budget_tokens: int
    held_out: bool  # the eval.select_step benchmark (never a reported test benchmark)
    accuracy: float
    accuracy_lo: float
    accuracy_hi: float
    tokens_mean: float
    tokens_mean_lo: float
    tokens_mean_hi: float
    value: float = float("nan")  # the selection metric (held-out points only)


@dataclass(frozen=True, kw_only=True)
class StepChoice:
    """The step eval.select_step chose for one size, and its optimism on one test benchmark:
    selected minus final accuracy at the budget, paired bootstrap interval (0 when final is chosen)."""

    size: str
    selected: str  # step-N | trained
    selected_step: int
    final_step: int
    select_benchmark: str
    metric: str
    select_budget: int
    benchmark: str  # the test benchmark the optimism is measured on
    budget_tokens: int
    optimism: float
    optimism_lo: float
    optimism_hi: float


# ------------------------------------------------------------------- bulk <-> Parquet
_ARROW_TYPES = {"str": "string", "int": "int64", "bool": "bool", "float": "float64"}


def arrow_schema(cls: type) -> Any:
    """The Parquet schema of a bulk record class (EvalRecord, TrainSignal)."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_(), "float64": pa.float64()}
    fields = [pa.field(f.name, types[_ARROW_TYPES[str(f.type)]]) for f in dataclasses.fields(cls)]
    return pa.schema(fields, metadata={"schema_version": SCHEMA_VERSION, "record": cls.__name__})


def to_table(rows: list[Any] | dict[str, list[Any]], cls: type) -> Any:
    """Rows (record instances, dicts, or a dict of columns) -> a pyarrow Table with metadata."""
    import pyarrow as pa

    schema = arrow_schema(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    # a column added later with a default (TrainSignal's IS columns): rows or columns written before it get the default
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    if isinstance(rows, dict):
        length = len(next(iter(rows.values()), []))
        cols = {**{n: [defaults[n]] * length for n in defaults if n not in rows}, **rows}
    else:
        cols = {n: [] for n in names}
        for r in rows:
            d = r if isinstance(r, dict) else dataclasses.asdict(r)
            for n in names:
                cols[n].append(d[n] if n in d or n not in defaults else defaults[n])
    return pa.Table.from_pydict({f.name: cols[f.name] for f in schema}, schema=schema)


def check_schema(metadata: dict[bytes, bytes] | None, cls: type, path: str) -> None:
    """Refuse a file whose schema major version we do not know."""

    meta = {k.decode(): v.decode() for k, v in (metadata or {}).items()}
    version = meta.get("schema_version")
    if version is None:
        raise RecordError(f"{path}: no schema_version in metadata; not written by scaling (rerun the job)")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise RecordError(
            f"{path}: schema_version {version} is not supported (this scaling reads {SCHEMA_VERSION}); "
            "upgrade scaling or rerun the job"
        )


def check_column_types(table: Any, cls: type, path: str) -> Any:
    """Refuse (RecordError naming the file and column) a records table whose columns cannot be
    cast to the record's types (a hand-edited or foreign file: ``response_tokens`` as text), so
    aggregation never fails deep inside pyarrow. Returns the table unchanged."""
    import pyarrow as pa


    expected = arrow_schema(cls)
    for name in table.column_names:
        if name not in expected.names:
            continue
        want, col = expected.field(name).type, table.column(name)
        got = col.type
        if got == want or (pa.types.is_dictionary(got) and got.value_type == want):
            continue
        try:
            col.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError) as err:
            raise RecordError(f"{path}: column {name!r} is {got} where {cls.__name__} has {want} and cannot be "
                              f"converted ({short(' '.join(str(err).split()), 120)}); rerun the job that wrote it, "
                              "or remove its DONE marker and `scaling resume`") from None
    return table
