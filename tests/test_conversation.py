"""Conversation: the one place a turn is saved, on real llama.cpp and a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models

from r1chat.conversation import Conversation
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore
from r1chat.prompts import ChatMessage
from r1chat.sampling import SamplingParams
from r1chat.turn import Delta, TurnDone, TurnResult, TurnStarted


@pytest.fixture(scope="module")
def scripted(scripted_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(scripted_model, LoadOptions(n_ctx=512))
    yield eng
    eng.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(tmp_path / "history.sqlite3") as s:
        yield s


def ask(chat: Conversation, engine: LlamaEngine, question: str, **params: object) -> TurnResult:
    result = None
    for ev in chat.ask(engine, question, SamplingParams(**params)):  # type: ignore[arg-type]
        if isinstance(ev, TurnDone):
            result = ev.result
    assert result is not None
    return result


def test_question_and_reply_are_saved_as_the_model_wrote_them(
    scripted: LlamaEngine, store: HistoryStore
) -> None:
    chat = Conversation(store)
    ask(chat, scripted, "What is 2+2?")
    assert chat.id is not None
    [q, a] = store.messages(chat.id)
    assert (q.role, q.content) == ("user", "What is 2+2?")
    assert (a.content, a.thinking) == (tiny_models.SCRIPT_ANSWER, tiny_models.SCRIPT_THINKING)
    assert a.stats is not None and a.stats["completion_tokens"] > 0


def test_a_reloaded_conversation_sends_the_same_tokens_and_reuses_the_cache(
    scripted: LlamaEngine, store: HistoryStore
) -> None:
    live = Conversation(store)
    ask(live, scripted, "What is 2+2?")
    live_prompt = scripted.prompt_tokens([*live.history(), ChatMessage("user", "And 3+3?")])
    second = ask(live, scripted, "And 3+3?")
    assert second.stats.cached_tokens > 0  # the first turn's prefix was reused

    assert live.id is not None
    reloaded = Conversation.resume(store, live.id)
    reloaded.exchanges.pop()  # back to the state before "And 3+3?"
    assert (
        scripted.prompt_tokens([*reloaded.history(), ChatMessage("user", "And 3+3?")])
        == live_prompt
    )
    again = ask(reloaded, scripted, "And 3+3?")
    # Everything but the last prompt token comes from the cache the live turn left.
    assert again.stats.cached_tokens == len(live_prompt) - 1


def test_a_question_the_model_never_saw_is_not_saved(
    scripted: LlamaEngine, store: HistoryStore
) -> None:
    chat = Conversation(store)
    with pytest.raises(R1ChatError, match="too long"):
        ask(chat, scripted, "word " * 2000)
    assert store.list_conversations() == []


def test_a_reader_that_goes_away_still_saves_what_came_as_stopped(
    noise_model: Path, store: HistoryStore
) -> None:
    engine = LlamaEngine(noise_model, LoadOptions(n_ctx=512))
    try:
        chat = Conversation(store)
        events = chat.ask(engine, "q", SamplingParams(max_tokens=200, seed=3))
        seen = ""
        for ev in events:
            if isinstance(ev, Delta):
                seen += ev.text
                if len(seen) > 20:
                    break
        events.close()  # as `ask` does when its stdout is closed
    finally:
        engine.close()
    assert chat.id is not None
    [_, reply] = store.messages(chat.id)
    assert reply.stopped and reply.thinking and seen.startswith(reply.thinking[:10])


def test_the_engine_accepting_the_prompt_comes_first(scripted: LlamaEngine) -> None:
    events = list(Conversation().ask(scripted, "hi", SamplingParams()))
    assert isinstance(events[0], TurnStarted) and events[0].prompt_tokens
    assert isinstance(events[-1], TurnDone)
    deltas = [e for e in events if isinstance(e, Delta)]
    assert deltas[-1].think_tokens == events[-1].result.stats.thinking_tokens
