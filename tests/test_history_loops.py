"""A hand-made history file whose messages' parents go round in a loop: every command that
reads the conversation ends at once with one line, instead of following the parents for ever."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from cli_support import run_cli

from r1chat.history import HistoryStore

LOOP = (
    "r1chat: error: the history file is damaged: conversation 1's messages form a loop (message 3)"
)


@pytest.fixture
def looped(r1home: Path) -> Path:
    """Conversation 1: q1 a1 q2 a2 (ids 1-4), then q2's parent set to a2: 3 -> 4 -> 3."""
    db = r1home / "history.sqlite3"
    with HistoryStore.open(db) as store:
        cid = store.new_conversation("looped", "m")
        for q, a in (("q1", "a1"), ("q2", "a2")):
            store.add_user_message(cid, q)
            store.add_assistant_message(cid, a)
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE messages SET parent_id = 4 WHERE id = 3")
    return db


@pytest.mark.parametrize(
    "args",
    [("history", "show", "1"), ("history", "show", "1", "--json"), ("history", "export", "1")],
    ids=["show", "show-json", "export"],
)
def test_history_commands_say_the_file_is_damaged(
    looped: Path, r1home: Path, args: tuple[str, ...]
) -> None:
    out = run_cli(*args, home=r1home, timeout=60)
    assert (out.returncode, out.stderr.decode()) == (1, LOOP + "\n")
    assert out.stdout == b""


@pytest.mark.parametrize("how", [["-c"], ["--conversation", "1"], ["-c", "--retry"]])
def test_continuing_a_looped_conversation_says_so_and_saves_nothing(
    looped: Path, r1home: Path, scripted_model: Path, how: list[str]
) -> None:
    question = [] if "--retry" in how else ["q3"]
    out = run_cli("ask", "-m", str(scripted_model), *how, *question, home=r1home, timeout=60)
    assert (out.returncode, out.stderr.decode()) == (1, LOOP + "\n")
    with contextlib.closing(sqlite3.connect(looped)) as con:
        assert con.execute("SELECT count(*) FROM messages").fetchone() == (4,)
