"""jobs/interventions.py: the per-sequence state machine of stop-temperature and s1 budget forcing."""

from __future__ import annotations

import math

import pytest

from scaling.jobs.interventions import (
    Action,
    InterventionConfig,
    PhasedRequest,
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


def test_config_round_trips_through_a_dict():
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


# ------------------------------------------------------------- PhasedRequest (the vLLM backend)
PROMPT = [2, 3]
STOPS = (EOS,)


def run_phased(config: InterventionConfig, wants: list[int], *, max_tokens: int = 12, thinking_open: bool = True):
    """A scripted engine: the token sampled at completion position t is wants[t]; a call stops at
    max_tokens or after a stop / extra stop token (which it returns, as vLLM's ids do)."""
    req = PhasedRequest(config, PROMPT, max_tokens=max_tokens, stop_ids=STOPS, thinking_open=thinking_open)
    calls = []
    while (call := req.next_call()) is not None:
        calls.append(call)
        assert call.prompt_ids[: len(PROMPT)] == PROMPT and call.max_tokens >= 1
        pos, toks = len(call.prompt_ids) - len(PROMPT), []
        while len(toks) < call.max_tokens and pos + len(toks) < len(wants):
            toks.append(wants[pos + len(toks)])
            if toks[-1] in (*STOPS, *call.extra_stop_ids):
                break
        req.feed(toks)
    return req, calls


SCRIPTS = [
    [X, END, X, X, END, X, END, X, X, X, X, X],
    [X, EOS, X, X, X, X, X, X, X, X, X, X],
    [X] * 12,
    [X, X, END, X, X, EOS, X, X, X, X, X, X],
    [END, END, END, X, END, X, X, X, EOS, X, X, X],
]
CONFIGS = [
    bf(min_thinking_tokens=6, max_waits=1),
    bf(min_thinking_tokens=6, max_waits=3),
    bf(max_thinking_tokens=4),
    bf(min_thinking_tokens=3, max_waits=2, max_thinking_tokens=5),
    bf(max_thinking_tokens=10),
    InterventionConfig(mode="stop_temperature", think_end_id=END, stop_gamma=4.0),
    InterventionConfig(mode="none", think_end_id=END),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("wants", SCRIPTS)
def test_phased_requests_emit_what_the_controller_emits_when_the_sample_is_the_top_token(config, wants):
    """Where the sampled token is the model's top token, s1's procedure (replace a sampled stop)
    and the transformers processor (replace a top-ranked stop) coincide: same tokens, same
    thinking/wait counts, same forced end and answer cap."""
    ctl = ThinkingController(config)
    expected = []
    for want in wants:
        if expected and expected[-1] in STOPS:
            break
        act = ctl.action(want)
        tok = act.force if act.force is not None else want
        ctl.observe(tok)
        expected.append(tok)
    req, _ = run_phased(config, wants)
    assert req.out == expected
    assert req.finished == (expected[-1] in STOPS)
    assert (req.waits, req.forced_end, req.thinking_tokens) == (ctl.waits, ctl.forced_end, ctl.thinking_tokens)


def test_phased_stop_temperature_biases_only_the_thinking_phase():
    config = InterventionConfig(mode="stop_temperature", think_end_id=END, stop_gamma=1e4)
    req, calls = run_phased(config, [X, X, END, X, X, EOS])
    assert req.out == [X, X, END, X, X, EOS] and req.finished
    assert calls[0].logit_bias == {END: pytest.approx(math.log(1e4))} and calls[0].extra_stop_ids == (END,)
    assert calls[0].phase == 0 and calls[0].max_tokens == 12
    assert calls[1].logit_bias is None and calls[1].extra_stop_ids == () and calls[1].phase == 1
    assert calls[1].prompt_ids == PROMPT + [X, X, END] and calls[1].max_tokens == 9
    # thinking closed in the prompt: one plain call, like no intervention at all
    req, calls = run_phased(config, [X, END, X], thinking_open=False)
    assert len(calls) == 1 and calls[0].logit_bias is None and calls[0].extra_stop_ids == ()


def test_phased_budget_forcing_respects_the_token_limit_and_the_prefix_property():
    config = bf(min_thinking_tokens=6, max_waits=3, max_thinking_tokens=8)
    wants = [X, END, X, X, END, X, X, X, X, X, X, X, X, X]
    full, _ = run_phased(config, wants, max_tokens=14)
    for b in range(1, 14):
        short, calls = run_phased(config, wants, max_tokens=b)
        assert short.out == full.out[:b] and all(c.max_tokens <= b for c in calls)


def test_phased_tau_mode_is_refused():
    config = InterventionConfig(mode="stop_temperature", think_end_id=END, stop_tau=2.0)
    with pytest.raises(ValueError, match="tau"):
        run_phased(config, [X])
