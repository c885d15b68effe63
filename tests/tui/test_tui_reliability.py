"""The app in a real terminal under abuse: pastes with escape characters, keys pressed fast
while a reply streams, the process killed, signals. tmux gives the terminal; the history file
says what was really sent."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal import Terminal
from test_tui_tmux import LOADED, SIZE, app_env, saved, wait_until


@pytest.fixture
def noise_app(noise_model: Path, tmp_path: Path, tmux: str) -> Iterator[tuple[Terminal, Path]]:
    """The app on the noise model, whose replies never end by themselves."""
    home = tmp_path / "home"
    home.mkdir()
    env = app_env(home, R1CHAT_MAX_TOKENS="100000", R1CHAT_CTX="8192")
    term = Terminal(f"{sys.executable} -m r1chat --model {noise_model}", env, SIZE)
    try:
        term.wait_for(LOADED, 60)
        yield term, home
    finally:
        term.close()


def app_pid(term: Terminal) -> int:
    """The r1chat process in the pane: the pane's own, or its child when a shell runs it."""
    pid = int(term.show("#{pane_pid}"))
    for _ in range(3):
        if b"\0-m\0r1chat\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pid = int(children[0])
    raise AssertionError("no r1chat process in the pane")


def test_a_paste_holding_escape_characters_keeps_its_text_in_order(
    noise_app: tuple[Terminal, Path],
) -> None:
    term, home = noise_app
    term.paste("pasted \x1bc1 text \x1b[31m in order")
    term.wait_for("in order", 30)
    term.send("Enter")
    wait_until(lambda: saved(home), 30, "the question")
    question = saved(home)[0][1]
    assert question.startswith("pasted ") and question.endswith("in order"), question
    assert "\x1b" not in question
    term.send("Escape")


def test_fast_keys_while_a_reply_streams_keep_questions_apart(
    noise_app: tuple[Terminal, Path],
) -> None:
    term, home = noise_app
    term.send("first question", "Enter")
    wait_until(lambda: len(saved(home)) == 1, 30, "the first question")
    time.sleep(0.5)  # the reply is streaming
    # Stop, open and close the history, a new chat, and the next question: all in one burst.
    term.send("Escape", "C-s", "Escape", "C-n", "second question", "Enter")
    wait_until(lambda: len(saved(home)) >= 3, 30, "the second question")
    term.send("Escape")
    wait_until(lambda: len(saved(home)) == 4, 30, "the second reply, stopped")
    questions = [text for role, text in saved(home) if role == "user"]
    assert questions == ["first question", "second question"]
    import sqlite3

    with sqlite3.connect(home / "history.sqlite3") as con:
        convs = con.execute("SELECT count(*) FROM conversations").fetchone()[0]
    assert convs == 2  # Ctrl+N made the second question a new conversation


def test_the_terminal_is_given_back_when_the_app_is_killed(
    noise_model: Path, tmp_path: Path, tmux: str
) -> None:
    # Run from a shell, as a user does: when the app itself leads the terminal's session (the
    # pane's own program), its death hangs the terminal up and tmux may close the pane before
    # anyone can write to it.
    env = app_env(tmp_path, R1CHAT_MAX_TOKENS="100000", R1CHAT_CTX="8192")
    app = f"{sys.executable} -m r1chat --model {noise_model}"
    term = Terminal(f"sh -c '{app}; sleep 600'", env, SIZE)
    try:
        term.wait_for(LOADED, 60)
        assert term.show("#{alternate_on}") == "1" and term.show("#{mouse_any_flag}") == "1"
        pid = app_pid(term)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 15, "the app to die")
        wait_until(lambda: term.show("#{alternate_on}") == "0", 15, "the main screen")
        assert term.show("#{mouse_any_flag}#{mouse_button_flag}#{mouse_sgr_flag}") == "000"
    finally:
        term.close()


def test_sigterm_closes_the_app_and_keeps_the_reply(noise_app: tuple[Terminal, Path]) -> None:
    term, home = noise_app
    term.send("a question", "Enter")
    wait_until(lambda: len(saved(home)) == 1, 30, "the question")
    time.sleep(0.5)
    os.kill(app_pid(term), signal.SIGTERM)
    wait_until(lambda: len(saved(home)) == 2, 30, "the reply saved")
    wait_until(lambda: not term.alive(), 15, "the app to end")
    assert term.show("#{alternate_on}") == "0"


def test_ctrl_c_stops_a_reply_then_quits_when_pressed_twice(
    noise_app: tuple[Terminal, Path],
) -> None:
    term, home = noise_app
    term.send("a question", "Enter")
    wait_until(lambda: len(saved(home)) == 1, 30, "the question")
    time.sleep(0.3)
    term.send("C-c")
    wait_until(lambda: len(saved(home)) == 2, 30, "the reply, stopped")
    term.wait_for("Stopped", 10)
    term.send("C-c")
    term.wait_for("Ctrl+C again", 10)
    term.send("C-c")
    wait_until(lambda: not term.alive(), 15, "the app to quit")


def test_closing_the_terminal_keeps_the_reply_and_ends_the_app(
    noise_app: tuple[Terminal, Path],
) -> None:
    term, home = noise_app
    term.send("a question", "Enter")
    wait_until(lambda: len(saved(home)) == 1, 30, "the question")
    time.sleep(0.5)
    pid = app_pid(term)
    term.close()  # the terminal goes away: SIGHUP
    wait_until(lambda: len(saved(home)) == 2, 30, "the reply saved")
    wait_until(
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        ),
        30,
        "the app gone",
    )


def test_ctrl_g_answers_now_in_a_real_terminal(noise_app: tuple[Terminal, Path]) -> None:
    term, home = noise_app
    term.send("a question", "Enter")
    wait_until(lambda: len(saved(home)) == 1, 30, "the question")
    term.wait_for("Thinking…", 30)
    term.send("C-g")
    term.wait_for("answered on request", 30)
    term.send("Escape")  # the noise model's answer never ends by itself
    wait_until(lambda: len(saved(home)) == 2, 30, "the reply")
