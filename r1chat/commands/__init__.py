"""The commands, one module each; r1chat.cli wires them into one Typer app."""

from __future__ import annotations

import typer


def sub_app(help: str) -> typer.Typer:
    """A command group styled like the main app: plain help text, no tracebacks."""
    return typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        no_args_is_help=True,
        help=help,
    )
