"""A history file whose messages' parents go round in a loop, in the app: opening it or
switching its question versions (Alt+Up) shows an error, never hangs the app."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tui_support import REPLY, wait_until

from r1chat.conversation import Chats
from r1chat.engines.scripted import ScriptedEngine
from r1chat.history import HistoryStore
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import TurnView

WIDE = (130, 40)
LOOP = "the history file is damaged: conversation 1's messages form a loop (message {})"


@contextlib.contextmanager
def no_hang(seconds: float = 30) -> Iterator[None]:
    """A walk round a loop spins in the app's own thread, where no await can time out: an alarm
    interrupts it, so the test fails instead of hanging."""

    def fire(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"the app hung for {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def forked(path: Path) -> HistoryStore:
    """Conversation 1: q1 a1 q2 a2 (ids 1-4), and q2 edited: 5, with its reply 6 (shown)."""
    store = HistoryStore.open(path)
    cid = store.new_conversation("forked", "m")
    for q, a in (("q1", "a1"), ("q2", "a2")):
        store.add_user_message(cid, q)
        store.add_assistant_message(cid, a)
    q2b = store.add_user_message(cid, "q2, edited", parent_id=2)
    store.add_assistant_message(cid, "a2b", parent_id=q2b)
    return store


def set_parent(path: Path, message: int, parent: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.execute("UPDATE messages SET parent_id = ? WHERE id = ?", (parent, message))


def errors(app: R1ChatApp) -> list[str]:
    return [str(n.message) for n in app._notifications if n.severity == "error"]


async def test_resuming_a_looped_conversation_shows_why_and_the_chat_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.sqlite3"
    store = forked(path)
    set_parent(path, 3, 4)  # 3 -> 4 -> 3
    set_parent(path, 6, 4)  # and the conversation shows that loop
    store.set_leaf(1, 4)
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store), resume=1)
    with no_hang():
        async with app.run_test(size=WIDE) as pilot:
            await wait_until(lambda: app.query(".note.-error"), pilot)
            [note] = [str(n.content) for n in app.query(".note.-error")]  # type: ignore[attr-defined]
            assert note == "Could not open the conversation: " + LOOP.format(3)
            assert not app.query(TurnView)
            app.prompt.insert("fresh")
            await pilot.press("enter")
            await wait_until(lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot)
    assert [c.title for c in store.list_conversations()] == ["fresh", "forked"]
    store.close()


async def test_alt_up_on_a_file_looped_meanwhile_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = forked(path)
    app = R1ChatApp(engine=ScriptedEngine(REPLY), chats=Chats(store), resume=1)
    with no_hang():
        async with app.run_test(size=WIDE) as pilot:
            await wait_until(lambda: len(app.query(TurnView)) == 2, pilot)
            # Another program damages the file while it is open: a1 now follows a2b.
            set_parent(path, 2, 6)
            await pilot.press("alt+up")
            await wait_until(lambda: errors(app), pilot)
            assert errors(app) == ["History: " + LOOP.format(2)]
            await pilot.press("alt+down")  # and the app still answers keys
            await wait_until(lambda: len(errors(app)) == 2, pilot)
            assert len(app.query(TurnView)) == 2
    store.close()
