"""The records' enums (YAML values), the schema version, and GROUP_SHAPINGS. Standard library only."""

from __future__ import annotations

import enum

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
# (the layout search in capacity.py, plan.whole_groups_problem, jobs/train_config.py)
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


class EvalProtocol(str, enum.Enum):
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
