"""Issue 22, finding 3, planner side: TRL's trainer-vs-vLLM importance-sampling mode is set by a
written rule (rule:vllm_is_mode, shown by `scaling plan --explain`), a recipe may set it, and a
value TRL does not accept is refused by the plan. The job side is tests/integration/test_vllm_is_trainer.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaling.errors import PlanError
from scaling.plan import make_plan, print_plan
from scaling.recipe import load_study
from scaling.rules import VLLM_IS_MODE, VLLM_IS_MODES

LADDER = Path(__file__).resolve().parents[2] / "recipes" / "qwen3-ladder.yaml"


def test_every_train_run_gets_the_is_mode_from_the_rule_and_explain_says_why(capsys):
    plan = make_plan(load_study(LADDER))
    for run in plan.runs:
        if run.stage.value == "train":
            assert run.train.vllm_is_mode == VLLM_IS_MODE == "token_truncate"
            assert run.provenance["train.vllm_is_mode"] == "rule:vllm_is_mode"
    print_plan(plan, explain="8b")
    out = capsys.readouterr().out
    assert "rule:vllm_is_mode" in out and "sequence_mask" in out and "train.vllm_is_cap" in out


def test_a_recipe_may_choose_another_mode_and_a_wrong_one_is_refused():
    plan = make_plan(load_study(LADDER, sizes=["4b"], overrides=["train.vllm_is_mode=sequence_mask"]))
    assert plan.run("4b/train").train.vllm_is_mode == "sequence_mask"
    assert plan.run("4b/train").provenance["train.vllm_is_mode"] == "--set"
    assert "sequence_mask" in VLLM_IS_MODES
    with pytest.raises(PlanError, match="vllm_is_mode='token', .* TRL accepts the modes token_truncate"):
        make_plan(load_study(LADDER, sizes=["4b"], overrides=["train.vllm_is_mode=token"]))
