"""Leaving out the oldest turns of a conversation longer than the context, on the real
tokenizer and chat template: the prompt kept fits, little more than needed is left out, and a
history far longer than the context (thousands of turns) is not a reason to refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1chat.conversation import Conversation
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.prompts import ChatMessage, history_messages
from r1chat.sampling import SamplingParams

N_CTX = 8192
PARAMS = SamplingParams(max_tokens=2048)
ROOM = N_CTX - PARAMS.max_tokens


@pytest.fixture(scope="module")
def engine(scripted_model: Path) -> LlamaEngine:
    return LlamaEngine(scripted_model, LoadOptions(n_ctx=N_CTX))


def tokens(engine: LlamaEngine, conv: Conversation, first: int, question: str) -> int:
    messages = [*history_messages(conv.exchanges[first:]), ChatMessage("user", question)]
    return engine.count_tokens(messages)


class Counting:
    """The engine, counting how many prompts were tokenized to decide."""

    def __init__(self, engine: LlamaEngine) -> None:
        self.engine, self.info, self.calls = engine, engine.info, 0

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        self.calls += 1
        return self.engine.count_tokens(messages)


@pytest.mark.parametrize("turns", [3, 300, 3000, 4000, 20000])
def test_the_oldest_turns_are_left_out_to_fit(engine: LlamaEngine, turns: int) -> None:
    """Before, about 4,000 short turns at 8,192 tokens failed with "the prompt grew past
    169,969 characters" (the template's bound on its output) instead of leaving turns out."""
    conv = Conversation(exchanges=[(f"question {n}", f"answer number {n}") for n in range(turns)])
    counting = Counting(engine)
    first = conv.fit(counting, "the last question", PARAMS)  # type: ignore[arg-type]
    kept = tokens(engine, conv, first, "the last question")
    assert kept <= ROOM
    if first:  # left out to fit half the room, so that the next turns share a prefix
        assert kept <= ROOM // 2 < tokens(engine, conv, first - 1, "the last question")
    assert (first > 0) == (turns >= 3000)
    assert counting.calls <= 40, counting.calls  # decided without tokenizing every length


def test_it_only_moves_forward(engine: LlamaEngine) -> None:
    conv = Conversation(exchanges=[(f"question {n}", f"answer {n}") for n in range(2000)])
    first = conv.fit(engine, "q", PARAMS)
    assert first > 0
    conv.exchanges.append(("q", "a"))
    assert first <= conv.fit(engine, "q", PARAMS)
