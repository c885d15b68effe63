"""`r1chat config ...`: where the config file is and what the settings come to."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from r1chat.commands import sub_app

config_app = sub_app("Show the config file's path and the settings in effect.")


@config_app.command("path")
def path_cmd() -> None:
    """Print the config file's path (it need not exist)."""
    from r1chat.config import paths

    sys.stdout.write(f"{paths().config_file}\n")


@config_app.command("show")
def show_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every setting, its value and where it came from (default, file or env)."""
    from r1chat.commands.errors import user_errors
    from r1chat.config import load_settings, paths

    with user_errors():
        settings = load_settings()
    from r1chat.engines.remote import redacted
    from r1chat.sanitize import safe_json

    path = paths().config_file
    values = settings.values()
    if values.get("api_base"):
        values["api_base"] = redacted(str(values["api_base"]))  # never a password in a URL
    if json_out:
        out = {
            "config_file": str(path),
            "exists": path.exists(),
            "settings": values,
            "sources": {k: settings.source(k) for k in values},
        }
        sys.stdout.write(safe_json(out) + "\n")
        return
    state = "" if path.exists() else "  (not created)"
    sys.stdout.write(f"# {path}{state}\n")
    for key, value in values.items():
        shown = "(auto)" if value is None else safe_json(value, indent=None)
        sys.stdout.write(f"{key} = {shown}  # {settings.source(key)}\n")
