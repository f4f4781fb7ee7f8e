"""eval.checkpoints schedules (issue 26, item 3): spelling, plan-time refusals, the job graph,
the model a step's eval loads, the kept checkpoints, and golden plans unchanged without a schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaling.cli import main
from scaling.errors import JobError, PlanError, RecipeError
from scaling.plan import make_plan, plan_from_json, plan_to_json
from scaling.recipe import load_study
from scaling.schedule import checkpoint_problem, expand_checkpoints, scheduled_steps, select

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "tiny-ladder.yaml"
SCHEDULE = ["eval.checkpoints=[base,trained,every 12]"]
SELECT = ["eval.select_step.benchmark=tiny_arith_val", "eval.select_step.budget=128"]


# the tiny ladder itself evaluates along training (recipes/tiny-ladder.yaml); these tests start
# from the same recipe without a schedule, so each one says what it adds
PLAIN = ["eval.checkpoints=[base,trained]", "eval.select_step=null"]


def _plan(*sets: str, sizes=("0_1m", "0_3m")):
    return make_plan(load_study(TINY, PLAIN + list(sets), sizes=list(sizes)))


# ------------------------------------------------------------------------- spelling
@pytest.mark.parametrize("entries, want", [
    (["base", "trained"], ["base", "trained"]),
    (["base", "trained", "every 12"], ["base", "trained", "step-12", "step-24"]),
    (["every 12 steps", "trained"], ["step-12", "step-24", "trained"]),
    (["step-12", "24", "trained"], ["step-12", "step-24", "trained"]),
    (["every 12", "step-24"], ["step-12", "step-24"]),  # a step listed twice: once
])
def test_expand_checkpoints(entries, want):
    assert checkpoint_problem(entries) is None
    assert expand_checkpoints(entries, 36) == want


@pytest.mark.parametrize("entries, words", [
    (["base", "last"], "unknown checkpoint 'last'"),
    (["step-0"], "steps start at 1"),
    (["every 0"], "steps start at 1"),
    (["base", "base"], "listed twice"),
    (["step-12", "12"], "listed twice"),
])
def test_bad_spellings_are_refused_with_the_fix(entries, words):
    problem = checkpoint_problem(entries)
    assert problem is not None and words in problem


def test_a_bad_spelling_is_a_one_line_check_error_naming_the_key(capsys):
    with pytest.raises(RecipeError) as err:
        load_study(TINY, ["eval.checkpoints=[base,trained,sometimes]"])
    text = str(err.value)
    assert "eval.checkpoints" in text and "every N" in text and "\n" not in text
    assert main(["check", str(TINY), "--set", "eval.checkpoints=[base,trained,sometimes]"]) == 2


# ------------------------------------------------------------------ plan-time refusals
@pytest.mark.parametrize("sets, words", [
    (["eval.checkpoints=[base,trained,step-10]"], "step-10 is not a multiple of train.save_steps=12"),
    (["eval.checkpoints=[base,trained,every 10]"], "'every 10' is not a multiple of train.save_steps=12"),
    (["eval.checkpoints=[base,trained,step-48]"], "is never reached"),
    (["eval.checkpoints=[base,trained,step-24]"], "is the final model: use 'trained'"),  # 0_1m: max_steps 24
    (["eval.checkpoints=[base,trained,every 12]", "train.finetune=lora"], "train.finetune=lora saves adapters"),
    (SCHEDULE + ["eval.select_step.benchmark=tiny_arith"], "is a reported test benchmark"),
    (SCHEDULE + ["eval.select_step.benchmark=tiny_arith_val", "eval.select_step.metric=tokens"], "metric='tokens' is unknown"),
    (SCHEDULE + ["eval.select_step.benchmark=tiny_arith_val", "eval.select_step.budget=100"], "not one of eval.budgets"),
    (["eval.select_step.benchmark=tiny_arith_val"], "needs intermediate steps"),
])
def test_plan_refuses_what_no_checkpoint_can_serve(sets, words):
    with pytest.raises(PlanError) as err:
        _plan(*sets)
    assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert "eval." in str(err.value)


def test_an_unknown_selection_benchmark_is_refused_at_check_time():
    with pytest.raises(RecipeError) as err:
        load_study(TINY, SCHEDULE + ["eval.select_step.benchmark=no_such_bench"])
    assert "eval.select_step.benchmark" in str(err.value)


# -------------------------------------------------------------------------- the graph
def test_the_schedule_adds_one_eval_array_per_step_after_training():
    plan = _plan(*SCHEDULE, *SELECT)
    ids = [j.run_id for j in plan.jobs]
    # 0_1m trains 24 steps (-> step 12), 0_3m 36 (-> steps 12 and 24): per size, from its own max_steps
    assert [i for i in ids if i.startswith("0_1m/eval")] == ["0_1m/eval-base", "0_1m/eval-trained", "0_1m/eval-step-12"]
    assert [i for i in ids if i.startswith("0_3m/eval")] == ["0_3m/eval-base", "0_3m/eval-trained", "0_3m/eval-step-12",
                                                            "0_3m/eval-step-24"]
    for size, step in (("0_1m", 12), ("0_3m", 12), ("0_3m", 24)):
        job = next(j for j in plan.jobs if j.run_id == f"{size}/eval-step-{step}")
        run = plan.run(job.run_id)
        assert job.after == [f"{size}/train"] and run.init_from == f"{size}/train" and run.checkpoint == f"step-{step}"
        assert job.array == ["tiny_arith", "tiny_arith_ood", "tiny_code", "tiny_arith_val"]  # + the held-out benchmark
        assert job.entry == "scaling.jobs.evaluate:main"
    # the final model is a candidate too; the base model is not
    assert next(j for j in plan.jobs if j.run_id == "0_1m/eval-trained").array[-1] == "tiny_arith_val"
    assert next(j for j in plan.jobs if j.run_id == "0_1m/eval-base").array == ["tiny_arith", "tiny_arith_ood", "tiny_code"]
    # the train run carries the schedule (its job keeps every checkpoint); the JSON round trip keeps it all
    assert plan.run("0_1m/train").eval is not None
    assert scheduled_steps(plan.run("0_1m/train").eval.checkpoints, 24) == [12]
    back = plan_from_json(plan_to_json(plan))
    assert back.run("0_3m/eval-step-24").checkpoint == "step-24"
    assert back.run("0_3m/eval-step-24").eval.select_step.benchmark == "tiny_arith_val"


def test_without_a_schedule_the_plan_is_unchanged():
    plain, sched = _plan(), _plan("eval.checkpoints=[base,trained]")
    assert _plan(*SCHEDULE) != plain  # the recipe's own schedule is really switched off in plain
    assert [j.run_id for j in plain.jobs] == [j.run_id for j in sched.jobs]
    assert plain.run("0_1m/train").eval is None  # no eval section in the train run.yaml
    assert [(j.run_id, j.array, j.after, j.gpu_hours) for j in plain.jobs] == \
           [(j.run_id, j.array, j.after, j.gpu_hours) for j in sched.jobs]


@pytest.mark.parametrize("recipe, profile", [("qwen3-ladder", "h100_8x80gb"), ("art-paper", "h100_8x80gb")])
def test_golden_plans_do_not_change(recipe, profile):
    from tests.unit.test_plan import _summary  # the golden record's own format

    got = _summary(make_plan(load_study(ROOT / "recipes" / f"{recipe}.yaml", profile=profile)))
    assert got == (ROOT / "tests" / "golden" / "plan" / f"{recipe}.{profile}.txt").read_text().splitlines()


def test_explain_shows_the_steps_and_where_their_models_come_from(capsys):
    rc = main(["plan", str(TINY), "--sizes", "0_3m", "--explain", "0_3m", "--set", SCHEDULE[0]])
    out = capsys.readouterr().out
    assert rc == 0
    assert "0_3m/eval-step-24" in out
    assert "steps 12, 24 from 0_3m/train/checkpoints/checkpoint-<step>" in out
    line = next(x for x in out.splitlines() if "eval.checkpoints " in x and "'every 12'" in x)
    assert "--set" in line  # the value as the recipe spells it, with its source (first shown in the train run)


# ------------------------------------------------------------------ on the node
def test_a_step_eval_loads_the_train_jobs_checkpoint(tmp_path):
    from scaling.jobs.models import resolve_model

    plan = _plan(*SCHEDULE)
    run = plan.run("0_3m/eval-step-24")
    with pytest.raises(JobError) as err:
        resolve_model(run, tmp_path)
    assert "checkpoint-24" in str(err.value) and "scaling resume" in str(err.value)
    ck = tmp_path / "0_3m" / "train" / "checkpoints" / "checkpoint-24"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text("{}")
    (tmp_path / "0_3m" / "train" / "model").mkdir()
    (tmp_path / "0_3m" / "train" / "model" / "config.json").write_text("{}")
    assert resolve_model(run, tmp_path) == str(ck)
    assert resolve_model(plan.run("0_3m/eval-trained"), tmp_path) == str(tmp_path / "0_3m" / "train" / "model")


def test_a_training_job_with_a_schedule_keeps_every_checkpoint(tmp_path):
    pytest.importorskip("trl")
    from scaling.jobs.train_config import make_grpo_config

    with_schedule = make_grpo_config(_plan(*SCHEDULE).run("0_1m/train"), tmp_path, "cpu")
    without = make_grpo_config(_plan().run("0_1m/train"), tmp_path, "cpu")
    assert with_schedule.save_total_limit is None and with_schedule.save_steps == 12
    assert without.save_total_limit == 2


def test_select_takes_the_argmax_and_the_earliest_of_ties():
    order = ["step-12", "step-24", "trained"]
    assert select({"step-12": 0.5, "step-24": 0.7, "trained": 0.6}, order) == "step-24"
    assert select({"step-12": 0.7, "step-24": 0.7, "trained": 0.7}, order) == "step-12"
    assert select({"step-12": float("nan"), "step-24": 0.1, "trained": 0.2}, order) == "trained"
