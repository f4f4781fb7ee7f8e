"""Reward shapings on hand-made completions: values, truncation, malformed answers, huge outputs,
grader timeouts, masking, and pickling (submitit ships the reward to the node)."""

from __future__ import annotations

import doctest
import pickle
import re
from dataclasses import dataclass

import pytest

from scaling import reward_terms, rewards
from scaling.records import MaskRule, RewardSpec, Shaping
from scaling.rewards import ShapedReward


@dataclass(frozen=True)
class FakeGrade:
    correct: bool
    status: str
    answer: str


def fake_grade_many(responses, golds, *, kind="math", timeout_s=5.0, think_end="</think>", require_think_end=True):
    """Stands in for scaling.grade.grade_many: \\boxed{x} after </think>; "SLOW" -> timeout."""
    out = []
    for r, g in zip(responses, golds):
        if "SLOW" in r:
            out.append(FakeGrade(False, "timeout", ""))
            continue
        if think_end not in r and require_think_end:
            out.append(FakeGrade(False, "truncated", ""))
            continue
        tail = r.split(think_end, 1)[-1]
        m = re.search(r"\\boxed\{([^{}]*)\}", tail)
        if not m:
            out.append(FakeGrade(False, "no_answer", ""))
        else:
            out.append(FakeGrade(m.group(1).strip() == g, "ok" if m.group(1).strip() == g else "wrong", m.group(1)))
    return out


RIGHT = "<think>work</think> so \\boxed{4}"
WRONG = "<think>work</think> so \\boxed{5}"
MALFORMED = "<think>work</think> the answer is \\boxed{4"
UNCLOSED = "<think>still thinking \\boxed{4}"


def make(shaping, rollout_limit=10, n=4, **spec_kw):
    spec = RewardSpec(shaping=Shaping(shaping), **spec_kw)
    return ShapedReward(spec, rollout_limit, n, grader=fake_grade_many)


def call(fn, texts, lengths, prompts=None, answers=None, **kw):
    prompts = prompts or ["P"] * len(texts)
    answers = answers or ["4"] * len(texts)
    ids = [[7] * n for n in lengths]
    return fn(prompts=prompts, completions=texts, completion_ids=ids, answer=answers, **kw)


def test_doctests_of_every_formula_pass():
    res = doctest.testmod(rewards)
    assert res.attempted >= 15 and res.failed == 0


def test_doctests_of_the_terms_the_formulas_share_pass():
    res = doctest.testmod(reward_terms)
    assert res.attempted >= 9 and res.failed == 0


def test_vanilla_rewards_correct_only_and_truncated_is_zero():
    fn = make("vanilla")
    assert call(fn, [RIGHT, WRONG, UNCLOSED, RIGHT], [3, 3, 10, 10]) == [1.0, 0.0, 0.0, 0.0]


def test_truncation_rewards_correct_within_target_only():
    fn = make("truncation", rollout_limit=10, target_length=5)
    # correct short, correct long (<= L_R), wrong short, correct but cut at L_R
    assert call(fn, [RIGHT, RIGHT, WRONG, RIGHT], [5, 6, 2, 10]) == [1.0, 0.0, 0.0, 0.0]


def test_truncation_default_target_is_rollout_limit():
    fn = make("truncation", rollout_limit=10)
    assert fn.target_length == 10
    assert call(fn, [RIGHT, RIGHT], [9, 10]) == [1.0, 0.0]


def test_eos_marks_a_completion_at_the_limit_as_finished():
    spec = RewardSpec(shaping=Shaping.truncation)
    fn = ShapedReward(spec, 4, 2, grader=fake_grade_many, eos_token_ids=[99])
    out = fn(prompts=["P", "P"], completions=[RIGHT, RIGHT], completion_ids=[[1, 2, 3, 99], [1, 2, 3, 4]], answer=["4", "4"])
    assert out == [1.0, 0.0]


def test_malformed_answer_is_incorrect():
    fn = make("vanilla")
    assert call(fn, [MALFORMED, "no think block at all"], [3, 3]) == [0.0, 0.0]


def test_grader_timeout_counts_as_incorrect_and_does_not_raise():
    fn = make("laser_d", target_length=5)
    # a timed-out long completion is "incorrect and long" -> Laser-D's alpha bonus for long wrong ones
    assert call(fn, ["<think>x</think> SLOW \\boxed{4}", RIGHT], [8, 3]) == [pytest.approx(0.4), pytest.approx(1.4)]


def test_huge_outputs_are_measured_in_tokens_not_characters():
    fn = make("truncation", rollout_limit=200_000, target_length=100)
    huge = "<think>" + "x" * 1_000_000 + "</think> \\boxed{4}"
    # a million characters but only 50 tokens -> within target
    assert call(fn, [huge, RIGHT], [50, 150_000]) == [1.0, 0.0]


def test_kimi_group_normalised_with_equal_lengths_defined():
    fn = make("kimi", rollout_limit=100, alpha=0.4)
    out = call(fn, [RIGHT, RIGHT, WRONG, WRONG], [10, 30, 10, 30], prompts=["A", "A", "B", "B"])
    assert out == [pytest.approx(1.2), pytest.approx(0.8), pytest.approx(0.0), pytest.approx(-0.2)]
    same = call(fn, [RIGHT, WRONG], [7, 7], prompts=["C", "C"])
    assert same == [pytest.approx(1.0), pytest.approx(0.0)]


def test_kimi_groups_by_prompt_not_by_batch():
    fn = make("kimi", rollout_limit=100, alpha=0.4)
    # same lengths overall, but each prompt is its own group of equal lengths -> l~ = 0.5
    out = call(fn, [RIGHT, RIGHT], [10, 30], prompts=["A", "B"])
    assert out == [pytest.approx(1.0), pytest.approx(1.0)]


def test_laser_bonus_only_below_target():
    fn = make("laser", target_length=5, alpha=0.4)
    assert call(fn, [RIGHT, RIGHT, WRONG], [4, 5, 1]) == [pytest.approx(1.4), pytest.approx(1.0), 0.0]


def test_laser_d_bucket_targets_follow_group_accuracy():
    fn = make("laser_d", target_length=5, alpha=0.4, laser_d_targets={"easy": 8, "hard": 2})
    easy = call(fn, [RIGHT, RIGHT, RIGHT], [7, 7, 9], prompts=["E"] * 3)
    assert easy == [pytest.approx(1.4), pytest.approx(1.4), pytest.approx(1.0)]
    hard = call(fn, [WRONG, WRONG, WRONG], [1, 2, 3], prompts=["H"] * 3)
    assert hard == [0.0, pytest.approx(0.4), pytest.approx(0.4)]


def test_l1_target_comes_from_the_prompt():
    fn = make("l1_exact", rollout_limit=5000)
    out = call(fn, [RIGHT, RIGHT], [300, 300], prompts=["Q Think for 100 tokens.", "Q Think for 300 tokens."])
    assert out == [pytest.approx(1 - 0.0003 * 200), pytest.approx(1.0)]
    fm = make("l1_max", rollout_limit=5000)
    out = call(fm, [RIGHT, WRONG], [100, 100], prompts=["Q Think for 1000 tokens."] * 2)
    assert out == [pytest.approx(min(1.0, 0.0003 * 900 + 0.5)), 0.0]


def test_dapo_overlong_soft_penalty():
    fn = make("dapo_overlong", rollout_limit=100, overlong_cache=50, overlong_factor=1.0)
    out = call(fn, [RIGHT, RIGHT, WRONG], [40, 75, 99])
    assert out == [pytest.approx(1.0), pytest.approx(0.5), pytest.approx(-0.98)]


def test_tldr_level_tag_sets_the_coefficient():
    fn = make("tldr", rollout_limit=100)
    prompts = ["Q Think briefly.", "Q Think briefly.", "R Think thoroughly.", "S"]
    out = call(fn, [RIGHT, WRONG, RIGHT, RIGHT], [50, 100, 50, 50], prompts=prompts)
    # short lambda 0.5, long 0.0, untagged -> 0 (labelled default)
    assert out == [pytest.approx(0.75), pytest.approx(-0.5), pytest.approx(1.0), pytest.approx(1.0)]


def test_tldr_hinge_and_group_costs():
    fh = make("tldr", rollout_limit=100, target_length=60, length_penalty="hinge")
    assert call(fh, [RIGHT, RIGHT], [50, 80], prompts=["Q Think briefly."] * 2) == [1.0, pytest.approx(0.9)]
    fg = make("tldr", rollout_limit=100, length_penalty="group")
    assert call(fg, [RIGHT, RIGHT], [50, 80], prompts=["Q Think briefly."] * 2) == [1.0, pytest.approx(0.5)]


@pytest.mark.parametrize(
    "rules, expected",
    [
        (["incorrect"], [False, False, True, True]),
        (["long_correct"], [False, True, False, False]),
        (["long_correct", "short_incorrect"], [False, True, True, False]),
        (["long_correct", "long_incorrect"], [False, True, False, True]),
    ],
)
def test_masking_variants_return_none_for_excluded(rules, expected):
    fn = make("truncation", target_length=5, mask=[MaskRule(r) for r in rules])
    out = call(fn, [RIGHT, RIGHT, WRONG, WRONG], [3, 8, 3, 8])
    assert [o is None for o in out] == expected
    assert fn.last_excluded == expected
    assert "-" not in fn.__name__ and fn.__name__.startswith("truncation")


def test_signals_are_logged_through_trl_log_metric():
    fn = make("truncation", target_length=5)
    logged = {}
    call(fn, [RIGHT, RIGHT, WRONG, UNCLOSED], [3, 8, 3, 10], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert logged["signals/n_correct"] == 2 and logged["signals/tokens_correct_sum"] == 11
    assert logged["signals/n_positive"] == 1 and logged["signals/tokens_positive_sum"] == 3
    assert logged["signals/truncated_n"] == 1 and logged["signals/tokens_median"] == 5.5


def test_reward_is_picklable_and_keeps_its_name():
    fn = make("kimi", mask=[MaskRule.long_correct])
    clone = pickle.loads(pickle.dumps(fn))
    assert clone.__name__ == fn.__name__ == "kimi_mask_LC"
    assert call(clone, [RIGHT, WRONG], [3, 3]) == call(fn, [RIGHT, WRONG], [3, 3])


def test_missing_answer_column_is_a_clear_error():
    fn = make("vanilla")
    with pytest.raises(ValueError, match="answer"):
        fn(prompts=["P"], completions=[RIGHT], completion_ids=[[1]])


def test_real_grader_end_to_end_when_available():
    grade = pytest.importorskip("scaling.grade")
    spec = RewardSpec(shaping=Shaping.truncation, target_length=50)
    fn = ShapedReward(spec, 100, 2)
    out = fn(
        prompts=["P", "P"],
        completions=["<think>2+2</think> The answer is \\boxed{4}.", "<think>2+2</think> \\boxed{5}"],
        completion_ids=[[1] * 10, [1] * 10],
        answer=["4", "4"],
    )
    assert out == [1.0, 0.0]
    assert hasattr(grade, "grade_many")


class SpecialThinkTokenizer:
    """Marks </think> special, like a tokenizer whose decode(skip_special_tokens=True) drops it."""

    all_special_tokens = ["<|im_end|>", "<think>", "</think>"]
    vocab = {1: "<think>", 2: "x", 3: "</think>", 4: " \\boxed{4}", 5: "<|im_end|>"}

    def decode(self, ids, skip_special_tokens=False):
        toks = [self.vocab[i] for i in ids]
        if skip_special_tokens:
            toks = [t for t in toks if t not in self.all_special_tokens]
        return "".join(toks)


def test_reward_decodes_ids_itself_when_trl_text_lost_the_think_tag():
    spec = RewardSpec(shaping=Shaping.vanilla)
    ids = [[1, 2, 3, 4, 5]]
    trl_text = [SpecialThinkTokenizer().decode(ids[0], skip_special_tokens=True)]  # "x \\boxed{4}"
    plain = ShapedReward(spec, 100, 1, grader=fake_grade_many)
    assert plain(prompts=["P"], completions=trl_text, completion_ids=ids, answer=["4"]) == [0.0]
    fixed = ShapedReward(spec, 100, 1, grader=fake_grade_many, tokenizer=SpecialThinkTokenizer())
    assert fixed.texts(trl_text, ids) == ["<think>x</think> \\boxed{4}"]
    assert fixed(prompts=["P"], completions=trl_text, completion_ids=ids, answer=["4"]) == [1.0]
    assert pickle.loads(pickle.dumps(fixed)).texts(trl_text, ids) == fixed.texts(trl_text, ids)
