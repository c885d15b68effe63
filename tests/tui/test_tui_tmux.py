"""Smoke test in a real terminal: tmux runs `python -m r1chat --model TINY.gguf`, we type a
question, press Enter and read the answer off the screen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

TMUX = "/usr/bin/tmux"


class Terminal:
    """A detached tmux server of our own (its own socket), one window running `command`."""

    def __init__(self, command: str, env: dict[str, str], size: tuple[int, int]) -> None:
        self.socket = f"r1chat-smoke-{uuid.uuid4().hex[:8]}"
        self.target = f"{self.socket}:0"
        self.tmux("new-session", "-d", "-s", self.socket, "-x", str(size[0]), "-y",
                  str(size[1]), command, env=env)

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True,
                             timeout=10, env=env, check=False)
        return out.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    def wait_for(self, text: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < end:
            seen = self.screen()
            if text in seen:
                return seen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear on the screen:\n{seen}")

    def alive(self) -> bool:
        return self.socket in self.tmux("list-sessions")

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.mark.skipif(not Path(TMUX).exists(), reason="tmux is not installed")
def test_tui_answers_in_a_real_terminal(scripted_model: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("R1CHAT_", "TMUX"))}
    env.update({"R1CHAT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color",
                "R1CHAT_CTX": "512"})
    term = Terminal(f"{sys.executable} -m r1chat --model {scripted_model}", env, (120, 40))
    try:
        term.wait_for("Ask something", 30)
        term.wait_for("tiny-r1-scripted", 60)  # the status line, once the model has loaded
        term.tmux("send-keys", "-t", term.target, "-l", "What is 2+2?")
        term.wait_for("What is 2+2?", 30)  # typed into the prompt before Enter is pressed
        term.tmux("send-keys", "-t", term.target, "Enter")
        shown = term.wait_for("So the answer is", 60)
        assert "What is 2+2?" in shown
        # The pane's final title comes when the turn ends, a frame or so after the answer.
        term.wait_for("Thought for", 30)
        term.tmux("send-keys", "-t", term.target, "C-q")
        end = time.monotonic() + 15
        while term.alive() and time.monotonic() < end:
            time.sleep(0.2)
        assert not term.alive(), "r1chat did not quit on Ctrl+Q"
    finally:
        term.close()
    from r1chat.history import HistoryStore

    [db] = home.rglob("history.sqlite3")
    with HistoryStore.open(db) as store:
        [conv] = store.list_conversations()
        assert conv.title == "What is 2+2?"
        assert [m.role for m in store.messages(conv.id)] == ["user", "assistant"]
