"""How commands report a user's mistake: one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

import typer

from r1chat.errors import R1ChatError


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"r1chat: error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """R1ChatError becomes one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except R1ChatError as e:
        fail(str(e), e.exit_code)
