"""What a model loading in a worker thread tells the app: download progress and notes (what
auto-fit chose, a pin the hub lost), each becoming a message; and a way to stop the load."""

from __future__ import annotations

import threading
import time

from textual.app import App

from r1chat.tui import messages


class LoadReport:
    def __init__(self, app: App[None]) -> None:
        self._app = app
        self._shown = 0.0
        self.cancel = threading.Event()  # set when the app closes: the load stops midway

    def download(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._shown < 0.25 and (total is None or done < total):
            return  # a few updates a second are enough
        self._shown = now
        self._app.post_message(messages.DownloadProgress(done, total))

    def note(self, line: str) -> None:
        self._app.post_message(messages.LoadNote(line))
