"""`r1chat ask` and the history: saving, continuing, and surviving a kill mid-generation."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import tiny_models
from cli_support import Cli, user_env


def history_list(cli: Cli) -> list[dict]:
    proc = cli("history", "list", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_ask_saves_question_and_reply(cli: Cli, scripted_model: Path) -> None:
    assert cli("ask", "--model", str(scripted_model), "What is 2+2?").returncode == 0
    convs = history_list(cli)
    assert len(convs) == 1 and convs[0]["messages"] == 2
    assert convs[0]["title"] == "What is 2+2?"
    shown = json.loads(cli("history", "show", str(convs[0]["id"]), "--json").stdout)
    msgs = shown["messages"]
    assert msgs[0]["role"] == "user" and msgs[0]["content"] == "What is 2+2?"
    assert msgs[1]["content"] == tiny_models.SCRIPT_ANSWER
    assert msgs[1]["thinking"] == tiny_models.SCRIPT_THINKING
    assert msgs[1]["finish_reason"] == "stop"


def test_no_save_saves_nothing(cli: Cli, scripted_model: Path) -> None:
    assert cli("ask", "--model", str(scripted_model), "--no-save", "hi").returncode == 0
    assert history_list(cli) == []


def test_continue_sends_earlier_turns_without_thinking(cli: Cli, scripted_model: Path) -> None:
    first = json.loads(cli("ask", "--model", str(scripted_model), "--json", "one").stdout)
    second = json.loads(cli("ask", "--model", str(scripted_model), "--json", "-c", "two").stdout)
    # The second prompt holds the first question and answer, not the thinking.
    extra = second["stats"]["prompt_tokens"] - first["stats"]["prompt_tokens"]
    assert 15 <= extra <= 30  # about the 16-token answer plus "two" and template tokens
    convs = history_list(cli)
    assert len(convs) == 1 and convs[0]["messages"] == 4
    third = cli(
        "ask",
        "--model",
        str(scripted_model),
        "--json",
        "--conversation",
        str(convs[0]["id"]),
        "three",
    )
    assert third.returncode == 0
    assert history_list(cli)[0]["messages"] == 6


def test_continue_with_empty_history_and_unknown_id(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "-c", "hi")
    assert proc.returncode == 2 and b"no conversation to continue" in proc.stderr
    proc = cli("ask", "--model", str(scripted_model), "--conversation", "42", "hi")
    assert proc.returncode == 1 and b"no conversation 42" in proc.stderr


def test_corrupt_history_is_reported_and_kept(cli: Cli, scripted_model: Path, r1home: Path) -> None:
    db = r1home / "history.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    proc = cli("ask", "--model", str(scripted_model), "hi")
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "history.sqlite3" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert db.read_bytes() == before


def test_sigkill_mid_generation_keeps_the_database_whole(
    r1home: Path, scripted_model: Path, noise_model: Path
) -> None:
    env = user_env(r1home)

    def ask(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "r1chat", "ask", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )

    assert ask("--model", str(scripted_model), "earlier question").wait(60) == 0
    proc = ask("--model", str(noise_model), "--max-tokens", "100000", "-c", "doomed question")
    db = r1home / "history.sqlite3"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as con:
            n = con.execute("SELECT count(*) FROM messages").fetchone()[0]
        if n == 3:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # well into generation
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT role, content FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "earlier question")
    assert rows[1] == ("assistant", tiny_models.SCRIPT_ANSWER)
    assert rows[2] == ("user", "doomed question")
    assert len(rows) == 3
