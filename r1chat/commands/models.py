"""`r1chat models ...`: the catalogue, downloads, the cache."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from r1chat.commands import sub_app

models_app = sub_app("List, download and remove models (GGUF files from Hugging Face).")

RefArg = Annotated[
    str, typer.Argument(help="A catalogue alias (r1-7b, …) or REPO:FILE.gguf", metavar="MODEL")
]


def human_size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


@models_app.command("list")
def list_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The catalogue and every GGUF in the model cache: downloaded or not, size, where."""
    from r1chat.commands.errors import user_errors
    from r1chat.config import load_settings
    from r1chat.models import model_cache_dir, model_rows

    with user_errors():
        settings = load_settings()
        rows = model_rows(settings.model)
    if json_out:
        out = {"cache_dir": str(model_cache_dir()), "models": [r.to_dict() for r in rows]}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    from r1chat.commands.table import table

    sys.stdout.write(
        table(
            ("", "MODEL", "SIZE", "STATE", "WHERE"),
            [
                (
                    "*" if r.default else " ",
                    r.name,
                    human_size(r.size) if r.downloaded else f"~{human_size(r.size)}",
                    "downloaded" if r.downloaded else "-",
                    str(r.path if r.downloaded else r.ref),
                )
                for r in rows
            ],
            right=(2,),
        )
    )
    sys.stdout.write(f"\ncache: {model_cache_dir()}   (* the default model)\n")


@models_app.command("pull")
def pull_cmd(ref: RefArg) -> None:
    """Download a model (resumable) and check it is a usable GGUF before accepting it."""
    from r1chat.commands.errors import user_errors
    from r1chat.models import pull

    with user_errors():
        m, path, fetched = pull(ref)
    verb = "downloaded" if fetched else "already here"
    sys.stderr.write(f"r1chat: {m.name}: {verb}, checked\n")
    sys.stdout.write(f"{path}\n")


@models_app.command("rm")
def rm_cmd(ref: RefArg) -> None:
    """Delete a downloaded model from the cache."""
    from r1chat.commands.errors import user_errors
    from r1chat.models import remove

    with user_errors():
        removed = remove(ref)
    for p in removed:
        sys.stderr.write(f"r1chat: removed {p}\n")


@models_app.command("path")
def path_cmd(
    ref: Annotated[
        str | None,
        typer.Argument(
            help="Alias, REPO:FILE.gguf or a path; default: the configured model", metavar="[MODEL]"
        ),
    ] = None,
) -> None:
    """Print the local file of a model (it must be downloaded already)."""
    from r1chat.commands.errors import user_errors
    from r1chat.config import load_settings
    from r1chat.models import resolve

    with user_errors():
        _m, path = resolve(ref or load_settings().model, download=False)
    sys.stdout.write(f"{path}\n")
