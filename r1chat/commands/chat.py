"""`r1chat` with no command: the chat app (the TUI). Its options are the root command's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from r1chat.commands.errors import user_errors
from r1chat.commands.options import (
    ID_RANGE,
    ApiBaseOpt,
    CtxOpt,
    GpuOpt,
    MaxTokOpt,
    ModelOpt,
    SeedOpt,
    TempOpt,
    ThinkBudgetOpt,
    ThinkMinOpt,
    TopPOpt,
)
from r1chat.errors import R1ChatError

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.engines.base import Engine
    from r1chat.history import HistoryStore
    from r1chat.tui.app import EngineFactory, R1ChatApp


def _version(value: bool) -> None:
    if value:
        from r1chat import __version__

        print(f"r1chat {__version__}")
        raise typer.Exit()


def chat(
    ctx: typer.Context,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    resume: Annotated[
        int | None,
        typer.Option(
            "--resume", help="Open conversation ID (see `r1chat history list`)", **ID_RANGE
        ),
    ] = None,
    continue_: Annotated[
        bool, typer.Option("--continue", "-c", help="Open the latest conversation")
    ] = False,
    temperature: TempOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokOpt = None,
    ctx_size: CtxOpt = None,
    gpu_layers: GpuOpt = None,
    seed: SeedOpt = None,
    think_budget: ThinkBudgetOpt = None,
    think_min: ThinkMinOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit"
        ),
    ] = False,
) -> None:
    """Start the chat (the TUI) when no command is given."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from r1chat.config import load_settings

        if resume is not None and continue_:
            raise R1ChatError("use either --resume or --continue, not both", 2)
        settings = load_settings().with_flags(
            model=model,
            api_base=api_base,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            ctx=ctx_size,
            gpu_layers=gpu_layers,
            seed=seed,
            think_budget=think_budget,
            think_min=think_min,
        )
        settings.check_reasoning()
        run_app(settings, resume=resume, continue_latest=continue_)


def run_app(settings: Settings, resume: int | None = None, continue_latest: bool = False) -> None:
    """Show the app at once; the model loads in a worker thread meanwhile."""
    from r1chat.loading import load_engine
    from r1chat.tui import input_filter
    from r1chat.tui.terminal_guard import guard_terminal
    from r1chat.tui.typeahead import stop_cooking

    app, store = build_app(
        settings,
        resume=resume,
        continue_latest=continue_latest,
        engine_factory=lambda report: load_engine(
            settings, on_download=report.download, on_note=report.note, cancel=report.cancel
        ),
    )
    release_terminal = guard_terminal()
    typed_ahead, cook_again = stop_cooking()  # after the guard, which keeps cooked mode
    input_filter.install(typed_ahead)
    try:
        asyncio.run(_run(app, store))
        release_terminal()
    finally:
        cook_again()
        app.chat.abandon()
        if app.engine is not None:
            app.engine.close()
        if store is not None:
            store.close()


def build_app(
    settings: Settings,
    *,
    resume: int | None = None,
    continue_latest: bool = False,
    engine: Engine | None = None,
    engine_factory: EngineFactory | None = None,
) -> tuple[R1ChatApp, HistoryStore | None]:
    """The app and the history file it saves to, which the caller closes after the app.

    This command owns what outlives the app: the history file and the signals. Resuming needs
    the history: a store that cannot be opened, or an unknown id, raises R1ChatError before the
    app starts. Otherwise a store error is shown in the app and the chat goes on unsaved; the
    file is never replaced.
    """
    from r1chat.conversation import Chats
    from r1chat.history import HistoryStore
    from r1chat.tui.app import R1ChatApp

    store: HistoryStore | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
    try:
        store = HistoryStore.open()
    except R1ChatError as e:
        if resume is not None or continue_latest:
            raise
        error = str(e)
    try:
        if store is not None and resume is not None:
            store.get_conversation(resume)
        if store is not None and continue_latest:
            resume = store.latest_conversation_id()
            if resume is None:
                notes = ("No conversation to continue yet: this is a new one.",)
    except R1ChatError:
        if store is not None:
            store.close()
        raise
    app = R1ChatApp(
        settings,
        engine=engine,
        engine_factory=engine_factory,
        chats=Chats(store),
        history_error=error,
        resume=resume,
        notes=notes,
    )
    return app, store


async def _run(app: R1ChatApp, store: HistoryStore | None) -> None:
    """The app, with SIGTERM closing it as Ctrl+Q does (the reply so far saved, the terminal
    restored) and SIGHUP (the terminal is gone) saving and leaving without drawing: Textual,
    writing its goodbye to a hung-up terminal, never finished. By default both killed the
    process, losing the reply."""

    def hang_up() -> None:
        app.loader.report.cancel.set()
        app.chat.abandon()
        if store is not None:
            store.close()
        os._exit(128 + signal.SIGHUP)

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, app.exit)
        loop.add_signal_handler(signal.SIGHUP, hang_up)
    await app.run_async()
