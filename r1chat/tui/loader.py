"""The model, loaded in a worker thread while the app is already up: what the load tells the app
(download progress, notes such as what auto-fit chose) as messages, a way to stop it when the
app closes, and loading again, waiting longer each time, while a server cannot be reached."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.app import App
from textual.timer import Timer

from r1chat.tui import messages
from r1chat.tui.text import retriable

if TYPE_CHECKING:
    from r1chat.engines.base import Engine

# Seconds before loading again from a server that could not be reached, try after try.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class LoadReport:
    """Handed to the engine factory: what it reports becomes a message to the app."""

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


EngineFactory = Callable[[LoadReport], "Engine"]


class ModelLoader:
    """Runs `factory` in a worker thread; the app hears ModelLoaded or ModelFailed."""

    def __init__(self, app: App[None], factory: EngineFactory | None, *, remote: bool) -> None:
        self.app = app
        self.factory = factory
        self.remote = remote  # a server: may come up later, so failures are tried again
        self.report = LoadReport(app)
        self.failures = 0  # loads that failed in a row
        self._timer: Timer | None = None

    @property
    def waiting(self) -> bool:
        """A failed load will be tried again."""
        return self._timer is not None

    def start(self) -> bool:
        """Load (again); False when there is nothing to load."""
        if self.factory is None:
            return False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        factory = self.factory
        self.app.run_worker(lambda: self._load(factory), thread=True, exclusive=True, group="load")
        return True

    def _load(self, factory: EngineFactory) -> None:
        try:
            engine = factory(self.report)
        except BaseException as e:  # shown in the app; the process goes on
            self.app.post_message(messages.ModelFailed(e))
            return
        if not self.app.post_message(messages.ModelLoaded(engine)):
            engine.close()  # the app closed while the model loaded

    def failed(self, error: BaseException) -> float | None:
        """After a failed load: the seconds until the next try (scheduled), or None."""
        if not (self.remote and retriable(error)):
            return None
        delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
        self.failures += 1
        self._timer = self.app.set_timer(delay, self.start)
        return delay

    def loaded(self) -> int:
        """After a load that worked: how many failed before it."""
        failures, self.failures = self.failures, 0
        return failures

    def stop(self) -> None:
        """The app closes: a load under way stops, none starts."""
        self.report.cancel.set()
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
