"""The app's lifecycle as messages (r1chat.tui.messages), watched through `message_hook`: a
reply finished, a turn failed, samples finished; and quitting while samples run keeps them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from tui_support import REPLY, Events, wait_until

from r1chat.conversation import Chats
from r1chat.engines.base import Event
from r1chat.engines.scripted import ScriptedEngine
from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.tui import messages
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import TurnView

WIDE = (130, 40)


class FailingEngine(ScriptedEngine):
    """Accepts the prompt, then the engine fails mid-reply."""

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        for n, ev in enumerate(super().stream(messages, params, cancel, control)):
            if n == 5:
                raise R1ChatError("the engine broke")
            yield ev


async def test_a_finished_reply_is_one_message_with_its_result() -> None:
    events = Events()
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE, message_hook=events.hook) as pilot:
        app.prompt.insert("q")
        await pilot.press("enter")
        done = await events.wait_for(messages.TurnFinished, pilot)
        assert done.result.answer and done.result.finish_reason == "stop"
        assert events.of(messages.QuestionAsked) and not events.of(messages.TurnFailed)
        await wait_until(lambda: not app.chat.busy, pilot)
        assert app.query(TurnView).last().answer == done.result.answer


async def test_a_failing_engine_is_a_turn_failed_and_the_app_goes_on(tmp_path: Path) -> None:
    events = Events()
    store = HistoryStore.open(tmp_path / "h.sqlite3")
    app = R1ChatApp(engine=FailingEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE, message_hook=events.hook) as pilot:
        app.prompt.insert("q")
        await pilot.press("enter")
        failed = await events.wait_for(messages.TurnFailed, pilot)
        assert "the engine broke" in str(failed.error)
        await wait_until(lambda: not app.chat.busy, pilot)
        notes = [str(n.render()) for n in app.query(TurnView).last().query(".note")]
        assert any("the engine broke" in n for n in notes)
        assert not events.of(messages.TurnFinished)
    # What came before the failure is kept, marked stopped.
    cid = store.latest_conversation_id()
    assert cid is not None
    [question, reply] = store.messages(cid)
    assert question.content == "q" and reply.stopped
    store.close()


async def test_samples_finished_carry_the_vote_and_are_saved(tmp_path: Path) -> None:
    events = Events()
    store = HistoryStore.open(tmp_path / "h.sqlite3")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    app.samples = 3
    async with app.run_test(size=WIDE, message_hook=events.hook) as pilot:
        app.prompt.insert("q")
        await pilot.press("enter")
        done = await events.wait_for(messages.SamplesFinished, pilot)
        got = done.samples
        # Once two agree the third cannot change the vote: it is stopped early (the app's
        # default), keeps what it wrote, and is no stop of the user's.
        assert len(got.samples) == 3 and (got.vote.count, got.vote.of) == (2, 2)
        assert got.early_stop is not None and not got.stopped
        assert got.stats.together == "batched"
        await wait_until(lambda: not app.chat.busy, pilot)
        notes = [str(n.render()) for n in app.query(TurnView).last().query(".note")]
        assert any("2 of 2 samples agree; 1 stopped early: the leading answer" in n for n in notes)
    cid = store.latest_conversation_id()
    assert cid is not None
    roles = [m.role for m in store.messages(cid, all_branches=True)]
    assert roles == ["user", "assistant", "assistant", "assistant"]
    store.close()


async def test_quitting_while_samples_run_keeps_every_sample_that_came(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "h.sqlite3")
    engine = ScriptedEngine(REPLY, tokens_per_s=50)  # a few seconds a sample
    app = R1ChatApp(engine=engine, chats=Chats(store))
    app.samples = 3
    async with app.run_test(size=WIDE) as pilot:
        app.prompt.insert("three at once")
        await pilot.press("enter")
        # Each sample has some thinking, none has finished: quit now.
        await wait_until(
            lambda: (
                app.chat.live is not None
                and app.chat.live.meter is not None
                and min(app.chat.live.meter.think) >= 3
            ),
            pilot,
        )
        await pilot.press("ctrl+q")
    cid = store.latest_conversation_id()
    assert cid is not None
    every = store.messages(cid, all_branches=True)
    assert [m.role for m in every] == ["user", "assistant", "assistant", "assistant"]
    assert every[0].content == "three at once"
    for reply in every[1:]:
        assert reply.stopped and reply.thinking and REPLY.startswith(reply.thinking)
    store.close()
