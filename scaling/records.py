"""Every record that crosses a stage boundary, in data-flow order.

recipe -> (ModelFacts, *Settings, RewardSpec, Resources) -> RunSpec/JobSpec/Plan
       -> jobs -> EvalRecord / TrainSignal (Parquet columns) -> BudgetMetric -> SizePoint -> TrendFit

Two kinds of record (see docs/architecture.md):

* YAML-facing classes are plain ``kw_only`` dataclasses. They double as the omegaconf schema
  that validates recipes (unknown keys, wrong types, bad enum values) and they type the plan.
  ``None`` in a field means "not set in the recipe: derived by a rule in ``rules.py``"; a
  planned ``RunSpec`` has no ``None`` left in the fields the job reads.
* Records only our code creates are ``frozen=True``.

Bulk records (EvalRecord, TrainSignal) are column schemas: jobs write Parquet through
``to_table``; readers use pyarrow columns and never build millions of instances.
This module imports the standard library only (pyarrow is imported inside the two helpers).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "1.0"  # major.minor; readers refuse an unknown major version


# ----------------------------------------------------------------------------------- enums
class Stage(str, enum.Enum):
    curate = "curate"  # base-model pass rate per prompt -> easy-prompt set
    sft = "sft"  # optional supervised stage (Paper B "supervision")
    train = "train"  # GRPO with a length-aware reward
    eval = "eval"  # budget spectrum evaluation


class Finetune(str, enum.Enum):
    full = "full"
    lora = "lora"


class Shaping(str, enum.Enum):
    vanilla = "vanilla"  # R = 1[correct]
    truncation = "truncation"  # R = 1[correct] * 1[len <= L_T]   (Art's choice)
    kimi = "kimi"  # Kimi-1.5 group min/max normalised
    laser = "laser"
    laser_d = "laser_d"
    l1_exact = "l1_exact"  # L1/LCPO, target in the prompt
    l1_max = "l1_max"
    dapo_overlong = "dapo_overlong"  # correctness + DAPO soft overlong punishment
    tldr = "tldr"  # multi-level length control (Paper B)


# shapings whose reward uses the whole group of a prompt: a process must hold whole groups
# (the layout search in capacity.py, plan.whole_groups_problem, jobs/train.py)
GROUP_SHAPINGS = frozenset({Shaping.kimi, Shaping.laser_d, Shaping.tldr})


class MaskRule(str, enum.Enum):
    """Which rollouts are excluded from the loss (Art's masking variants).

    -I = [incorrect]; -L&C = [long_correct]; -L&C-S&I = [long_correct, short_incorrect];
    -L&C-L&I = [long_correct, long_incorrect]. "long" means len > L_T.
    """

    incorrect = "incorrect"
    long_correct = "long_correct"
    short_incorrect = "short_incorrect"
    long_incorrect = "long_incorrect"


class LossType(str, enum.Enum):  # TRL GRPOConfig.loss_type
    dapo = "dapo"
    grpo = "grpo"
    dr_grpo = "dr_grpo"
    bnpo = "bnpo"


class VllmMode(str, enum.Enum):
    none = "none"  # transformers generate (CPU, tests)
    colocate = "colocate"
    server = "server"


class Protocol(str, enum.Enum):
    truncation = "truncation"  # scored at B only if finished within B (default)
    budget_forcing = "budget_forcing"  # at B close the thinking block and let it answer


class Intervention(str, enum.Enum):
    none = "none"
    stop_temperature = "stop_temperature"  # Paper B TS: scale the </think> decision
    budget_forcing = "budget_forcing"  # s1: "Wait" below a minimum, force end at a maximum


class Backend(str, enum.Enum):
    auto = "auto"  # vllm when importable and CUDA is present, else transformers
    vllm = "vllm"
    transformers = "transformers"


class Grader(str, enum.Enum):
    math = "math"  # math-verify
    choice = "choice"  # multiple choice letter (GPQA)


# ------------------------------------------------------------------------- YAML-facing
@dataclass(kw_only=True)
class ModelFacts:
    """Architecture facts of one model. Written by recipes/families/<f>/<size>.yaml or by
    ``facts.facts_from_config`` (config.json); read by rules/plan and carried in RunSpec."""

    family: str = ""
    size: str = ""  # key, no dots: "30b_a3b"
    label: str = ""  # display: "30B-A3B"
    hf_id: str = ""  # hub id or local path
    model_type: str = ""  # config.json model_type: qwen3, qwen3_moe, llama, ...
    hidden_size: int = 0
    num_layers: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0  # 0 = hidden_size // num_heads
    intermediate_size: int = 0  # dense MLP width (also dense layers of a MoE)
    vocab_size: int = 0
    tie_embeddings: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm on q and k per head
    attention_bias: bool = False
    max_position: int = 32768
    # MoE (num_experts == 0 means dense)
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_experts: int = 0  # number of always-on shared experts
    shared_intermediate_size: int = 0  # width of the shared expert MLP (0 = moe_intermediate_size)
    dense_layers: int = 0  # leading dense layers before MoE starts (DeepSeek first_k_dense)
    moe_every: int = 1  # a MoE layer every N layers (Mixtral/Qwen: 1)
    # multi-head latent attention (DeepSeek-V2); kv_lora_rank == 0 means ordinary (GQA) attention
    kv_lora_rank: int = 0  # width of the compressed KV latent (what the KV cache stores)
    q_lora_rank: int = 0  # 0 = full-rank q projection (V2-Lite)
    qk_rope_head_dim: int = 0  # per-head rotary part of q/k (shared k rope across heads)
    qk_nope_head_dim: int = 0  # per-head non-rotary part of q/k
    v_head_dim: int = 0  # per-head value width
    # chat / thinking facts the evaluation needs
    thinking: str = "hybrid"  # hybrid (enable_thinking switch) | always | none
    think_start: str = "<think>"
    think_end: str = "</think>"
    # computed by facts.py when not given (None); a given value is checked within 2%
    params_total: int | None = None
    params_active: int | None = None
    params_embedding: int | None = None


@dataclass(kw_only=True)
class DatasetSpec:
    """Where prompts come from: a hub id or a local JSONL/Parquet path, and its columns."""

    source: str = ""  # hub id ("taki555/DeepScaleR-Easy") or path (*.jsonl, *.parquet)
    split: str = "train"
    subset: str | None = None
    problem_column: str = "problem"
    answer_column: str = "answer"
    id_column: str | None = None
    prompt_suffix: str = ""
    max_rows: int | None = None


@dataclass(kw_only=True)
class RewardSpec:
    shaping: Shaping = Shaping.truncation
    target_length: int | None = None  # L_T (tokens); None = L_R (rule: target_length)
    alpha: float = 0.4  # Kimi / Laser / Laser-D coefficient (Art: 0.4)
    mask: list[MaskRule] = field(default_factory=list)
    # Laser-D difficulty buckets (group accuracy >= 2/3 "easy", [1/3, 2/3) "medium", < 1/3 "hard"):
    # bucket -> its own L_T; {} = one target (target_length) for every bucket
    laser_d_targets: dict[str, int] = field(default_factory=dict)
    # L1 / LCPO
    l1_alpha: float = 0.0003
    l1_delta: float = 0.5
    l1_min_target: int = 100
    l1_max_target: int = 4000
    # DAPO soft overlong
    overlong_cache: int = 4096
    overlong_factor: float = 1.0
    # TLDR-style multi-level control: level -> lambda, and level -> prompt tag
    levels: dict[str, float] = field(default_factory=lambda: {"short": 0.5, "medium": 0.2, "long": 0.0})
    level_tags: dict[str, str] = field(
        default_factory=lambda: {
            "short": "Think briefly.",
            "medium": "Think moderately.",
            "long": "Think thoroughly.",
        }
    )
    length_penalty: str = "linear"  # tldr f(len): linear (len/L_R) | group | hinge
    grade_timeout_s: float = 5.0


@dataclass(kw_only=True)
class TrainSettings:
    """GRPO settings of one size (Art guidelines + per-size rules)."""

    rollout_limit: int | None = None  # L_R, max completion tokens while training
    num_generations: int = 24  # N rollouts per prompt (Art: 24 recommended)
    prompts_per_step: int | None = None  # prompts per rollout batch (Art: 128 / 32)
    learning_rate: float | None = None
    max_steps: int = 600
    finetune: Finetune | None = None  # None = rule (memory)
    zero_stage: int | None = None  # 0 (DDP) | 2 | 3; None = rule (memory)
    vllm_mode: VllmMode | None = None  # None = rule (colocate if it fits, else server)
    temperature: float = 0.6
    top_p: float = 1.0
    top_k: int = 0
    beta: float = 0.001  # KL coefficient (Laser default; Art silent)
    epsilon: float = 0.2  # clip-low (Laser default)
    epsilon_high: float = 0.28  # clip-high (Art)
    loss_type: LossType = LossType.dapo
    scale_rewards: str = "group"  # group | batch | none
    mask_truncated_completions: bool = False
    off_policy_staleness: int = 1  # 1 = on-policy; S>1 -> steps_per_generation = S
    max_prompt_length: int = 1024
    # prompts per optimiser step; None = rule:mini_batch (prompts_per_step // off_policy_staleness,
    # i.e. on-policy as in Art; the Laser recipe used 64 of 128)
    mini_batch_prompts: int | None = None
    per_device_batch: int | None = None  # completions per device per micro-step; None = rule
    lora_rank: int = 64
    lora_alpha: int = 128
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    save_steps: int = 50
    logging_steps: int = 1
    warmup_ratio: float = 0.0
    gradient_checkpointing: bool = True
    report_to: list[str] = field(default_factory=list)  # tensorboard | wandb | trackio
    enable_thinking: bool = True
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    reward: RewardSpec = field(default_factory=RewardSpec)


@dataclass(kw_only=True)
class CurateSettings:
    """Easy-prompt curation: keep prompts whose base-model pass rate is in (min, max]."""

    enabled: bool = True
    samples: int = 8  # k rollouts per prompt (Art: 8)
    min_pass_rate: float = 0.5  # exclusive lower bound (Art: pass rate > 0.5)
    max_pass_rate: float = 1.0  # inclusive upper bound
    max_tokens: int | None = None  # generation limit for scoring; None = rollout_limit
    max_prompts: int | None = None


@dataclass(kw_only=True)
class SftSettings:
    enabled: bool = False
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    text_column: str = "completion"  # the trace column (problem column gives the prompt)
    epochs: float = 1.0
    learning_rate: float = 1e-5
    batch_size: int = 16
    max_length: int = 4096
    max_steps: int = -1


@dataclass(kw_only=True)
class EvalSettings:
    benchmarks: list[str] = field(default_factory=list)
    budgets: list[int] = field(default_factory=lambda: [2048, 4096, 8192, 16384, 32768])
    samples_per_problem: int = 8  # k
    temperature: float = 0.6  # Qwen3 thinking defaults
    top_p: float = 0.95
    top_k: int = 20
    enable_thinking: bool = True
    protocol: Protocol = Protocol.truncation
    answer_tokens: int = 32  # budget-forcing continuation cap
    intervention: Intervention = Intervention.none
    stop_gamma: float = 1.0  # TS: multiply p(</think>) by gamma (>1 ends earlier)
    stop_tau: float | None = None  # TS temperature mode: divide the </think> logit by tau
    min_thinking_tokens: int = 0  # s1: below this, replace </think> with "Wait"
    max_waits: int = 2
    max_thinking_tokens: int | None = None  # s1: force </think> here
    checkpoints: list[str] = field(default_factory=lambda: ["base", "trained"])
    max_problems: int | None = None
    backend: Backend = Backend.auto
    grade_timeout_s: float = 5.0
    batch_size: int = 64  # prompts per generate() call (transformers backend)
    chunk_requests: int = 1024  # (problem x sample) requests per resumable chunk of an eval job


@dataclass(kw_only=True)
class Resources:
    """One job's allocation, in submitit's generic names so slurm.py only renames."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int = 2
    mem_gb: int = 8
    timeout_min: int = 60
    tensor_parallel: int = 1  # vLLM TP (rollouts for train, generation for eval)
    data_parallel: int = 1  # vLLM replicas per job (eval)


@dataclass(kw_only=True)
class ClusterProfile:
    """Cluster facts (slurm/profiles/*.yaml): data, not templates."""

    name: str = "local"
    gpu_name: str = "none"
    gpu_mem_gb: float = 0.0
    gpu_tflops: float = 0.0  # dense bf16 peak per GPU
    gpus_per_node: int = 0
    cpus_per_node: int = 2
    mem_per_node_gb: int = 16
    max_nodes: int = 1
    max_time_min: int = 60 * 24
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)  # lines run before each job (module load ...)
    array_parallelism: int = 8  # concurrency cap of evaluation arrays
    cpus_per_job: int = 0  # CPU profiles only: cores one job uses (0 = the whole node); see capacity.job_resources
    requeue: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # other sbatch options, verbatim
    # environment variables a Slurm job receives (sbatch --export=NAME,...); [] = Slurm's default,
    # the whole environment (--export=ALL), which slurmctld keeps in its state directory until
    # ~MinJobAge (300 s) after the job ends, tokens included (docs/launching.md)
    export: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class RunSpec:
    """plan.py -> run.yaml. The ONLY input a job body reads. Fully resolved.

    Paths are relative to the study directory so a study directory can move.
    ``model_source`` is a hub id or path for base models; ``init_from`` names the run whose
    output (``<study>/<init_from>/model``) this job starts from ("" = model_source).
    """

    study: str
    run_id: str  # "8b/train"
    size: str  # "8b"
    stage: Stage
    model: ModelFacts
    model_source: str
    init_from: str = ""
    checkpoint: str = ""  # eval: "base" | "trained"
    train: TrainSettings | None = None
    curate: CurateSettings | None = None
    sft: SftSettings | None = None
    eval: EvalSettings | None = None
    resources: Resources = field(default_factory=Resources)
    seed: int = 0
    provenance: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------- our records
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
    """One row per logged training step. Written by jobs/train.py to signals.parquet."""

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
    if isinstance(rows, dict):
        cols = rows
    else:
        names = [f.name for f in dataclasses.fields(cls)]
        cols = {n: [] for n in names}
        for r in rows:
            d = r if isinstance(r, dict) else dataclasses.asdict(r)
            for n in names:
                cols[n].append(d[n])
    return pa.Table.from_pydict({f.name: cols[f.name] for f in schema}, schema=schema)


def check_schema(metadata: dict[bytes, bytes] | None, cls: type, path: str) -> None:
    """Refuse a file whose schema major version we do not know."""
    from .errors import RecordError

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

    from .errors import RecordError, short

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


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (possibly nested) YAML-facing dataclass from plain data, through omegaconf's
    structured validation (so run.yaml is checked exactly like a recipe).

    Values are literal: a ``${...}`` string (which omegaconf would resolve, e.g. to an
    environment variable) is refused, so a hand-edited run.yaml cannot pull a secret into a job's
    outputs. Recipes refuse it at ``scaling check`` already."""
    from omegaconf import OmegaConf

    from .errors import RecordError

    def scan(v: Any, key: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                scan(x, f"{key}.{k}" if key else str(k))
        elif isinstance(v, (list, tuple)):
            for x in v:
                scan(x, key)
        elif isinstance(v, str) and "${" in v:
            raise RecordError(f"{cls.__name__}: {key}: '${{...}}' interpolation is not allowed (values are literal); "
                              "re-plan the study with `scaling launch`")

    scan(data, "")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))


def to_dict(obj: Any) -> Any:
    """A dataclass -> plain data (enums as their values) for YAML/JSON."""

    def conv(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return conv(obj)
