"""The command line's wiring: which command runs what. Nothing else lives here.

Each command is in r1chat.commands; heavy imports (llama.cpp, Textual, Rich) happen inside the
commands, so `r1chat --help` stays fast. No module but `__main__` (the entry point, which also
makes the process sane first) imports this one.
"""

from __future__ import annotations

import typer

from r1chat.commands.ask import ask
from r1chat.commands.bench import bench
from r1chat.commands.chat import chat
from r1chat.commands.config_cmd import config_app
from r1chat.commands.doctor import doctor
from r1chat.commands.eval_cmd import eval_cmd
from r1chat.commands.history import history_app
from r1chat.commands.models import models_app

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Chat with DeepSeek-R1 reasoning models on llama.cpp, in the terminal.",
)
app.callback(invoke_without_command=True)(chat)
app.command()(ask)
app.command()(doctor)
app.command()(bench)
app.command(name="eval")(eval_cmd)
app.add_typer(history_app, name="history")
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
