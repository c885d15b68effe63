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
from collections.abc import Iterator
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
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit")] = False,
) -> None:
    """Start the chat (the TUI) when no command is given."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from r1chat.config import load_settings

        settings = load_settings().with_flags(model=model)
        from r1chat.tui.app import run_app

        run_app(settings)


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


def load_engine(settings: Any, *, quiet: bool) -> Any:
    """Resolve, validate and load the model, with a spinner on a terminal."""
    from r1chat.engine import LlamaEngine, LoadOptions
    from r1chat.gguf_header import read_header
    from r1chat.models import resolve

    ref, path = resolve(settings.model)
    header = read_header(path)
    opts = LoadOptions(n_ctx=settings.ctx, n_gpu_layers=settings.gpu_layers,
                       flash_attn=settings.flash_attn, n_threads=settings.threads,
                       kv_type=settings.kv_type)
    name = ref.name if ref.path is None else None
    if quiet or not sys.stderr.isatty():
        return LlamaEngine(path, opts, name=name, header=header)
    from rich.console import Console

    with Console(stderr=True).status(f"Loading {ref.name}…"):
        return LlamaEngine(path, opts, name=name, header=header)


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
) -> None:
    """Ask one question and print the answer (`git diff | r1chat ask "review this"`)."""
    with user_errors():
        from r1chat.config import load_settings

        settings = load_settings().with_flags(
            model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens, ctx=ctx,
            gpu_layers=gpu_layers, seed=seed)
        text = build_question(question, read_stdin(), preset)
        engine = load_engine(settings, quiet=json_out)
        code = run_ask(engine, settings, text, json_out=json_out, show_think=not no_think,
                       print_stats=stats)
    raise typer.Exit(code)


def run_ask(engine: Any, settings: Any, question: str, *, json_out: bool, show_think: bool,
            print_stats: bool) -> int:
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

    previous = signal.signal(signal.SIGINT, on_sigint)
    renderer = make_renderer(json_out=json_out, show_think=show_think)
    result = None
    try:
        for ev in run_turn(engine, [], question, params, cancel):
            if isinstance(ev, Delta):
                (renderer.think if ev.kind == "think" else renderer.answer)(ev.text)
            elif isinstance(ev, TurnDone):
                result = ev.result
        assert result is not None
        renderer.finish(result)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly, without Python's complaint at exit.
        cancel.set()
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        signal.signal(signal.SIGINT, previous)
    if print_stats:
        sys.stderr.write(stats_line(result) + "\n")
    return 130 if interrupted else 0


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
