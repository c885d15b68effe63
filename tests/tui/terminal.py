"""A real terminal for the tests: a detached tmux server of our own running one command."""

from __future__ import annotations

import subprocess
import time
import uuid

TMUX = "/usr/bin/tmux"


class Terminal:
    """A tmux server on its own socket, one window of `size` running `command`."""

    def __init__(self, command: str, env: dict[str, str], size: tuple[int, int]) -> None:
        self.socket = f"r1chat-test-{uuid.uuid4().hex[:8]}"
        self.target = f"{self.socket}:0"
        self.tmux(
            "new-session",
            "-d",
            "-s",
            self.socket,
            "-x",
            str(size[0]),
            "-y",
            str(size[1]),
            command,
            # Keep the pane when its program ends: what it left behind can still be read.
            ";",
            "set-option",
            "-t",
            self.socket,
            "remain-on-exit",
            "on",
            env=env,
        )

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(
            [TMUX, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        return out.stdout

    def send(self, *keys: str) -> None:
        """tmux send-keys: each argument a key name (Enter, C-n) or a string typed as is."""
        self.tmux("send-keys", "-t", self.target, *keys)

    def paste(self, text: str) -> None:
        """A bracketed paste of `text`, as a terminal sends one (when the app asked for it)."""
        self.tmux("set-buffer", "-b", "r1chat-paste", text)
        self.tmux("paste-buffer", "-p", "-d", "-b", "r1chat-paste", "-t", self.target)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    def wait_for(self, text: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < end:
            seen = self.screen()
            if text in seen:
                return seen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear on the screen:\n{seen}")

    def alive(self) -> bool:
        """Whether the program in the pane still runs."""
        return self.show("#{pane_dead}") == "0"

    def show(self, fmt: str) -> str:
        """A tmux format about the pane: #{alternate_on}, #{pane_pid}, …"""
        return self.tmux("display", "-p", "-t", self.target, fmt).strip()

    def close(self) -> None:
        self.tmux("kill-server")
