"""Every dialog takes keys in the order typed, however fast they come: a burst that opens a
dialog and types into it (tmux send-keys: one read) lands in the dialog, as the prompt's bursts
do. Before, the keys after F12 or F8 went to the prompt while the dialog was still opening."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal import Terminal
from test_tui_tmux import LOADED, SIZE, app_env, saved, wait_until


@pytest.fixture
def term(scripted_model: Path, tmp_path: Path, tmux: str) -> Iterator[tuple[Terminal, Path]]:
    home = tmp_path / "home"
    home.mkdir()
    t = Terminal(f"{sys.executable} -m r1chat --model {scripted_model}", app_env(home), SIZE)
    try:
        t.wait_for(LOADED, 60)
        yield t, home
    finally:
        t.close()


def rows(home: Path, sql: str) -> list[tuple[object, ...]]:
    db = home / "history.sqlite3"
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5) as con:
        return con.execute(sql).fetchall()


def ask(t: Terminal, home: Path, text: str) -> None:
    n = len(saved(home))
    t.send(text, "Enter")
    wait_until(lambda: len(saved(home)) >= n + 2, 60, f"the reply to {text!r}")


def test_samples_and_budget_dialogs_take_a_burst(term: tuple[Terminal, Path]) -> None:
    t, _ = term
    t.send("F12", "BSpace", "3", "Enter")  # one burst: open, clear the 1, type 3, accept
    t.wait_for("3 samples", 30)
    t.send("F8", "2", "0", "Enter")
    t.wait_for("thinking budget 20", 30)
    t.send("F8", "BSpace", "BSpace", "Enter")  # an empty budget: none
    wait_until(lambda: "thinking budget" not in t.screen(), 30, "the budget to go")


def test_rename_and_delete_dialogs_take_a_burst(term: tuple[Terminal, Path]) -> None:
    t, home = term
    ask(t, home, "first question")
    t.send("C-s", "Down", "r", "C-u", "renamed in one burst", "Enter")
    wait_until(
        lambda: rows(home, "SELECT title FROM conversations") == [("renamed in one burst",)],
        30,
        "the new title",
    )
    t.send("Escape")
    t.send("C-s", "Down", "d", "y")  # delete, confirmed, in one burst: to the trash
    wait_until(
        lambda: rows(home, "SELECT deleted_at IS NOT NULL FROM conversations") == [(1,)],
        30,
        "the conversation in the trash",
    )
    t.send("u")  # and back: the list still has the focus
    wait_until(
        lambda: rows(home, "SELECT deleted_at IS NULL FROM conversations") == [(1,)],
        30,
        "the conversation restored",
    )


def test_attach_and_edit_take_a_burst(term: tuple[Terminal, Path], tmp_path: Path) -> None:
    t, home = term
    notes = tmp_path / "notes.txt"
    notes.write_text("the secret number is 42\n")
    t.send("C-f", str(notes), "Enter")
    t.wait_for("attached: notes.txt", 30)
    ask(t, home, "what is in it?")
    assert "the secret number is 42" in saved(home)[0][1]
    t.send("C-Up", "End", " (edited)", "Enter")  # edit the last question and send, at once
    wait_until(lambda: len(saved(home)) >= 4, 60, "the edited question's reply")
    assert saved(home)[2][1].endswith("what is in it? (edited)") or "(edited)" in saved(home)[2][1]
