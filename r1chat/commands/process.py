"""A sane process before any command runs: standard streams that exist, and arguments that are
text. Both failed as tracebacks: `r1chat ask … >&-` (no stdout), `2>&-` (no stderr: nothing was
printed and the exit status was 1), non-UTF-8 bytes in an argument."""

from __future__ import annotations

import errno
import io
import os
import sys

from r1chat.errors import R1ChatError


class ClosedStream(io.TextIOBase):
    """Stands for a standard stream that was closed when r1chat started: writing fails."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, s: str) -> int:
        raise OSError(errno.EBADF, f"standard {self.name} is closed")

    def isatty(self) -> bool:
        return False


def plug_standard_streams() -> None:
    """Give closed descriptors 0-2 /dev/null, so that no file r1chat opens (the history
    database) can become fd 1 and receive what is printed. Closed stdout then refuses writes;
    closed stderr swallows them, so a command still works (and `ask` still answers)."""
    for fd, name in ((0, "input"), (1, "output"), (2, "error")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        devnull = os.open(os.devnull, os.O_RDWR)
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)
        if fd == 1:
            sys.stdout = ClosedStream(name)
        elif fd == 2:
            sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for good
        elif sys.stdin is None:
            sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - for good


def stdout_closed() -> bool:
    return isinstance(sys.stdout, ClosedStream) or sys.stdout is None


def check_arguments(argv: list[str]) -> None:
    """Every argument must be text: Python keeps undecodable bytes as lone surrogates, which
    fail later (in SQLite, on the terminal) far from where they came in."""
    for n, arg in enumerate(argv[1:], 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "replace")
            raise R1ChatError(f"argument {n} is not valid UTF-8: {shown}", 2) from None
