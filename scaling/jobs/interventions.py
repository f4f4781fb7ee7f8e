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

Two implementations of the same settings:

* transformers backend: a pure per-sequence state machine (``ThinkingController``: feed it each
  emitted token, ask it for the ``Action`` on the next logits) behind a ``generate`` logits
  processor (``HFInterventionProcessor``);
* vLLM backend: ``PhasedRequest``, the interventions as phases of plain generation calls
  (``SamplingParams.logit_bias`` and stop tokens), because vLLM's CUDA Model Runner V2 rejects
  V1 logits processors (docs/evaluation.md, "vLLM backend").

torch is imported inside functions only; this module never imports vLLM.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import JobError
from ..records import Intervention

__all__ = [
    "InterventionConfig",
    "Action",
    "ThinkingController",
    "make_intervention_config",
    "HFInterventionProcessor",
    "apply_action",
    "thinking_open_after",
    "PhasedRequest",
    "PhaseCall",
    "ANSWER_CUE",
    "WAIT_TEXT",
]

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
    mode = Intervention(settings.intervention).value
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


# ---------------------------------------------------------- engines without custom processors
@dataclass(frozen=True)
class PhaseCall:
    """One generation call of a ``PhasedRequest``: continue ``prompt_ids`` (prompt + completion
    so far) for at most ``max_tokens`` tokens, also stopping at ``extra_stop_ids``, with
    ``logit_bias`` added to the raw logits (before temperature, like ``apply_action``)."""

    prompt_ids: list[int]
    max_tokens: int
    phase: int  # 0, 1, ...: the caller derives the call's seed from the sample seed and this
    extra_stop_ids: tuple[int, ...] = ()
    logit_bias: dict[int, float] | None = None


class PhasedRequest:
    """The interventions as phases of plain generation calls, for an engine that takes no custom
    logits processor (vLLM: both model runners accept ``SamplingParams.logit_bias`` and
    ``stop_token_ids``; docs/evaluation.md says why this and not a processor).

    * ``stop_temperature`` (gamma): phase 0 runs with ``logit_bias={</think>: log gamma}`` and
      stops at ``</think>``; the rest runs without bias. Exactly "add log gamma to the
      ``</think>`` logit while thinking is open", the distribution ``ThinkingController`` gives.
      The tau mode depends on each step's row maximum and has no such form (refused on vLLM).
    * ``budget_forcing`` (s1's own procedure): thinking phases stop at ``</think>`` and eos; a
      stop sampled below ``min_thinking_tokens`` (with waits left) is dropped and "Wait"
      appended, then generation continues; ``max_thinking_tokens`` caps the thinking phases, after
      which ``</think>`` + the answer cue are appended and the answer is capped at
      ``answer_tokens`` (then eos is appended). Token counts, the cap and the answer cap match
      ``ThinkingController``; the trigger differs: s1 replaces a *sampled* stop, the transformers
      processor replaces the stop when it is the *top* token (and suppresses it otherwise).

    Usage: ``while (call := req.next_call()) is not None: req.feed(generate(call))``; ``feed``
    takes the call's completion ids including the stop token that ended it. ``out`` is the
    completion (forced tokens included, dropped stops excluded), ``finished`` whether it ended on a
    stop token. The state lives outside the engine, so an engine-side preemption cannot reset it.
    """

    def __init__(self, config: InterventionConfig, prompt_ids: Sequence[int], *, max_tokens: int,
                 stop_ids: Sequence[int], thinking_open: bool) -> None:
        self.config = config
        self.prompt = [int(t) for t in prompt_ids]
        self.max_tokens = int(max_tokens)
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        self.out: list[int] = []
        self.thinking_open = thinking_open
        self.thinking_tokens = 0
        self.waits = 0
        self.forced_end = False
        self.after_end = 0
        self.phase = 0
        self.finished = False
        self.done = False

    @property
    def remaining(self) -> int:
        return self.max_tokens - len(self.out)

    def _watching(self) -> bool:
        """Does anything still depend on where thinking ends?"""
        c = self.config
        if not self.thinking_open:
            return False
        if c.mode == "stop_temperature":
            return c.stop_gamma != 1.0 or c.stop_tau is not None
        if c.mode == "budget_forcing":
            return c.max_thinking_tokens is not None or self._may_wait()
        return False

    def _may_wait(self) -> bool:
        c = self.config
        return self.thinking_tokens < c.min_thinking_tokens and self.waits < c.max_waits

    def _append(self, tokens: Sequence[int]) -> None:
        end = self.config.think_end_id
        for t in tokens[: max(self.remaining, 0)]:
            self.out.append(int(t))
            if self.thinking_open:
                self.thinking_tokens += 1
                if t == end:
                    self.thinking_open = False
            elif self.forced_end:
                self.after_end += 1

    def _force_end(self) -> None:
        c = self.config
        self.forced_end = True
        self._append([c.think_end_id, *c.answer_ids])

    def next_call(self) -> PhaseCall | None:
        """The next generation call, or None when the completion is complete."""
        c = self.config
        while not self.done:
            if self.remaining <= 0:
                self.done = True
                break
            cap, extra, bias = self.remaining, (), None
            if self._watching():
                extra = (c.think_end_id,)
                if c.mode == "stop_temperature":
                    if c.stop_tau is not None:
                        raise ValueError("stop_temperature's tau mode needs a logits processor (transformers backend)")
                    bias = {c.think_end_id: math.log(c.stop_gamma)}
                elif c.max_thinking_tokens is not None:
                    left = c.max_thinking_tokens - self.thinking_tokens
                    if left <= 0:  # the thinking cap: force the end and the answer cue
                        self._force_end()
                        continue
                    cap = min(cap, left)
            elif self.forced_end:
                left = c.answer_tokens - self.after_end
                if left <= 0:  # the answer cap: force end of sequence
                    if c.eos_id is not None:
                        self._append([c.eos_id])
                        self.finished = True
                    self.done = True
                    break
                cap = min(cap, left)
            return PhaseCall(self.prompt + self.out, cap, self.phase, extra, bias)
        return None

    def feed(self, tokens: Sequence[int]) -> None:
        """The completion ids of the last ``next_call`` (including the stop token it ended on)."""
        c = self.config
        toks = [int(t) for t in tokens]
        watching = self._watching()
        self.phase += 1
        last = toks[-1] if toks else None
        if watching and c.mode == "budget_forcing" and last in (c.think_end_id, c.eos_id):
            before = len(toks) - 1  # the stop was sampled after these thinking tokens
            self._append(toks[:-1])
            if before >= 0 and self._may_wait():  # s1: drop the stop, append "Wait", continue
                self.waits += 1
                self._append(c.wait_ids)
                return
            self._append([last])
        else:
            self._append(toks)
        if last is not None and last in self.stop_ids:
            self.finished, self.done = True, True
        elif watching and last == c.think_end_id:
            return  # thinking closed: the answer phase follows
        elif watching and c.mode == "budget_forcing" and c.max_thinking_tokens is not None \
                and self.thinking_tokens >= c.max_thinking_tokens:
            return  # next_call forces the end
        elif self.forced_end and self.after_end >= c.answer_tokens:
            return  # next_call forces end of sequence
        else:
            self.done = True  # ran out of tokens
