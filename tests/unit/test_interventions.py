"""jobs/interventions.py: the per-sequence state machine of stop-temperature and s1 budget forcing."""

from __future__ import annotations

import math

import pytest

from scaling.jobs.interventions import (
    Action,
    InterventionConfig,
    ThinkingController,
    thinking_open_after,
)

END, EOS, WAIT, CUE, X = 9, 0, 5, 6, 1  # token ids of a toy vocabulary


def bf(**kw) -> InterventionConfig:
    base = dict(mode="budget_forcing", think_end_id=END, eos_id=EOS, wait_ids=(WAIT, WAIT + 1), answer_ids=(CUE,),
                answer_tokens=3)
    base.update(kw)
    return InterventionConfig(**base)


def drive(ctl: ThinkingController, wants: list[int]) -> list[int]:
    """Emit tokens: the model 'wants' wants[t] (its top token); forced actions override it,
    suppression replaces a suppressed </think> by X."""
    out = []
    for want in wants:
        act = ctl.action(want)
        tok = act.force if act.force is not None else (X if want in act.suppress else want)
        ctl.observe(tok)
        out.append(tok)
    return out


def test_none_mode_never_acts():
    ctl = ThinkingController(InterventionConfig(mode="none", think_end_id=END))
    assert drive(ctl, [X, END, X]) == [X, END, X]
    assert ctl.action(END).is_noop


def test_stop_temperature_shifts_the_end_logit_by_log_gamma_only_while_thinking():
    ctl = ThinkingController(InterventionConfig(mode="stop_temperature", think_end_id=END, stop_gamma=4.0))
    assert ctl.action(X) == Action(end_logit_shift=math.log(4.0))
    ctl.observe(X)
    ctl.observe(END)
    assert ctl.action(X).is_noop  # thinking closed: stops acting


def test_stop_temperature_tau_mode_and_identity_gamma():
    ctl = ThinkingController(InterventionConfig(mode="stop_temperature", think_end_id=END, stop_tau=2.0))
    assert ctl.action(X) == Action(end_tau=2.0)
    assert ThinkingController(InterventionConfig(mode="stop_temperature", think_end_id=END)).action(X).is_noop


@pytest.mark.parametrize("bad", [dict(stop_gamma=0.0), dict(stop_gamma=-1.0), dict(stop_tau=0.0)])
def test_stop_temperature_refuses_non_positive_factors(bad):
    with pytest.raises(ValueError):
        InterventionConfig(mode="stop_temperature", think_end_id=END, **bad)


def test_budget_forcing_injects_wait_when_the_model_tries_to_stop_early():
    ctl = ThinkingController(bf(min_thinking_tokens=6, max_waits=1))
    out = drive(ctl, [X, END, X, X, END, X, END, X])
    # t=1: wants END below the minimum -> "Wait" (2 tokens) forced; second early END: waits used up
    assert out[:4] == [X, WAIT, WAIT + 1, X]
    assert out[4] == END and ctl.waits == 1 and not ctl.thinking_open


def test_budget_forcing_treats_end_of_sequence_while_thinking_as_trying_to_stop():
    ctl = ThinkingController(bf(min_thinking_tokens=6, max_waits=1))
    assert drive(ctl, [X, EOS, X])[:3] == [X, WAIT, WAIT + 1]


def test_budget_forcing_suppresses_a_non_top_end_below_the_minimum():
    ctl = ThinkingController(bf(min_thinking_tokens=3, max_waits=2))
    assert ctl.action(X) == Action(suppress=(END, EOS))
    ctl.observe_all([X, X, X])
    assert ctl.action(X).is_noop  # minimum reached


def test_budget_forcing_forces_the_end_answer_cue_and_caps_the_answer():
    ctl = ThinkingController(bf(max_thinking_tokens=4))
    out = drive(ctl, [X] * 12)
    assert out[:4] == [X] * 4
    assert out[4:6] == [END, CUE]  # forced end of thinking + the answer cue
    assert out[6:8] == [X, X]  # the model answers ...
    assert out[8] == EOS  # ... until answer_tokens=3 tokens follow the forced end (cue included), then stops
    assert ctl.forced_end and not ctl.thinking_open


def test_natural_end_before_the_maximum_is_left_alone():
    ctl = ThinkingController(bf(max_thinking_tokens=10))
    assert drive(ctl, [X, END, X, X, X, X, X]) == [X, END, X, X, X, X, X]


def test_a_thinking_block_closed_in_the_prompt_is_respected():
    assert thinking_open_after([3, 4, 8, 1, END, 2], think_start_id=8, think_end_id=END) is False
    assert thinking_open_after([3, 4, 8, 1], think_start_id=8, think_end_id=END) is True
    assert thinking_open_after([3, 4], think_start_id=8, think_end_id=END) is True
    ctl = ThinkingController(bf(max_thinking_tokens=1), thinking_open=False)
    assert drive(ctl, [X, X, X]) == [X, X, X]


def test_config_round_trips_through_vllm_extra_args():
    c = bf(min_thinking_tokens=3, max_waits=2, max_thinking_tokens=9)
    assert InterventionConfig.from_dict(c.to_dict()) == c


def test_apply_action_on_a_logits_row():
    torch = pytest.importorskip("torch")
    from scaling.jobs.interventions import apply_action

    row = torch.tensor([0.0, 1.0, 2.0, -1.0])
    apply_action(Action(end_logit_shift=math.log(2.0)), row, 3)
    assert row[3].item() == pytest.approx(-1.0 + math.log(2.0))
    row = torch.tensor([0.0, 1.0, 2.0, -2.0])
    apply_action(Action(end_tau=2.0), row, 3)
    assert row[3].item() == pytest.approx(2.0 + (-2.0 - 2.0) / 2.0)
    apply_action(Action(suppress=(3,)), row, 3)
    assert row[3].item() == float("-inf")
    apply_action(Action(force=1), row, 3)
    assert row.argmax().item() == 1 and row[0].item() == float("-inf")
