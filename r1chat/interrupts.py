"""Ctrl+C, SIGTERM and SIGHUP for the one-shot commands: stop at once, keep what came.

Python raises KeyboardInterrupt wherever the interpreter happens to be. Inside a call from
llama.cpp back into Python (its log or progress callback, during a model load) that exception
is printed as "Exception ignored on calling ctypes callback function" and lost: the load and the
whole reply went on. So while llama.cpp runs, a signal only sets a flag (`deferred`); the
callbacks and the decode loop look at it and stop, and the command then exits with 128 + the
signal's number. Elsewhere the signal raises `Interrupted` at once.
A second signal always raises.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = tuple(
    s
    for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
    if s is not None
)


class Interrupted(BaseException):
    """A signal asked the command to stop; it exits with 128 + `signum`. Not a
    KeyboardInterrupt: Typer would turn that into exit status 130 whatever the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Interrupts:
    """The process's stop signals while a command runs (install from the main thread only)."""

    def __init__(self) -> None:
        self.event = threading.Event()  # set by the first signal: stop what runs
        self.signum: int | None = None
        self._defer = 0
        self._previous: dict[int, object] = {}

    def install(self) -> Interrupts:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        self.event.set()
        if not first or not self._defer:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[threading.Event]:
        """Within: a first signal only sets the event, for code that checks it to stop."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        self._defer += 1
        try:
            yield self.event
        finally:
            self._defer -= 1

    @property
    def exit_code(self) -> int:
        return 0 if self.signum is None else 128 + self.signum


def quiet_termination() -> None:
    """Ctrl+C, SIGTERM and SIGHUP raise Interrupted from the entry point on, so a command
    stopped while it still imports or parses its arguments exits 130, 143 or 129 quietly, like
    one stopped later (`handled` takes over once a command runs). Not KeyboardInterrupt: one that
    passes through an import makes CPython kill the process with SIGINT at exit, whatever exit
    status the program chose. Main thread only."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    for sig in SIGNALS:
        signal.signal(sig, stop)


@contextlib.contextmanager
def handled() -> Iterator[Interrupts]:
    """Install the handlers for the block (a no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield Interrupts()
        return
    interrupts = Interrupts().install()
    try:
        yield interrupts
    finally:
        interrupts.restore()
