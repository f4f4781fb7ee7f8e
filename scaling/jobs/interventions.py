"""Decode-time interventions on the end-of-thinking decision, as logits processors.

Two interventions from Paper B ("Making Small Language Models Efficient Reasoners", arXiv
2505.07961), whose exact formulas are not public: **the parameterisation here is ours**.

* ``stop_temperature`` (Paper B's "temperature scaling", TS): while the thinking block is open,
  the probability of the end-of-thinking token ``</think>`` is multiplied by ``gamma`` (we add
  ``log(gamma)`` to its logit, which is sign-safe: gamma > 1 ends thinking earlier, < 1 later),
  or, in the temperature mode, its logit is tempered relative to the row's maximum:
  ``l' = m + (l - m) / tau`` (shift-invariant; tau > 1 ends earlier). It stops acting once
  ``</think>`` has been emitted.
* ``budget_forcing`` (s1, arXiv 2501.19393): below ``min_thinking_tokens`` the end of thinking
  (``</think>``, and end-of-sequence while thinking) is suppressed; when one of them is the
  model's top choice there ("it tries to stop") the tokens of "Wait" are forced instead, at
  most ``max_waits`` times, after which the model may stop. At
  ``max_thinking_tokens`` ``</think>`` is forced, followed by an answer cue, and the answer is
  capped at ``answer_tokens`` tokens after the forced end (then end-of-sequence is forced).

The logic is a pure per-sequence state machine (``ThinkingController``: feed it each emitted
token, ask it for the ``Action`` on the next logits) shared by two thin adapters: a
transformers ``generate`` logits processor and a vLLM per-request processor (``extra_args``).
torch and vLLM are imported inside functions only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = [
    "InterventionConfig",
    "Action",
    "ThinkingController",
    "make_intervention_config",
    "HFInterventionProcessor",
    "apply_action",
    "thinking_open_after",
    "EXTRA_ARGS_KEY",
    "ANSWER_CUE",
    "WAIT_TEXT",
]

EXTRA_ARGS_KEY = "scaling_intervention"  # vLLM SamplingParams.extra_args key
WAIT_TEXT = "Wait"  # s1's continuation word
ANSWER_CUE = "\n\nFinal answer: \\boxed{"  # after a forced </think> (labelled default, docs/evaluation.md)
MODES = ("none", "stop_temperature", "budget_forcing")


@dataclass(frozen=True)
class InterventionConfig:
    """Token-level settings of one intervention (built by ``make_intervention_config``)."""

    mode: str
    think_end_id: int
    eos_id: int | None = None
    stop_gamma: float = 1.0
    stop_tau: float | None = None
    min_thinking_tokens: int = 0
    max_waits: int = 0
    max_thinking_tokens: int | None = None
    wait_ids: tuple[int, ...] = ()
    answer_ids: tuple[int, ...] = ()  # forced right after a forced </think>
    answer_tokens: int = 32  # cap on tokens after a forced </think> (cue included)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"intervention mode {self.mode!r} is not one of {MODES}")
        if self.mode == "stop_temperature":
            if self.stop_tau is None and not self.stop_gamma > 0:
                raise ValueError("stop_gamma must be > 0")
            if self.stop_tau is not None and not self.stop_tau > 0:
                raise ValueError("stop_tau must be > 0")
        if self.mode == "budget_forcing" and self.min_thinking_tokens > 0 and self.max_waits > 0 and not self.wait_ids:
            raise ValueError("budget forcing with waits needs wait_ids")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["wait_ids"], d["answer_ids"] = list(self.wait_ids), list(self.answer_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InterventionConfig":
        d = dict(d)
        d["wait_ids"], d["answer_ids"] = tuple(d.get("wait_ids", ())), tuple(d.get("answer_ids", ()))
        return cls(**d)


@dataclass(frozen=True)
class Action:
    """What to do to the next token's logits. ``force`` wins over everything else."""

    force: int | None = None  # keep only this token
    suppress: tuple[int, ...] = ()  # these tokens get -inf (</think>, and eos while thinking)
    end_logit_shift: float = 0.0  # added to the </think> logit
    end_tau: float | None = None  # temper the </think> logit relative to the row max

    @property
    def is_noop(self) -> bool:
        return self.force is None and not self.suppress and self.end_logit_shift == 0.0 and self.end_tau is None


NOOP = Action()


@dataclass
class ThinkingController:
    """Per-sequence state machine. Call ``observe(token)`` for every emitted completion token
    (in order), then ``action(top_token)`` for the next position, where ``top_token`` is the
    argmax of the raw logits (used to decide that the model "tries to stop")."""

    config: InterventionConfig
    thinking_open: bool = True
    thinking_tokens: int = 0  # tokens emitted while thinking was open (incl. </think>)
    waits: int = 0
    forced_end: bool = False
    after_end: int = 0  # tokens emitted after a forced </think>
    queue: list[int] = field(default_factory=list)  # tokens still to force, in order

    def observe(self, token: int) -> None:
        if self.queue:
            if token == self.queue[0]:
                self.queue.pop(0)
            else:  # another processor or the sampler overrode us: give up the sequence
                self.queue.clear()
        if self.thinking_open:
            self.thinking_tokens += 1
            if token == self.config.think_end_id:
                self.thinking_open = False
        elif self.forced_end:
            self.after_end += 1

    def observe_all(self, tokens: Sequence[int]) -> None:
        for t in tokens:
            self.observe(int(t))

    def action(self, top_token: int | None = None) -> Action:
        c = self.config
        if c.mode == "none":
            return NOOP
        if self.queue:
            return Action(force=self.queue[0])
        if c.mode == "stop_temperature":
            if not self.thinking_open:
                return NOOP
            if c.stop_tau is not None:
                return Action(end_tau=c.stop_tau)
            return NOOP if c.stop_gamma == 1.0 else Action(end_logit_shift=math.log(c.stop_gamma))
        # budget forcing
        if self.thinking_open:
            if c.max_thinking_tokens is not None and self.thinking_tokens >= c.max_thinking_tokens:
                self.queue = [c.think_end_id, *c.answer_ids]
                self.forced_end = True
                return Action(force=self.queue[0])
            if self.thinking_tokens < c.min_thinking_tokens and self.waits < c.max_waits:
                stops = (c.think_end_id,) if c.eos_id is None else (c.think_end_id, c.eos_id)
                if top_token in stops:
                    self.waits += 1
                    self.queue = list(c.wait_ids)
                    return Action(force=self.queue[0])
                return Action(suppress=stops)
            return NOOP
        if self.forced_end and c.eos_id is not None and self.after_end >= c.answer_tokens:
            return Action(force=c.eos_id)
        return NOOP


def thinking_open_after(prompt_ids: Sequence[int], *, think_start_id: int | None, think_end_id: int) -> bool:
    """Is the thinking block open at the start of the completion? Closed when the prompt's last
    think marker is ``</think>`` (e.g. Qwen3 with ``enable_thinking=False`` pre-fills an empty
    block); open otherwise (the model writes or continues its thinking)."""
    for tok in reversed(prompt_ids):
        if tok == think_end_id:
            return False
        if think_start_id is not None and tok == think_start_id:
            return True
    return True


def make_intervention_config(settings: Any, tokenizer: Any, *, think_end: str = "</think>") -> InterventionConfig | None:
    """From ``records.EvalSettings`` and a tokenizer; None when the intervention is ``none``.

    Raises ``JobError`` when the tokenizer has no single token for ``think_end``."""
    from ..errors import JobError

    mode = getattr(settings.intervention, "value", settings.intervention)
    if mode == "none":
        return None
    end_id = _single_token_id(tokenizer, think_end)
    if end_id is None:
        raise JobError(
            f"eval.intervention={mode}: the tokenizer has no single token for {think_end!r}; "
            "set model.think_end to the model's end-of-thinking token or eval.intervention=none"
        )
    encode = lambda text: tuple(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    cap = int(getattr(settings, "answer_tokens", 32))
    answer_ids = encode(ANSWER_CUE)[: max(cap - 1, 0)]
    return InterventionConfig(
        mode=mode,
        think_end_id=end_id,
        eos_id=tokenizer.eos_token_id,
        stop_gamma=float(settings.stop_gamma),
        stop_tau=None if settings.stop_tau is None else float(settings.stop_tau),
        min_thinking_tokens=int(settings.min_thinking_tokens),
        max_waits=int(settings.max_waits),
        max_thinking_tokens=None if settings.max_thinking_tokens is None else int(settings.max_thinking_tokens),
        wait_ids=encode(WAIT_TEXT),
        answer_ids=answer_ids,
        answer_tokens=cap,
    )


def _single_token_id(tokenizer: Any, text: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(text)
    if isinstance(tid, int) and tid != getattr(tokenizer, "unk_token_id", None) and tid >= 0:
        return tid
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


# ------------------------------------------------------------------------ torch adapters
def apply_action(action: Action, row: Any, think_end_id: int) -> Any:
    """Apply one ``Action`` to a 1-D logits tensor in place (and return it)."""
    if action.force is not None:
        row.fill_(float("-inf"))
        row[action.force] = 0.0
        return row
    if action.suppress:
        row[list(action.suppress)] = float("-inf")
    elif action.end_tau is not None:
        m = row.max()
        row[think_end_id] = m + (row[think_end_id] - m) / action.end_tau
    elif action.end_logit_shift:
        row[think_end_id] = row[think_end_id] + action.end_logit_shift
    return row


class HFInterventionProcessor:
    """transformers ``generate`` logits processor: one ``ThinkingController`` per batch row.

    The first call records the (padded) prompt length; each later call feeds the rows' newly
    emitted tokens to their controllers. ``think_start_id`` lets it see whether a prompt
    pre-closed the thinking block."""

    def __init__(self, config: InterventionConfig, *, think_start_id: int | None = None) -> None:
        self.config = config
        self.think_start_id = think_start_id
        self.start_len: int | None = None
        self.controllers: list[ThinkingController] = []
        self.consumed: list[int] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.start_len is None:
            self.start_len = int(input_ids.shape[1])
            self.controllers = [
                ThinkingController(
                    self.config,
                    thinking_open=thinking_open_after(
                        input_ids[r].tolist(), think_start_id=self.think_start_id, think_end_id=self.config.think_end_id
                    ),
                )
                for r in range(input_ids.shape[0])
            ]
            self.consumed = [self.start_len] * int(input_ids.shape[0])
        cur = int(input_ids.shape[1])
        tops = scores.argmax(dim=-1).tolist()
        for r, ctl in enumerate(self.controllers):
            if cur > self.consumed[r]:
                ctl.observe_all(input_ids[r, self.consumed[r] : cur].tolist())
                self.consumed[r] = cur
            act = ctl.action(tops[r])
            if not act.is_noop:
                apply_action(act, scores[r], self.config.think_end_id)
        return scores


# ------------------------------------------------------------------------ vLLM adapter
def _build_vllm_processor_class() -> type:
    """vLLM's per-request adapter (``AdapterLogitsProcessor``), built on first access so this
    module imports without vLLM. Requests opt in with ``extra_args={EXTRA_ARGS_KEY: {...}}``
    (``InterventionConfig.to_dict()`` plus ``thinking_open``)."""
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    class VllmInterventionProcessor(AdapterLogitsProcessor):
        def is_argmax_invariant(self) -> bool:
            return False

        def new_req_logits_processor(self, params: Any) -> Any:
            args = (getattr(params, "extra_args", None) or {}).get(EXTRA_ARGS_KEY)
            if not args:
                return None
            args = dict(args)
            open_ = bool(args.pop("thinking_open", True))
            ctl = ThinkingController(InterventionConfig.from_dict(args), thinking_open=open_)
            end_id = ctl.config.think_end_id
            consumed = [0]

            def per_request(output_ids: list[int], logits: Any) -> Any:
                if len(output_ids) > consumed[0]:
                    ctl.observe_all(output_ids[consumed[0] :])
                    consumed[0] = len(output_ids)
                act = ctl.action(int(logits.argmax()))
                return logits if act.is_noop else apply_action(act, logits, end_id)

            return per_request

    VllmInterventionProcessor.__module__ = __name__
    VllmInterventionProcessor.__qualname__ = "VllmInterventionProcessor"
    return VllmInterventionProcessor


def __getattr__(name: str) -> Any:
    # PEP 562: `scaling.jobs.interventions:VllmInterventionProcessor` resolves lazily, so vLLM
    # workers can import it by name while CPU-only code never imports vLLM.
    if name == "VllmInterventionProcessor":
        cls = _build_vllm_processor_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
