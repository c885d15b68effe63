"""How commands report a user's mistake: one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

import typer

from r1chat.errors import R1ChatError
from r1chat.sanitize import sanitize


def say_error(message: str) -> None:
    """The error on stderr, on one line whatever the message holds (SQLite's and llama.cpp's
    can span several)."""
    # What an error quotes may come from outside (a server's words, a model id, a file name):
    # no escape sequence reaches the terminal through it.
    line = " ".join(part.strip() for part in sanitize(message).splitlines() if part.strip())
    sys.stderr.write(f"r1chat: error: {line}\n")
    sys.stderr.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    say_error(message)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """R1ChatError becomes one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except R1ChatError as e:
        fail(str(e), e.exit_code)
