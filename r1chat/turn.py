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

from r1chat.endings import no_answer
from r1chat.engines.base import Decided, Done, Engine, Event, Started, Stats, Token
from r1chat.prompts import ChatMessage
from r1chat.reasoning import (
    CLOSE_TAG,
    OPEN_TAG,
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
    """New text for the thinking or the answer, with the token counts so far: the model's own
    in the thinking and in the answer, and those r1chat wrote (`forced_tokens`)."""

    kind: Kind
    text: str
    think_tokens: int = 0
    answer_tokens: int = 0
    forced_tokens: int = 0


@dataclass(frozen=True)
class ThinkingEnded:
    """The thinking is over and the answer begins. `how`: the model closed it ("model"), or
    r1chat did: the budget ran out ("budget"), it went in circles ("loop"), the user asked for
    the answer ("user")."""

    how: Ended
    tokens: int
    seconds: float


@dataclass(frozen=True)
class Held:
    """Text a server sent that is not known yet to be thinking or answer (no `<think>` came
    before it): a `</think>` makes it thinking, the end of the reply makes it the answer. Front
    ends show it as undecided; `HeldDecided` follows, then the same text as Deltas."""

    text: str
    chars: int  # held so far


@dataclass(frozen=True)
class HeldDecided:
    """What the held text was: thinking, or the answer. Its Deltas follow at once."""

    thinking: bool


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

    def no_answer(self, limit: int = 0) -> str | None:
        """Why there is no answer (r1chat.endings.no_answer); None when there is one."""
        return no_answer(self.answer, self.finish_reason, self.thinking_ended, limit)

    def to_dict(self) -> dict[str, Any]:
        why = self.no_answer()
        return {
            "thinking": self.thinking,
            "answer": self.answer,
            "answered": why is None,
            "no_answer": why,
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


TurnEvent = (
    ContextTrimmed
    | TurnStarted
    | Delta
    | Held
    | HeldDecided
    | ThinkingEnded
    | LoopNoticed
    | TurnDone
)


class TurnRecorder:
    """What one reply's engine events mean, event by event: thinking and answer split, tokens
    counted, how the thinking ended, the timings. A single reply (`Turn`) and each of k samples
    (r1chat.many) feed one, so what counts as thinking is decided in one place.

    `feed` returns the turn events an engine event gives; the Done that ends the reply gives
    the last Deltas and a TurnDone. What came so far stays readable through `partial()` when the
    stream breaks off (a signal, a closed pipe, an error).
    """

    def __init__(
        self, question: str, model: str, control: ThinkingControl | None, t0: float | None = None
    ) -> None:
        self.control = control
        self._no_thinking = control is not None and control.params.budget == 0
        self._splitter = ThinkSplitter(in_think=control is not None and not self._no_thinking)
        self.started = False
        self.done = False
        self.result = TurnResult(question=question, model=model)
        self._think: list[str] = []
        self._answer: list[str] = []
        self.think_tokens = 0
        self.answer_tokens = 0
        self.forced_tokens = 0
        self._t0 = time.perf_counter() if t0 is None else t0
        self._first_at = 0.0
        self._answer_at = 0.0
        self._warned = False
        self._held: list[str] = []
        self._held_chars = 0
        self._held_tokens = 0

    def feed(self, ev: Event) -> list[TurnEvent]:
        if type(ev) is Token:
            if ev.held:
                return self._hold(ev)
            return self._token(ev)
        if isinstance(ev, Decided):
            return self._decided(ev.thinking)
        if isinstance(ev, Started):
            self.started = True
            out: list[TurnEvent] = [TurnStarted(ev.prompt_tokens)]
            if self._no_thinking:
                assert self.control is not None
                self.control.ended = "budget"
                out.append(self._thinking_ended(0, 0.0))
            return out
        assert isinstance(ev, Done)
        self.result.stats = ev.stats
        out = self._decided(self._held_guess()) if self._held else []
        out += [self._delta(kind, text) for kind, text in self._splitter.close()]
        self.done = True
        out.append(TurnDone(self.partial()))
        return out

    def _token(self, ev: Token) -> list[TurnEvent]:
        now = time.perf_counter()
        if not self._first_at:
            self._first_at = now
        # A token counts as thinking while the splitter is still inside <think>; the token
        # that closes it is thinking too. What r1chat wrote is counted apart.
        splitter = self._splitter
        thinking = splitter.in_think
        if ev.id >= 0:
            if ev.forced:
                self.forced_tokens += 1
            elif thinking:
                self.think_tokens += 1
            else:
                self.answer_tokens += 1
        out: list[TurnEvent] = [self._delta(kind, text) for kind, text in splitter.feed(ev.text)]
        if thinking and not splitter.in_think:
            self._answer_at = now
            out.append(self._thinking_ended(self.think_tokens, now - self._first_at))
        elif thinking and not self._warned:
            control = self.control
            if control is not None and control.looping:
                self._warned = True  # on_loop = "warn" goes on; the others end it
                if control.params.on_loop == "warn":
                    out.append(LoopNoticed())
        return out

    def _hold(self, ev: Token) -> list[TurnEvent]:
        if not self._first_at:
            self._first_at = time.perf_counter()
        self._held.append(ev.text)
        self._held_chars += len(ev.text)
        self._held_tokens += ev.id >= 0
        return [Held(ev.text, self._held_chars)]

    def _held_guess(self) -> bool:
        """Held text with no decision (a reply broken off by an error): read as the answer, as
        the engine reads a reply cut short, and marked so."""
        self.result.stats.undecided = True
        return False

    def _decided(self, thinking: bool) -> list[TurnEvent]:
        """The held text, now known to be thinking or answer, as what it is."""
        text, tokens = "".join(self._held), self._held_tokens
        self._held, self._held_chars, self._held_tokens = [], 0, 0
        out: list[TurnEvent] = [HeldDecided(thinking)]
        splitter = self._splitter
        if thinking:
            if not splitter.in_think:
                splitter.feed(OPEN_TAG + "\n")
            self.think_tokens += tokens
            out += [self._delta(kind, t) for kind, t in splitter.feed(text)]
            return out
        if splitter.in_think:  # the turn began inside a thinking that turned out empty
            out += self._token(Token(-1, CLOSE_TAG + "\n\n"))
        self.answer_tokens += tokens
        if text:
            self._answer_at = self._answer_at or time.perf_counter()
        out += [self._delta(kind, t) for kind, t in splitter.feed(text)]
        return out

    def _delta(self, kind: Kind, text: str) -> Delta:
        (self._think if kind == "think" else self._answer).append(text)
        return Delta(kind, text, self.think_tokens, self.answer_tokens, self.forced_tokens)

    def _thinking_ended(self, tokens: int, seconds: float) -> ThinkingEnded:
        # No control: a model not known to think, thinking all the same (a server's field).
        how: Ended = (self.control.ended if self.control else None) or "model"
        self.result.thinking_ended = how
        return ThinkingEnded(how, tokens, seconds)

    def partial(self) -> TurnResult:
        """The reply so far; marked stopped ("cancelled") unless the stream ended by itself."""
        if self._held:
            self._decided(self._held_guess())
        result = self.result
        result.thinking = "".join(self._think)
        result.answer = "".join(self._answer)
        stats = result.stats
        stats.thinking_tokens = self.think_tokens
        stats.answer_tokens = self.answer_tokens
        stats.forced_tokens = self.forced_tokens
        if self._first_at:
            end = time.perf_counter()
            stats.thinking_s = ((self._answer_at or end) - self._first_at) if self.control else 0.0
            if self.answer_tokens:
                stats.ttfa_s = (self._answer_at or self._first_at) - self._t0
        if result.thinking_ended is None and self.control is not None:
            result.thinking_ended = self.control.ended  # stopped by the loop guard, say
        if not self.done:
            stats.completion_tokens = self.think_tokens + self.answer_tokens + self.forced_tokens
            stats.finish_reason = "cancelled"
        return result


class Turn:
    """One reply to `question` after `history` (earlier turns, thinking already removed).

    Iterate it for events; see TurnRecorder. For a model that thinks, `control` steers the
    thinking (a default one guards against loops); the UI may call `control.answer_now()`
    while it runs.
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
        self.control = control_for(engine, control)
        self.recorder = TurnRecorder(question, engine.info.name, self.control)

    @property
    def started(self) -> bool:
        return self.recorder.started

    def __iter__(self) -> Iterator[TurnEvent]:
        messages = [*self.history, ChatMessage("user", self.question)]
        feed = self.recorder.feed
        for ev in self.engine.stream(messages, self.params, self.cancel, self.control):
            out = feed(ev)
            yield from out
            if type(ev) is Done:
                break

    def partial(self) -> TurnResult:
        return self.recorder.partial()


def control_for(engine: Engine, control: ThinkingControl | None) -> ThinkingControl | None:
    """The control a turn runs with: none for a model that does not think, else the one given
    or a default one (which guards against loops)."""
    if not engine.info.thinks:
        return None
    return control or ThinkingControl(ReasoningParams())


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
