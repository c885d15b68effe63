"""The TUI and the history store: what is saved when, and the sidebar over a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input
from tui_support import ANSWER, REPLY, THINKING, GatedEngine, wait_until

from r1chat.commands.chat import build_app, run_app
from r1chat.config import Settings, paths
from r1chat.conversation import Chats
from r1chat.engines.scripted import ScriptedEngine
from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore, title_from
from r1chat.prompts import ChatMessage
from r1chat.tui.app import R1ChatApp
from r1chat.tui.dialogs import ConfirmScreen, TextPromptScreen
from r1chat.tui.widgets.message import ThinkingText, TurnView

WIDE = (130, 40)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


def idle(app: R1ChatApp) -> bool:
    return not app.chat.busy


async def ask(pilot, app: R1ChatApp, question: str) -> None:  # type: ignore[no-untyped-def]
    n = len(app.query(TurnView))
    app.prompt.focus()
    app.prompt.insert(question)
    await pilot.press("enter")
    await wait_until(lambda: len(app.query(TurnView)) > n, pilot)


def saved(store: HistoryStore, thinking: str, answer: str, *questions: str) -> int:
    cid = store.new_conversation(title_from(questions[0]), "r1-7b")
    for q in questions:
        store.add_user_message(cid, q)
        store.add_assistant_message(cid, answer, thinking, {"thinking_tokens": 9}, "stop")
    return cid


def rows(app: R1ChatApp) -> list[str]:
    """Each row of the sidebar's list, as shown: the title, then what it is or what matched."""
    lst = app.sidebar.conversations
    return [
        lst.get_option_at_index(i).prompt.plain  # type: ignore[union-attr]
        for i in range(lst.option_count)
    ]


def titles(app: R1ChatApp) -> list[str]:
    return [row.split("\n")[0] for row in rows(app)]


async def test_the_question_is_committed_before_the_reply_and_the_reply_after(
    store: HistoryStore,
) -> None:
    engine = GatedEngine(REPLY, pause_after=10)
    app = R1ChatApp(engine=engine, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "Sum of 1 to 10?\nShow the steps.")
        await wait_until(engine.paused.is_set, pilot)
        # A second connection sees only what is committed.
        with HistoryStore.open(store.path) as other:
            [conv] = other.list_conversations()
            assert conv.title == "Sum of 1 to 10?"
            assert [(m.role, m.content) for m in other.messages(conv.id)] == [
                ("user", "Sum of 1 to 10?\nShow the steps.")
            ]
        engine.gate.set()
        await wait_until(lambda: idle(app), pilot)
    reply = store.messages(conv.id)[-1]
    assert (reply.role, reply.content, reply.thinking) == ("assistant", ANSWER, THINKING)
    assert reply.finish_reason == "stop"
    assert reply.stats is not None and reply.stats["completion_tokens"] > 0


async def test_a_reply_stopped_with_escape_is_saved_as_cancelled(store: HistoryStore) -> None:
    engine = GatedEngine(REPLY, pause_after=10)
    app = R1ChatApp(engine=engine, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "q")
        await wait_until(engine.paused.is_set, pilot)
        await pilot.press("escape")
        await wait_until(lambda: idle(app), pilot)
    cid = store.latest_conversation_id()
    assert cid is not None
    reply = store.messages(cid)[-1]
    assert reply.stopped and reply.content == ""
    assert reply.thinking and THINKING.startswith(reply.thinking)


async def test_a_second_turn_goes_into_the_same_conversation(store: HistoryStore) -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "first")
        await wait_until(lambda: idle(app), pilot)
        await ask(pilot, app, "second")
        await wait_until(lambda: idle(app) and len(app.chat.conversation.exchanges) == 2, pilot)
        await pilot.press("ctrl+n")
        await ask(pilot, app, "third")
        await wait_until(lambda: idle(app) and len(app.chat.conversation.exchanges) == 1, pilot)
    convs = store.list_conversations()
    assert [(c.title, c.messages) for c in convs] == [("third", 2), ("first", 4)]


async def test_opening_from_the_sidebar_continues_without_earlier_thinking(
    store: HistoryStore,
) -> None:
    cid = saved(store, "old thinking", "old answer", "old question")
    saved(store, "x", "y", "another chat")
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+s")
        assert app.sidebar.is_open and app.focused is app.sidebar.search_box
        assert titles(app) == ["another chat", "old question"]
        await pilot.press("down")  # from the search box into the list
        assert app.focused is app.sidebar.conversations
        await pilot.press("down", "enter")
        await wait_until(lambda: app.conversation_id == cid and app.query(TurnView), pilot)
        [view] = app.query(TurnView)
        assert view.folded and view.query_one(ThinkingText).text == "old thinking"
        assert view.answer == "old answer" and str(view.pane.title) == "Thought · 9 tokens"
        assert app.focused is app.prompt
        await ask(pilot, app, "new question")
        await wait_until(lambda: idle(app), pilot)
    assert engine.requests[0] == [
        ChatMessage("user", "old question"),
        ChatMessage("assistant", "old answer"),
        ChatMessage("user", "new question"),
    ]
    assert [m.content for m in store.messages(cid)] == [
        "old question",
        "old answer",
        "new question",
        ANSWER,
    ]


async def test_delete_asks_first_and_cancel_keeps_it(store: HistoryStore) -> None:
    keep = saved(store, "t", "a", "keep me")
    gone = saved(store, "t", "a", "delete me")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+s", "down")
        assert titles(app)[0] == "delete me"
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # the focused button is Cancel
        assert not isinstance(app.screen, ConfirmScreen)
        assert {c.id for c in store.list_conversations()} == {keep, gone}
        await pilot.press("d")
        await pilot.click("#confirm")
        await wait_until(lambda: titles(app) == ["keep me"], pilot)
        assert [c.id for c in store.list_conversations()] == [keep]
        assert [c.id for c in store.trash()] == [gone]  # not gone for good: u brings it back
        await pilot.press("u")
        await wait_until(lambda: titles(app) == ["delete me", "keep me"], pilot)
    assert {c.id for c in store.list_conversations()} == {keep, gone}


async def test_deleting_the_open_conversation_starts_a_new_chat(store: HistoryStore) -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "doomed")
        await wait_until(lambda: idle(app), pilot)
        await app.run_action("delete_conversation")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen), pilot)
        await pilot.press("y")
        await wait_until(lambda: app.conversation_id is None and not app.query(TurnView), pilot)
        assert app.chat.conversation.exchanges == []
    assert store.list_conversations() == []


async def test_search_filters_the_list(store: HistoryStore) -> None:
    saved(store, "thinking about primes", "2, 3, 5", "primes below 10")
    saved(store, "thinking about rivers", "the Nile", "longest river")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+s")
        await pilot.press(*"nile")
        await wait_until(lambda: titles(app) == ["longest river"], pilot)
        assert "Nile" in rows(app)[0]
        await pilot.press(*"zzz")
        await wait_until(lambda: titles(app) == ["No matches"], pilot)
        app.sidebar.query_one(Input).value = ""
        await wait_until(lambda: len(titles(app)) == 2, pilot)


async def test_rename_from_the_sidebar(store: HistoryStore) -> None:
    cid = saved(store, "t", "a", "old title")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+s", "down", "r")
        assert isinstance(app.screen, TextPromptScreen)
        box = app.screen.query_one(Input)
        assert box.value == "old title" and app.focused is box
        box.value = "new [b]title[/"
        await pilot.press("enter")
        await wait_until(lambda: titles(app) == ["new [b]title[/"], pilot)
    assert store.get_conversation(cid).title == "new [b]title[/"


async def test_titles_are_text_not_markup(store: HistoryStore) -> None:
    saved(store, "t", "a", "[link=x]click[/link] \x1b[31mred [/]")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("f5")
        assert titles(app) == ["[link=x]click[/link] red [/]"]
        await pilot.press("f5")
        assert not app.sidebar.is_open and app.focused is app.prompt


async def test_resume_by_id_shows_the_turns_and_sends_them_back(store: HistoryStore) -> None:
    cid = saved(store, "th", "a1", "q1", "q2")
    saved(store, "x", "y", "newer")
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine, chats=Chats(store), resume=cid)
    async with app.run_test(size=WIDE) as pilot:
        await wait_until(lambda: len(app.query(TurnView)) == 2, pilot)
        assert all(v.folded for v in app.query(TurnView))
        await ask(pilot, app, "q3")
        await wait_until(lambda: idle(app), pilot)
    assert [m.content for m in engine.requests[0]] == ["q1", "a1", "q2", "a1", "q3"]


async def test_continue_opens_the_latest(_private_history: Path) -> None:
    with HistoryStore.open() as store:
        saved(store, "x", "y", "older")
        latest = saved(store, "x", "y", "latest")
    app, opened = build_app(Settings(), continue_latest=True, engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        await wait_until(lambda: app.query(TurnView), pilot)
        assert app.conversation_id == latest
        assert app.query(TurnView).first().question == "latest"
    assert opened is not None
    opened.close()


async def test_continue_with_an_empty_history_says_so_and_starts_afresh(
    _private_history: Path,
) -> None:
    app, opened = build_app(Settings(), continue_latest=True, engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        notes = [str(n.content) for n in app.query(".note")]  # type: ignore[attr-defined]
        assert any("No conversation to continue yet" in n for n in notes), notes
        assert app.conversation_id is None
    assert opened is not None
    opened.close()


async def test_resume_of_an_unknown_id_is_shown_and_the_chat_goes_on(store: HistoryStore) -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store), resume=99)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        notes = [str(n.content) for n in app.query(".note.-error")]  # type: ignore[attr-defined]
        assert notes and "no conversation 99" in notes[0]
        await ask(pilot, app, "fresh")
        await wait_until(lambda: idle(app), pilot)
    assert [c.title for c in store.list_conversations()] == ["fresh"]


def test_run_app_refuses_an_unknown_id_before_starting(tmp_path: Path) -> None:
    with pytest.raises(R1ChatError, match="no conversation 42"):
        run_app(Settings(), resume=42)


async def test_a_corrupt_history_is_reported_and_left_alone(_private_history: Path) -> None:
    _private_history.mkdir(parents=True, exist_ok=True)
    bad = paths().history_db
    bad.write_bytes(b"not a database at all" * 10)
    before = bad.read_bytes()
    app, opened = build_app(Settings(), engine=ScriptedEngine(REPLY))
    assert opened is None
    async with app.run_test(size=WIDE) as pilot:
        note = app.query_one("#history-error")
        assert "not an SQLite database" in str(note.content)  # type: ignore[attr-defined]
        await ask(pilot, app, "still works?")
        await wait_until(lambda: idle(app), pilot)
        assert app.chat.conversation.exchanges == [("still works?", ANSWER)]
        await pilot.press("ctrl+s")
        assert titles(app) == ["History is off"]
    assert bad.read_bytes() == before


async def test_the_default_store_lives_under_r1chat_home(_private_history: Path) -> None:
    app, opened = build_app(Settings(), engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "where am I saved?")
        await wait_until(lambda: idle(app), pilot)
    assert opened is not None
    path = opened.path
    opened.close()
    assert path.is_relative_to(_private_history)
    with HistoryStore.open(path) as s:
        assert [c.title for c in s.list_conversations()] == ["where am I saved?"]


async def test_quitting_mid_reply_saves_what_came_as_stopped(store: HistoryStore) -> None:
    engine = GatedEngine(REPLY, pause_after=10)
    app = R1ChatApp(engine=engine, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "q")
        await wait_until(engine.paused.is_set, pilot)
        await pilot.press("ctrl+q")
    cid = store.latest_conversation_id()
    assert cid is not None
    roles = [m.role for m in store.messages(cid)]
    assert roles == ["user", "assistant"]
    reply = store.messages(cid)[-1]
    assert reply.stopped
    assert reply.thinking and THINKING.startswith(reply.thinking)


async def test_live_and_reloaded_conversations_send_the_model_the_same_text(
    store: HistoryStore,
) -> None:
    # Stored as written, sanitised only on screen: the model's next prompt cannot depend on
    # whether the conversation was reloaded in between (nor would a KV-cache prefix).
    answer = "Red \x1b[31mhere\x1b[0m and a title \x1b]0;pwned\x07 trick."
    reply = f"Thinking.\n</think>\n\n{answer}"
    question = "first \x1b[1mbold\x1b[0m question"
    live = ScriptedEngine(reply)
    app = R1ChatApp(engine=live, chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, question)
        await wait_until(lambda: idle(app), pilot)
        view = app.query(TurnView).last()
        assert view.answer == "Red here and a title  trick."  # what the screen shows
        assert "\x1b" not in str(view.query_one(".question").content)  # type: ignore[attr-defined]
        await ask(pilot, app, "second")
        await wait_until(lambda: idle(app) and len(live.requests) == 2, pilot)
        cid = app.conversation_id
    reloaded = ScriptedEngine(reply)
    app = R1ChatApp(engine=reloaded, chats=Chats(store), resume=cid)
    async with app.run_test(size=WIDE) as pilot:
        await wait_until(lambda: app.query(TurnView), pilot)
        assert "\x1b" not in app.query(TurnView).first().answer
        # The reloaded conversation holds both turns; ask the second question again from the
        # state after the first by dropping the last exchange.
        app.chat.conversation.exchanges.pop()
        await ask(pilot, app, "second")
        await wait_until(lambda: idle(app) and reloaded.requests, pilot)
    assert reloaded.requests[0] == live.requests[1]
    assert live.requests[1][:2] == [ChatMessage("user", question), ChatMessage("assistant", answer)]


async def test_typing_a_search_never_deletes_anything(store: HistoryStore) -> None:
    """The issue's case: Ctrl+S, then "dynamic" typed (d opened the delete dialog, y said yes)."""
    keep = saved(store, "t", "dynamic programming, step by step", "dynamic programming")
    other = saved(store, "t", "a", "another")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+s", *"dynamic", "y", "r", "d")
        assert app.focused is app.sidebar.search_box
        assert app.sidebar.search_box.value == "dynamicyrd"
        assert not isinstance(app.screen, (ConfirmScreen, TextPromptScreen))
        await pilot.press(*["backspace"] * 3)
        await wait_until(lambda: titles(app) == ["dynamic programming"], pilot)
        assert "dynamic programming" in rows(app)[0].split("\n")[1]  # the text that matched
    assert {c.id for c in store.list_conversations()} == {keep, other}


async def test_rows_say_when_which_model_and_how_big_and_filter_by_model(
    store: HistoryStore,
) -> None:
    a = store.new_conversation("What is 2+2?", "r1-7b")
    store.add_user_message(a, "What is 2+2?")
    store.add_assistant_message(a, "4", "t", {"completion_tokens": 1204}, "stop")
    b = store.new_conversation("What is 2+2?", "SmolLM2-135M")
    store.add_user_message(b, "What is 2+2?")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+s")
        [row_b, row_a] = rows(app)
        assert row_a.split("\n")[1].endswith("· r1-7b · 2 msgs · 1,204 tok")
        assert row_b.split("\n")[1].endswith("· SmolLM2-135M · 1 msgs · 0 tok")
        await pilot.press(*"model:smol")
        await wait_until(lambda: len(rows(app)) == 1, pilot)
        assert "SmolLM2" in rows(app)[0]
        await pilot.press(*" 2+2")
        await wait_until(lambda: len(rows(app)) == 1 and "2+2" in rows(app)[0], pilot)


async def test_the_sidebar_says_which_keys_act_where_the_focus_is(store: HistoryStore) -> None:
    saved(store, "t", "a", "one")
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+s")
        assert "type to search" in str(app.sidebar.hint.render())
        await pilot.press("down")
        await wait_until(lambda: "r renames" in str(app.sidebar.hint.render()), pilot)
        await pilot.press("up")  # from the first row back to the search
        assert app.focused is app.sidebar.search_box
