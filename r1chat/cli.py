"""The command line: `r1chat` (the TUI), `r1chat ask`, and friends.

Parses arguments and calls the domain modules; heavy imports (llama.cpp, Textual, Rich) happen
inside the commands so `r1chat --help` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from r1chat import __version__
from r1chat.errors import R1ChatError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Chat with DeepSeek-R1 reasoning models on llama.cpp, in the terminal.",
)

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="GGUF file path, alias "
                     "(r1-7b, r1-1.5b, …) or REPO:FILE.gguf; default r1-7b [env R1CHAT_MODEL]")]
TempOpt = Annotated[float | None, typer.Option("--temperature", "-t", help="Sampling temperature "
                    "(model card: 0.6)", min=0.0, max=5.0)]
TopPOpt = Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling (0.95)",
                    min=0.0, max=1.0)]
MaxTokOpt = Annotated[int | None, typer.Option("--max-tokens", help="Most new tokens (4096)",
                      min=1)]
CtxOpt = Annotated[int | None, typer.Option("--ctx", help="Context size in tokens "
                   "(32768 with a GPU, 8192 without)", min=64)]
GpuOpt = Annotated[int | None, typer.Option("--gpu-layers", help="Layers to offload "
                   "(default: all when the build supports a GPU)", min=0)]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Fixed seed (default: fresh per "
                    "request)", min=0)]


def fail(message: str, code: int = 1) -> None:
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


def _version(value: bool) -> None:
    if value:
        print(f"r1chat {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    model: ModelOpt = None,
    resume: Annotated[int | None, typer.Option("--resume", help="Open conversation ID "
                      "(see `r1chat history list`)")] = None,
    continue_: Annotated[bool, typer.Option("--continue", "-c", help="Open the latest "
                         "conversation")] = False,
    temperature: TempOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokOpt = None,
    ctx_size: CtxOpt = None,
    gpu_layers: GpuOpt = None,
    seed: SeedOpt = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit")] = False,
) -> None:
    """Start the chat (the TUI) when no command is given."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from r1chat.config import load_settings

        if resume is not None and continue_:
            raise R1ChatError("use either --resume or --continue, not both", 2)
        settings = load_settings().with_flags(
            model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
            ctx=ctx_size, gpu_layers=gpu_layers, seed=seed)
        from r1chat.tui.app import run_app

        run_app(settings, resume=resume, continue_latest=continue_)


def read_stdin() -> str | None:
    """Piped input, or None when stdin is a terminal or absent."""
    stream = sys.stdin
    if stream is None:
        return None
    try:
        if stream.isatty():
            return None
        data = stream.buffer.read()
    except (OSError, ValueError, AttributeError):
        return None
    return data.decode("utf-8", errors="replace")


def build_question(args: list[str] | None, piped: str | None, preset: str | None) -> str:
    from r1chat.prompts import apply_preset, with_context

    question = " ".join(args or []).strip()
    if question:
        question = with_context(question, piped)
    elif piped is not None and piped.strip():
        question = piped.strip()
    if not question:
        raise R1ChatError("empty question: pass it as an argument or on stdin", 2)
    return apply_preset(question, preset)


def load_engine(settings: Any, *, quiet: bool,
                on_download: Callable[[int, int | None], None] | None = None) -> Any:
    """Resolve, validate and load the model, fitted to the GPU, with a spinner on a terminal.

    `on_download(done, total)` reports a first-use download instead of the terminal's bar.
    """
    from r1chat.gguf_header import read_header
    from r1chat.hardware import load_fitted
    from r1chat.models import resolve

    ref, path = resolve(settings.model, progress=on_download)
    header = read_header(path)
    name = ref.name if ref.path is None else None
    if quiet or not sys.stderr.isatty():

        def note(line: str) -> None:
            if not quiet:
                sys.stderr.write(f"r1chat: {line}\n")

        return load_fitted(path, header, settings, name=name, on_note=note)
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True)
    with console.status(Text(f"Loading {ref.name}…")):
        return load_fitted(path, header, settings, name=name,
                           on_note=lambda line: console.print(Text(f"r1chat: {line}")))


@app.command()
def ask(
    question: Annotated[list[str] | None, typer.Argument(help="The question; piped stdin is "
                        "attached as context (or is the question when none is given)")] = None,
    model: ModelOpt = None,
    preset: Annotated[str | None, typer.Option("--preset", "-p", help="Wrap the question in "
                      "the model card's template: math, code or logic")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object: thinking, "
                        "answer, boxed, finish_reason, model, stats")] = False,
    no_think: Annotated[bool, typer.Option("--no-think", help="Hide the thinking")] = False,
    stats: Annotated[bool, typer.Option("--stats", help="Print token counts and speed to "
                     "stderr")] = False,
    temperature: TempOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokOpt = None,
    ctx: CtxOpt = None,
    gpu_layers: GpuOpt = None,
    seed: SeedOpt = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not save this exchange in the "
                       "history")] = False,
    continue_: Annotated[bool, typer.Option("--continue", "-c", help="Continue the latest "
                         "conversation")] = False,
    conversation: Annotated[int | None, typer.Option("--conversation", help="Continue "
                            "conversation ID (see `r1chat history list`)")] = None,
) -> None:
    """Ask one question and print the answer (`git diff | r1chat ask "review this"`)."""
    with user_errors():
        from r1chat.config import load_settings

        settings = load_settings().with_flags(
            model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens, ctx=ctx,
            gpu_layers=gpu_layers, seed=seed)
        text = build_question(question, read_stdin(), preset)
        # The history is opened before the model loads, so a bad database fails fast.
        chat = AskHistory.open(save=not no_save, latest=continue_, conv_id=conversation)
        engine = load_engine(settings, quiet=json_out)
        code = run_ask(engine, settings, text, json_out=json_out, show_think=not no_think,
                       print_stats=stats, chat=chat)
    raise typer.Exit(code)


class AskHistory:
    """The conversation an `ask` continues and saves to (nothing when neither is asked for)."""

    def __init__(self, store: Any, conv_id: int | None, save: bool) -> None:
        self.store = store
        self.conv_id = conv_id
        self.save = save

    @classmethod
    def open(cls, *, save: bool, latest: bool, conv_id: int | None) -> AskHistory:
        if latest and conv_id is not None:
            raise R1ChatError("use either --continue or --conversation, not both", 2)
        if not save and not latest and conv_id is None:
            return cls(None, None, False)
        from r1chat.history import HistoryStore

        store = HistoryStore.open()
        if latest:
            conv_id = store.latest_conversation_id()
            if conv_id is None:
                raise R1ChatError("no conversation to continue: the history is empty", 2)
        elif conv_id is not None:
            store.get_conversation(conv_id)
        return cls(store, conv_id, save)

    def earlier(self) -> list[Any]:
        from r1chat.prompts import history_messages

        if self.store is None or self.conv_id is None:
            return []
        return history_messages(self.store.turns(self.conv_id))

    def question_asked(self, question: str, model: str) -> None:
        """Saved before generation starts, so a crash loses at most the reply."""
        if not self.save:
            return
        from r1chat.history import title_from

        if self.conv_id is None:
            self.conv_id = self.store.new_conversation(title_from(question), model)
        self.store.add_user_message(self.conv_id, question)

    def reply(self, result: Any) -> None:
        if self.save and self.conv_id is not None and result is not None:
            self.store.add_assistant_message(self.conv_id, result.answer, result.thinking,
                                             result.stats.to_dict(), result.finish_reason)


def run_ask(engine: Any, settings: Any, question: str, *, json_out: bool, show_think: bool,
            print_stats: bool, chat: AskHistory | None = None) -> int:
    from r1chat.engine import SamplingParams
    from r1chat.render import make_renderer, stats_line
    from r1chat.session import Delta, TurnDone, run_turn

    params = SamplingParams(temperature=settings.temperature, top_p=settings.top_p,
                            top_k=settings.top_k, max_tokens=settings.max_tokens,
                            seed=settings.seed)
    cancel = threading.Event()
    interrupted = False

    def on_sigint(_sig: int, _frame: Any) -> None:
        nonlocal interrupted
        if interrupted:  # a second Ctrl+C: stop waiting
            raise KeyboardInterrupt
        interrupted = True
        cancel.set()

    chat = chat or AskHistory(None, None, False)
    earlier = chat.earlier()
    previous = signal.signal(signal.SIGINT, on_sigint)
    renderer = make_renderer(json_out=json_out, show_think=show_think)
    result = None
    chat.question_asked(question, engine.info.name)
    try:
        turn = run_turn(engine, earlier, question, params, cancel)
        for ev in turn:
            if isinstance(ev, Delta):
                (renderer.think if ev.kind == "think" else renderer.answer)(ev.text)
            elif isinstance(ev, TurnDone):
                result = ev.result
                chat.reply(result)
        assert result is not None
        renderer.finish(result)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly, without Python's complaint at exit,
        # and still save what came (the turn ends at the next token as cancelled).
        cancel.set()
        for ev in turn:
            if isinstance(ev, TurnDone):
                chat.reply(ev.result)
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        signal.signal(signal.SIGINT, previous)
    if print_stats:
        sys.stderr.write(stats_line(result) + "\n")
    return 130 if interrupted else 0


def _register_commands() -> None:
    # Each module imports only Typer at import time; the work is lazy inside the commands.
    from r1chat.commands.bench import bench
    from r1chat.commands.config_cmd import config_app
    from r1chat.commands.doctor import doctor
    from r1chat.commands.history import history_app
    from r1chat.commands.models import models_app

    app.add_typer(history_app, name="history")
    app.add_typer(models_app, name="models")
    app.add_typer(config_app, name="config")
    app.command("doctor")(doctor)
    app.command("bench")(bench)


_register_commands()


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
