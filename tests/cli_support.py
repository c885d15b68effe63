"""Running r1chat as a user would, for the tests: piped stdio, an isolated home, hub offline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import typer
from typer.testing import CliRunner, Result


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose r1chat files live under `home`, hub offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1CHAT_")}
    env.update({"R1CHAT_HOME": str(home), "HF_HUB_OFFLINE": "1"}, **extra)
    return env


def run_cli(
    *args: str,
    home: Path,
    stdin: bytes | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m r1chat ARGS` as a user would, with piped stdio."""
    full_env = user_env(home, NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "r1chat", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


class Cli(Protocol):
    """The `cli` fixture: `r1chat ARGS` run as a user would, in the test's own home."""

    def __call__(
        self,
        *args: str,
        stdin: bytes | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]: ...


def invoke(command: Callable[..., Any], name: str, *args: str) -> Result:
    """Run one command in this process, registered as r1chat.cli registers it."""
    app = typer.Typer()
    app.command(name)(command)

    @app.callback()
    def main() -> None:
        pass

    return CliRunner().invoke(app, [name, *args])
