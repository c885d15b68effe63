"""Loading the engine for a one-shot command (`ask`, `eval`): a spinner and notes on a
terminal, one-line notes otherwise; a signal stops the load midway."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from r1chat.errors import R1ChatError
from r1chat.interrupts import Interrupted, Interrupts
from r1chat.sanitize import sanitize

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.engines.base import Engine


def load_with_spinner(settings: Settings, *, quiet: bool, stop: Interrupts) -> Engine:
    """Load the engine; on a terminal with a spinner and notes on stderr, silent when `quiet`.

    A signal stops the load midway (llama.cpp is asked to, through its progress callback).
    """
    from r1chat.loading import load_engine

    def load(note: Callable[[str], None]) -> Engine:
        try:
            with stop.deferred() as cancel:
                return load_engine(settings, on_note=note, cancel=cancel)
        except R1ChatError:
            if stop.signum is not None:
                raise Interrupted(stop.signum) from None
            raise

    if quiet or not sys.stderr.isatty():

        def note(line: str) -> None:
            if not quiet:
                sys.stderr.write(f"r1chat: {sanitize(line)}\n")

        return load(note)
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True)
    name = settings.model or "r1-7b"
    with console.status(Text(f"Loading {name}…")):
        return load(lambda line: console.print(Text(f"r1chat: {sanitize(line)}")))
