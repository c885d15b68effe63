"""Give the terminal back however the app dies.

Textual restores the terminal when the app ends, but not when the process is killed (SIGKILL, an
abort inside llama.cpp): the shell was left in the alternate screen, in raw mode, with mouse
reporting on. A forked watcher, waiting on a pipe, outlives such a death: it reads end-of-file
instead of the goodbye a clean exit writes, and restores the terminal's modes and settings.
Forking costs well under a millisecond and the watcher sleeps in one `read`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

# Leave the alternate screen, show the cursor, stop mouse and focus reports, bracketed paste and
# the kitty keyboard protocol, reset colours: what Textual turns on.
RESTORE = (
    b"\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l"
    b"\x1b[?1004l\x1b[?2004l\x1b[<u\x1b[0m\r\n"
)


def guard_terminal() -> Callable[[], None]:
    """Start the watcher; call what comes back when the app has closed cleanly."""
    stream = sys.__stderr__ or sys.__stdout__
    try:
        import termios

        fd = stream.fileno() if stream is not None else -1
        if fd < 0 or not os.isatty(fd):
            return lambda: None
        settings = termios.tcgetattr(fd)
        tty_name = os.ttyname(fd)
        read_end, write_end = os.pipe()
        pid = os.fork()
    except (ImportError, OSError, ValueError, AttributeError):
        return lambda: None
    if pid == 0:  # the watcher
        try:
            os.close(write_end)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_IGN)
            if not os.read(read_end, 1):  # end of file: the app died without a goodbye
                _restore(fd, tty_name, settings)
        finally:
            os._exit(0)
    os.close(read_end)

    def release() -> None:
        with contextlib.suppress(OSError):
            os.write(write_end, b"ok")
            os.close(write_end)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)

    return release


def _restore(fd: int, tty_name: str, settings: list[Any]) -> None:
    import termios

    try:  # the usual case: the app ran from a shell, which still holds the terminal
        os.write(fd, RESTORE)
        termios.tcsetattr(fd, termios.TCSANOW, settings)
    except OSError:
        # The app led the terminal's session, so its death hung up every descriptor it shared:
        # open the terminal afresh (a race with the terminal closing, which it may lose).
        tty = os.open(tty_name, os.O_WRONLY | os.O_NOCTTY)
        os.write(tty, RESTORE)
        termios.tcsetattr(tty, termios.TCSANOW, settings)
