"""One chat turn, UI-agnostic: engine events → reasoning splitter → turn events.

`ask`, the TUI, the benchmarks and the tests all run a reply through `run_turn`, so what counts as
thinking, how tokens are counted and how a reply ends are decided once, here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from r1chat.engine import Engine, Started, Stats, Token
from r1chat.prompts import ChatMessage
from r1chat.reasoning import (
    Ended,
    Kind,
    ReasoningParams,
    ThinkingControl,
    ThinkSplitter,
    extract_boxed,
)
from r1chat.sampling import SamplingParams


@dataclass(frozen=True)
class TurnStarted:
    """The engine accepted the prompt; from here on the question counts as asked."""

    prompt_tokens: int | None


@dataclass(frozen=True)
class ContextTrimmed:
    """The oldest `turns` exchanges are no longer sent: with them the prompt would not leave
    the reply room in a context of `n_ctx` tokens."""

    turns: int
    n_ctx: int

    @property
    def note(self) -> str:
        what = "earlier turn" if self.turns == 1 else "earlier turns"
        return f"{self.turns:,} {what} left out to fit {self.n_ctx:,} tokens."


@dataclass(frozen=True)
class Delta:
    """New text for the thinking or the answer, with the model's token counts so far."""

    kind: Kind
    text: str
    think_tokens: int = 0
    answer_tokens: int = 0


@dataclass(frozen=True)
class ThinkingEnded:
    """The thinking is over and the answer begins. `how`: the model closed it ("model"), or
    r1chat did: the budget ran out ("budget"), it went in circles ("loop"), the user asked for
    the answer ("user")."""

    how: Ended
    tokens: int
    seconds: float


@dataclass(frozen=True)
class LoopNoticed:
    """The thinking repeats itself (on_loop = "warn": it goes on)."""


@dataclass
class TurnResult:
    question: str
    thinking: str = ""
    answer: str = ""
    stats: Stats = field(default_factory=Stats)
    model: str = ""
    thinking_ended: Ended | None = None  # None: the model did not think

    @property
    def finish_reason(self) -> str:
        return self.stats.finish_reason

    @property
    def boxed(self) -> str | None:
        return extract_boxed(self.answer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "thinking": self.thinking,
            "answer": self.answer,
            "boxed": self.boxed,
            "finish_reason": self.finish_reason,
            "thinking_ended": self.thinking_ended,
            "model": self.model,
            "question": self.question,
            "stats": self.stats.to_dict(),
        }


@dataclass(frozen=True)
class TurnDone:
    result: TurnResult


TurnEvent = ContextTrimmed | TurnStarted | Delta | ThinkingEnded | LoopNoticed | TurnDone


class Turn:
    """One reply to `question` after `history` (earlier turns, thinking already removed).

    Iterate it for events. What came so far stays readable through `partial()` when the stream
    breaks off (a signal, a closed pipe, an error), so the caller can still save it. For a model
    that thinks, `control` steers the thinking (a default one guards against loops); the UI may
    call `control.answer_now()` while it runs.
    """

    def __init__(
        self,
        engine: Engine,
        history: list[ChatMessage],
        question: str,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> None:
        self.engine = engine
        self.history = history
        self.question = question
        self.params = params
        self.cancel = cancel
        thinks = engine.info.thinks
        self.control = (control or ThinkingControl(ReasoningParams())) if thinks else None
        self.started = False
        self.done = False
        self._result = TurnResult(question=question, model=engine.info.name)
        self._think: list[str] = []
        self._answer: list[str] = []
        self._n_think = 0
        self._n_answer = 0

    def __iter__(self) -> Iterator[TurnEvent]:
        control = self.control
        no_thinking = control is not None and control.params.budget == 0
        splitter = ThinkSplitter(in_think=control is not None and not no_thinking)
        feed = splitter.feed
        think, answer = self._think, self._answer
        messages = [*self.history, ChatMessage("user", self.question)]
        t0 = time.perf_counter()
        first_at = answer_at = 0.0
        warned = False
        # Counted in locals (the loop runs once per token), kept in self when the loop ends,
        # however it ends, for partial().
        n_think = n_answer = 0
        try:
            for ev in self.engine.stream(messages, self.params, self.cancel, control):
                if isinstance(ev, Token):
                    if not first_at:
                        first_at = time.perf_counter()
                    # A token counts as thinking while the splitter is still inside <think>;
                    # the token that closes it is thinking too.
                    thinking = splitter.in_think
                    if ev.id >= 0:
                        if thinking:
                            n_think += 1
                        else:
                            n_answer += 1
                    for kind, text in feed(ev.text):
                        (think if kind == "think" else answer).append(text)
                        yield Delta(kind, text, n_think, n_answer)
                    if thinking and not splitter.in_think:
                        answer_at = time.perf_counter()
                        yield self._thinking_ended(n_think, answer_at - first_at)
                    elif thinking and control is not None and control.looping and not warned:
                        warned = True  # on_loop = "warn" goes on; the others end it
                        if control.params.on_loop == "warn":
                            yield LoopNoticed()
                elif isinstance(ev, Started):
                    self.started = True
                    yield TurnStarted(ev.prompt_tokens)
                    if no_thinking:
                        assert control is not None
                        control.ended = "budget"
                        yield self._thinking_ended(0, 0.0)
                else:
                    self._result.stats = ev.stats
                    break
            for kind, text in splitter.close():
                (think if kind == "think" else answer).append(text)
                yield Delta(kind, text, n_think, n_answer)
        finally:
            self._n_think, self._n_answer = n_think, n_answer
            end = time.perf_counter()
            stats = self._result.stats
            if first_at:
                stats.thinking_s = ((answer_at or end) - first_at) if control else 0.0
            if n_answer:
                stats.ttfa_s = (answer_at or first_at) - t0
        self.done = True
        yield TurnDone(self.partial())

    def _thinking_ended(self, tokens: int, seconds: float) -> ThinkingEnded:
        # No control: a model not known to think, thinking all the same (a server's field).
        how: Ended = (self.control.ended if self.control else None) or "model"
        self._result.thinking_ended = how
        return ThinkingEnded(how, tokens, seconds)

    def partial(self) -> TurnResult:
        """The reply so far; marked stopped ("cancelled") unless the stream ended by itself."""
        result = self._result
        result.thinking = "".join(self._think)
        result.answer = "".join(self._answer)
        result.stats.thinking_tokens = self._n_think
        result.stats.answer_tokens = self._n_answer
        if result.thinking_ended is None and self.control is not None:
            result.thinking_ended = self.control.ended  # stopped by the loop guard, say
        if not self.done:
            result.stats.completion_tokens = self._n_think + self._n_answer
            result.stats.finish_reason = "cancelled"
        return result


def run_turn(
    engine: Engine,
    history: list[ChatMessage],
    question: str,
    params: SamplingParams,
    cancel: threading.Event | None = None,
    control: ThinkingControl | None = None,
) -> Turn:
    """A turn ready to stream: `for event in run_turn(...)`."""
    return Turn(engine, history, question, params, cancel, control)
