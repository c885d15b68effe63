"""One chat turn, UI-agnostic: engine tokens → reasoning splitter → think/answer events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from r1chat.engine import Done, Engine, SamplingParams, Stats
from r1chat.prompts import ChatMessage
from r1chat.reasoning import Kind, ThinkSplitter, extract_boxed


@dataclass(frozen=True)
class Delta:
    """New text for the thinking or the answer."""

    kind: Kind
    text: str


@dataclass
class TurnResult:
    question: str
    thinking: str = ""
    answer: str = ""
    stats: Stats = field(default_factory=Stats)
    model: str = ""

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
            "model": self.model,
            "question": self.question,
            "stats": self.stats.to_dict(),
        }


@dataclass(frozen=True)
class TurnDone:
    result: TurnResult


TurnEvent = Delta | TurnDone


def run_turn(
    engine: Engine,
    history: list[ChatMessage],
    question: str,
    params: SamplingParams,
    cancel: threading.Event | None = None,
) -> Iterator[TurnEvent]:
    """Stream one reply to `question` after `history` (earlier turns, thinking already removed)."""
    info = engine.info
    splitter = ThinkSplitter(in_think=info.thinks)
    result = TurnResult(question=question, model=info.name)
    think: list[str] = []
    answer: list[str] = []
    n_think = n_answer = 0
    for ev in engine.stream([*history, ChatMessage("user", question)], params, cancel):
        if isinstance(ev, Done):
            result.stats = ev.stats
            break
        # A token counts as thinking while the splitter is still inside <think>; the token that
        # closes it is thinking too.
        if ev.id >= 0:
            if splitter.in_think:
                n_think += 1
            else:
                n_answer += 1
        for kind, text in splitter.feed(ev.text):
            (think if kind == "think" else answer).append(text)
            yield Delta(kind, text)
    for kind, text in splitter.close():
        (think if kind == "think" else answer).append(text)
        yield Delta(kind, text)
    result.thinking = "".join(think)
    result.answer = "".join(answer)
    result.stats.thinking_tokens = n_think
    result.stats.answer_tokens = n_answer
    yield TurnDone(result)
