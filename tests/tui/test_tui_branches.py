"""Regenerate in the app: Ctrl+R samples the last reply again, the earlier ones stay as
alternatives ("‹ 2/3 ›"), Alt+←/→ switch, and the reply shown is the one the next question
builds on, in the app and in the history (a real SQLite file)."""

from __future__ import annotations

from pathlib import Path

from tui_support import GatedEngine, wait_until

from r1chat.config import Settings
from r1chat.conversation import Chats
from r1chat.engines.scripted import ScriptedEngine, split_pieces
from r1chat.history import HistoryStore
from r1chat.prompts import ChatMessage
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import TurnView

WIDE = (130, 40)


def numbered() -> ScriptedEngine:
    calls = {"n": 0}

    def reply(_messages: list[ChatMessage]) -> str:
        calls["n"] += 1
        return f"Thought {calls['n']}.\n</think>\n\nAnswer {calls['n']}."

    return ScriptedEngine(reply)


def versions(app: R1ChatApp) -> list[str]:
    """Each question's "‹ shown/of ›" mark (empty when it was never edited)."""
    out = []
    for view in app.query(TurnView):
        widget = view.query_one(".versions")
        out.append(str(widget.render()).split("  ")[0] if widget.display else "")
    return out


def label(app: R1ChatApp) -> str:
    view = app.query(TurnView).last()
    widget = view.query_one(".alternatives")
    return str(widget.render()) if widget.display else ""


async def test_regenerate_keeps_alternatives_and_the_shown_one_goes_on(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "history.sqlite3")
    engine = numbered()
    app = R1ChatApp(engine=engine, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        app.prompt.insert("What is 2+2?")
        await pilot.press("enter")
        await wait_until(lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot)
        assert label(app) == ""
        await pilot.press("ctrl+r")
        await wait_until(
            lambda: not app.chat.busy and len(app.chat.conversation.alternatives) == 2, pilot
        )
        assert app.query(TurnView).last().answer == "Answer 2."
        assert label(app).startswith("‹ 2/2 ›")
        assert len(app.query(TurnView)) == 1
        assert app.chat.conversation.exchanges == [("What is 2+2?", "Answer 2.")]
        # The engine saw the same question, with nothing of the first reply.
        assert engine.requests[1] == [ChatMessage("user", "What is 2+2?")]
        await pilot.press("alt+left")
        await wait_until(lambda: app.query(TurnView).last().answer == "Answer 1.", pilot)
        assert label(app).startswith("‹ 1/2 ›")
        assert app.chat.conversation.exchanges == [("What is 2+2?", "Answer 1.")]
        cid = app.chat.conversation.id
        assert cid is not None
        assert [m.content for m in store.shown(cid)] == ["What is 2+2?", "Answer 1."]
        app.prompt.insert("And 3+3?")
        await pilot.press("enter")
        await wait_until(lambda: len(app.chat.conversation.exchanges) == 2, pilot)
        await wait_until(lambda: not app.chat.busy, pilot)
        assert engine.requests[-1][:2] == [
            ChatMessage("user", "What is 2+2?"),
            ChatMessage("assistant", "Answer 1."),
        ]
        assert [m.content for m in store.shown(cid)][:2] == ["What is 2+2?", "Answer 1."]
        assert len(store.messages(cid, all_branches=True)) == 5
    store.close()


async def test_a_reopened_conversation_shows_its_alternatives(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "history.sqlite3")
    cid = store.new_conversation("q", "m")
    q = store.add_user_message(cid, "q")
    store.add_assistant_message(cid, "first", parent_id=q)
    store.add_assistant_message(cid, "second", parent_id=q, activate=True)
    app = R1ChatApp(engine=numbered(), chats=Chats(store), resume=cid)
    async with app.run_test(size=WIDE) as pilot:
        await wait_until(lambda: app.query(TurnView), pilot)
        await wait_until(lambda: app.query(TurnView).last().answer == "second", pilot)
        assert label(app).startswith("‹ 2/2 ›")
        await pilot.press("alt+right")  # wraps round to the first
        await wait_until(lambda: app.query(TurnView).last().answer == "first", pilot)
        assert [m.content for m in store.shown(cid)] == ["q", "first"]
    store.close()


async def test_an_edited_question_forks_and_the_old_branch_comes_back(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "history.sqlite3")
    engine = numbered()
    app = R1ChatApp(engine=engine, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        for question in ("one?", "two?"):
            app.prompt.insert(question)
            await pilot.press("enter")

            def answered(q: str = question) -> bool:
                exchanges = app.chat.conversation.exchanges
                return bool(exchanges) and exchanges[-1][0] == q and not app.chat.busy

            await wait_until(answered, pilot)
        await pilot.press("ctrl+up", "ctrl+up")  # the last question, then the one before
        assert app.prompt.text == "one?" and app.chat.editing == 0
        app.prompt.load_text("ONE?")
        await pilot.press("enter")
        await wait_until(lambda: not app.chat.busy and app.chat.editing is None, pilot)
        await wait_until(lambda: len(app.query(TurnView)) == 1, pilot)
        assert app.chat.conversation.exchanges == [("ONE?", "Answer 3.")]
        assert engine.requests[-1] == [ChatMessage("user", "ONE?")]
        cid = app.chat.conversation.id
        assert cid is not None
        assert [m.content for m in store.shown(cid)] == ["ONE?", "Answer 3."]
        # The edited question says so on itself, not only in a passing notification.
        await wait_until(lambda: versions(app) == ["‹ 2/2 ›"], pilot)
        await pilot.press("alt+up")  # back to the first version, with what followed it
        await wait_until(lambda: len(app.query(TurnView)) == 2, pilot)
        assert [m.content for m in store.shown(cid)] == ["one?", "Answer 1.", "two?", "Answer 2."]
        assert app.chat.conversation.exchanges[-1] == ("two?", "Answer 2.")
        assert versions(app) == ["‹ 1/2 ›", ""]
    store.close()


async def test_samples_in_the_app_vote_and_each_can_be_opened(tmp_path: Path) -> None:
    from textual.widgets import Collapsible

    store = HistoryStore.open(tmp_path / "history.sqlite3")
    engine = numbered()  # "Answer 1.", "Answer 2.", …: three different answers
    boxed = iter(["4", "4.0", "5"])
    engine._reply = lambda _m: f"Think.\n</think>\n\nSo $\\boxed{{{next(boxed)}}}$"
    app = R1ChatApp(engine=engine, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("f12")
        await pilot.pause()
        screen_input = app.screen.query_one("Input")
        screen_input.value = "3"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(lambda: app.samples == 3, pilot)
        assert "3 samples" in str(app.status.content)
        app.prompt.insert("2+2?")
        await pilot.press("enter")
        await wait_until(lambda: app.query(".sample"), pilot)
        await wait_until(lambda: not app.chat.busy, pilot)
        view = app.query(TurnView).last()
        notes = [str(n.render()) for n in view.query(".note")]
        assert any("2 of 3 samples agree" in n for n in notes), notes
        panes = list(view.query(".sample").results(Collapsible))
        assert len(panes) == 3 and all(p.collapsed for p in panes)
        assert view.answer.startswith("So $\\boxed{4")
        cid = app.chat.conversation.id
        assert cid is not None
        every = store.messages(cid, all_branches=True)
        assert [m.role for m in every] == ["user", "assistant", "assistant", "assistant"]
        assert store.shown(cid)[-1].content == view.answer
    store.close()


async def test_finished_thinking_shows_its_math_readable_and_keeps_it_raw() -> None:
    from r1chat.tui.widgets.message import ThinkingText

    thinking = "So $\\frac{1}{2}$ of $\\sqrt{2}$.\n"
    # Paused once the thinking is on screen, as a real model pauses: the pane draws it raw.
    engine = GatedEngine(f"{thinking}</think>\n\nDone.", pause_after=len(split_pieces(thinking)))
    app = R1ChatApp(Settings(thinking="open"), engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        app.prompt.insert("q")
        await pilot.press("enter")
        await wait_until(engine.paused.is_set, pilot)
        await pilot.pause(0.3)
        assert "sqrt" in app.export_screenshot()
        engine.gate.set()
        await wait_until(lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot)
        view = app.query(TurnView).last()
        await wait_until(lambda: "1/2" in view.query_one(ThinkingText).text, pilot)
        assert view.query_one(ThinkingText).text.strip() == "So 1/2 of √2."
        assert view.thinking.strip() == "So $\\frac{1}{2}$ of $\\sqrt{2}$."  # copy takes this
        # And on screen: the pane is redrawn with it (Textual kept the old lines).
        await pilot.pause(0.2)
        screen = app.export_screenshot()
        assert "√2" in screen and "sqrt" not in screen
