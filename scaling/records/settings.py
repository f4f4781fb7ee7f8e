"""YAML-facing records: what recipes, cluster profiles and run.yaml hold.

Plain ``kw_only`` dataclasses. They double as the omegaconf schema that validates recipes
(unknown keys, wrong types, bad enum values) and they type the plan. ``None`` in a field means
"not set in the recipe: derived by a rule in ``rules.py``"; a planned ``RunSpec`` has no ``None``
left in the fields the job reads. The last block is the recipe files' own schema (a size's
sections, a study file, a family/size file). The method's values are set in
recipes/method/efficient_reasoning.yaml (what every study plans with and ``--explain`` cites);
the defaults here mirror them for settings built in code (tests, perf scripts), and
tests/unit/test_recipe.py::test_record_defaults_are_the_method_values keeps the two equal.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .enums import (
    Backend,
    EvalProtocol,
    Finetune,
    Intervention,
    LossType,
    MaskRule,
    Shaping,
    Stage,
    VllmMode,
)

DEFAULT_PROFILE = "h100_8x80gb"  # study.profile when a recipe names none


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
    # computed by paramcount.py when not given (None); a given value is checked within 2%
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
    # TRL's trainer-vs-vLLM importance-sampling correction (GRPOConfig.vllm_importance_sampling_mode):
    # token_truncate | token_mask | sequence_truncate | sequence_mask; None = rule:vllm_is_mode
    vllm_is_mode: str | None = None
    vllm_is_cap: float = 3.0  # C_max of that correction (TRL 1.16 vllm_importance_sampling_clip_max default)
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
    report_to: list[str] = field(default_factory=list)  # trackio | tensorboard | wandb (jobs/tracking.py)


@dataclass(kw_only=True)
class StepSelection:
    """eval.select_step: pick a training step per size on a held-out benchmark (scaling/schedule.py)."""

    benchmark: str = ""  # held out: not one of eval.benchmarks
    metric: str = "accuracy"  # accuracy | pass_at_k | accuracy_per_1k_tokens (higher is better)
    budget: int | None = None  # one of eval.budgets; None = the largest


@dataclass(kw_only=True)
class CodeEvalSettings:
    """eval.code: how a ``grader: code`` benchmark's programs run (scaling/codegrade.py, docs/evaluation.md)."""

    allow_unsandboxed: bool = False  # run model code without bubblewrap when it cannot start (the report flags it)


@dataclass(kw_only=True)
class EvalSettings:
    benchmarks: list[str] = field(default_factory=list)
    budgets: list[int] = field(default_factory=lambda: [2048, 4096, 8192, 16384, 32768])
    samples_per_problem: int = 8  # k
    temperature: float = 0.6  # Qwen3 thinking defaults
    top_p: float = 0.95
    top_k: int = 20
    enable_thinking: bool = True
    protocol: EvalProtocol = EvalProtocol.truncation
    answer_tokens: int = 32  # budget-forcing continuation cap
    intervention: Intervention = Intervention.none
    stop_gamma: float = 1.0  # TS: multiply p(</think>) by gamma (>1 ends earlier)
    stop_tau: float | None = None  # TS temperature mode: divide the </think> logit by tau
    min_thinking_tokens: int = 0  # s1: below this, replace </think> with "Wait"
    max_waits: int = 2
    max_thinking_tokens: int | None = None  # s1: force </think> here
    checkpoints: list[str] = field(default_factory=lambda: ["base", "trained"])  # + step-N, 'every N' (schedule.py)
    select_step: StepSelection | None = None  # issue 26: choose a step on a held-out benchmark
    max_problems: int | None = None
    backend: Backend = Backend.auto
    grade_timeout_s: float = 5.0
    batch_size: int = 64  # prompts per generate() call (transformers backend)
    chunk_requests: int = 1024  # (problem x sample) requests per resumable chunk of an eval job
    code: CodeEvalSettings = field(default_factory=CodeEvalSettings)  # issue 24: code benchmarks


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


# ------------------------------------------------------------------- recipe files
@dataclass(kw_only=True)
class StageResources:
    """Per-stage resource overrides (``resources.train.nodes: 2``). ``None`` = rules.py decides."""

    nodes: int | None = None
    gpus_per_node: int | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    timeout_min: int | None = None
    tensor_parallel: int | None = None
    data_parallel: int | None = None


@dataclass(kw_only=True)
class ResourceSettings:
    curate: StageResources = field(default_factory=StageResources)
    sft: StageResources = field(default_factory=StageResources)
    train: StageResources = field(default_factory=StageResources)
    eval: StageResources = field(default_factory=StageResources)


@dataclass(kw_only=True)
class SizeSettings:
    """Everything one size resolves to: the schema of method, family and size files and of a
    study's ``sizes.<key>:`` block."""

    model: ModelFacts = field(default_factory=ModelFacts)
    train: TrainSettings = field(default_factory=TrainSettings)
    curate: CurateSettings = field(default_factory=CurateSettings)
    sft: SftSettings = field(default_factory=SftSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)


@dataclass(kw_only=True)
class StudySettings:
    """The ``study:`` section of a study recipe."""

    name: str = ""  # [a-z0-9_-]+, the study directory under runs_dir
    family: str = ""  # recipes/families/<family>/
    sizes: list[str] = field(default_factory=list)  # size keys (or labels), in ladder order
    profile: str = DEFAULT_PROFILE  # slurm/profiles/<name>.yaml or a path
    seed: int = 0
    runs_dir: str = "runs"
    description: str = ""


@dataclass(kw_only=True)
class RecipeFile(SizeSettings):
    """The schema of a study recipe (and of any file a study includes)."""

    include: list[str] = field(default_factory=list)
    study: StudySettings = field(default_factory=StudySettings)
    sizes: dict[str, SizeSettings] = field(default_factory=dict)


@dataclass(kw_only=True)
class SizeFile(SizeSettings):
    """The schema of a family or size file: facts and per-size settings, no study."""

    include: list[str] = field(default_factory=list)
