"""Keys typed before the app owns the terminal: what the user typed while r1chat started.

They wait in the terminal's cooked-mode buffer, where Enter has already become a line feed
(ICRNL): Textual then read "question" + Enter as text plus Ctrl+J, a newline in the prompt, and
the question waited for a second Enter. `stop_cooking` ends cooked mode the moment the app is
about to start (keys typed from then on arrive raw, Enter as a carriage return) and counts the
bytes typed before; the input filter reads a line feed among those as the Enter it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import termios
from collections.abc import Callable


def stop_cooking() -> tuple[int, Callable[[], None]]:
    """(bytes typed ahead, a function that puts the terminal's settings back)."""
    stream = sys.__stdin__
    try:
        fd = stream.fileno() if stream is not None else -1
        if fd < 0 or not os.isatty(fd):
            return 0, lambda: None
        before = termios.tcgetattr(fd)
        raw = termios.tcgetattr(fd)
        raw[0] &= ~termios.ICRNL  # iflag: Enter stays a carriage return
        raw[3] &= ~(termios.ICANON | termios.ECHO)  # lflag: Ctrl+C still interrupts (ISIG)
        termios.tcsetattr(fd, termios.TCSANOW, raw)
        pending = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ValueError, termios.error):
        return 0, lambda: None

    def restore() -> None:
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, before)

    return int(pending), restore
