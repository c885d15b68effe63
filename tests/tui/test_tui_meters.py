"""What the thinking pane's title says once a reply is over: always what ended the thinking (the
model, the budget, the loop guard, answer now, the token limit, a stop) and how long it took,
live, after switching alternatives, and reopened from the history."""

from __future__ import annotations

from pathlib import Path

from tui_support import REPLY, wait_until

from r1chat.config import Settings
from r1chat.conversation import Chats
from r1chat.engines.scripted import ScriptedEngine
from r1chat.history import HistoryStore, title_from
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import TurnView

WIDE = (130, 40)


async def ask(app: R1ChatApp, pilot: object, question: str) -> TurnView:
    app.prompt.insert(question)
    await pilot.press("enter")  # type: ignore[attr-defined]
    await wait_until(lambda: app.query(TurnView) and not app.chat.busy, pilot)
    return app.query(TurnView).last()


async def test_a_reply_cut_at_the_token_limit_while_thinking_says_so() -> None:
    app = R1ChatApp(Settings(max_tokens=5), engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(app, pilot, "q")
        title = str(view.pane.title)
        assert title.startswith("Cut at the token limit after") and "5 tokens" in title
        notes = [str(n.render()) for n in view.query(".note")]
        assert any("Cut at the token limit" in n for n in notes)


async def test_a_stop_while_thinking_says_stopped(tmp_path: Path) -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY, tokens_per_s=40))
    async with app.run_test(size=WIDE) as pilot:
        app.prompt.insert("q")
        await pilot.press("enter")
        await wait_until(lambda: app.chat.live and app.chat.live.view.thinking, pilot)
        await pilot.press("escape")
        await wait_until(lambda: not app.chat.busy, pilot)
        assert str(app.query(TurnView).last().pane.title).startswith("Stopped after")


async def test_alternatives_keep_their_time(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "h.sqlite3")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await ask(app, pilot, "q")
        await pilot.press("ctrl+r")
        await wait_until(lambda: len(app.chat.conversation.alternatives) == 2, pilot)
        await wait_until(lambda: not app.chat.busy, pilot)
        await pilot.press("alt+left")
        await wait_until(lambda: app.chat.conversation.shown_alternative == 0, pilot)
        assert str(app.query(TurnView).last().pane.title).startswith("Thought for ")
    store.close()


async def test_a_reopened_reply_shows_its_time_and_how_its_thinking_ended(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "h.sqlite3")
    cid = store.new_conversation(title_from("q"), "m")
    store.add_user_message(cid, "q")
    stats = {"thinking_s": 6.4, "thinking_tokens": 60, "forced_tokens": 17}
    store.add_assistant_message(cid, "Four.", "Hmm.", stats, "stop", thinking_ended="budget")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store), resume=cid)
    async with app.run_test(size=WIDE) as pilot:
        await wait_until(lambda: app.query(TurnView), pilot)
        title = str(app.query(TurnView).last().pane.title)
        assert title == "Thought for 6s · 60 tokens · budget reached (+17 to close it)"
    store.close()
