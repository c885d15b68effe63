"""`r1chat ask`: one question, answered on the terminal, in a pipe, or as JSON."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from r1chat.attachments import Attachment, read_attachment, with_attachments
from r1chat.commands.ask_many import (
    KeepOpt,
    StopEarly,
    StopEarlyOpt,
    VoteOpt,
    VoteWith,
    early_rule,
    vote_rule,
)
from r1chat.commands.errors import user_errors
from r1chat.commands.options import (
    ID_RANGE,
    ApiBaseOpt,
    CtxOpt,
    GpuOpt,
    MaxTokOpt,
    ModelOpt,
    SamplesOpt,
    SeedOpt,
    TempOpt,
    ThinkBudgetOpt,
    ThinkMinOpt,
    TopPOpt,
)
from r1chat.commands.spinner import load_with_spinner
from r1chat.confidence import KEEP
from r1chat.errors import R1ChatError
from r1chat.interrupts import Interrupts, handled

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.conversation import Conversation
    from r1chat.engines.base import Engine


def ask(
    question: Annotated[
        list[str] | None,
        typer.Argument(
            help="The question; piped stdin is "
            "attached as context (or is the question when none is given)"
        ),
    ] = None,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            "-p",
            help="Wrap the question in the model card's template: math, code or logic",
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: thinking, answer, boxed, finish_reason, model, stats",
        ),
    ] = False,
    no_think: Annotated[bool, typer.Option("--no-think", help="Hide the thinking")] = False,
    stats: Annotated[
        bool, typer.Option("--stats", help="Print token counts and speed to stderr")
    ] = False,
    temperature: TempOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokOpt = None,
    ctx: CtxOpt = None,
    gpu_layers: GpuOpt = None,
    seed: SeedOpt = None,
    think_budget: ThinkBudgetOpt = None,
    think_min: ThinkMinOpt = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "--file",
            "-f",
            help="Attach a text file to the question (repeatable; - is stdin)",
        ),
    ] = None,
    samples: SamplesOpt = None,
    stop_early: StopEarlyOpt = StopEarly.overtaken,
    vote: VoteOpt = VoteWith.majority,
    keep: KeepOpt = KEEP,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry",
            help="Sample the last reply of the conversation (-c or --conversation) again;"
            " the earlier replies stay as alternatives",
        ),
    ] = False,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="Do not save this exchange in the history")
    ] = False,
    continue_: Annotated[
        bool, typer.Option("--continue", "-c", help="Continue the latest conversation")
    ] = False,
    conversation: Annotated[
        int | None,
        typer.Option(
            "--conversation",
            help="Continue conversation ID (see `r1chat history list`)",
            **ID_RANGE,
        ),
    ] = None,
) -> None:
    """Ask one question and print the answer (`git diff | r1chat ask "review this"`)."""
    with user_errors():
        from r1chat.config import load_settings

        settings = load_settings().with_flags(
            model=model,
            api_base=api_base,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            ctx=ctx,
            gpu_layers=gpu_layers,
            seed=seed,
            think_budget=think_budget,
            think_min=think_min,
            samples=samples,
        )
        settings.check_reasoning()
        from r1chat.commands.process import stdout_closed

        if stdout_closed():
            raise R1ChatError("standard output is closed: there is nowhere to write the answer")
        piped = read_stdin()
        attached = attach(files or [], piped)
        if "-" in (files or []):
            piped = None  # stdin is an attachment, not the question's context
        if retry:
            if question or piped or attached or preset:
                raise R1ChatError("--retry asks the last question again: give no new one", 2)
            if (samples or 1) > 1:
                raise R1ChatError("--samples and --retry do not go together", 2)
            chat, text = open_retry(latest=continue_, conv_id=conversation, save=not no_save)
        else:
            text = with_attachments(build_question(question, piped, preset), attached)
            # The history is opened before the model loads, so a bad database fails fast.
            chat = open_conversation(save=not no_save, latest=continue_, conv_id=conversation)
        with handled() as stop:
            engine = load_with_spinner(settings, quiet=json_out, stop=stop)
            records = note_attachments(engine, attached, quiet=json_out)
            if settings.samples > 1 and not retry:
                from r1chat.commands.ask_many import run_samples

                code = run_samples(
                    engine,
                    settings,
                    text,
                    settings.samples,
                    json_out=json_out,
                    print_stats=stats,
                    chat=chat,
                    stop=stop,
                    attachments=records,
                    stop_early=early_rule(stop_early),
                    vote_by=vote_rule(vote),
                    keep=keep,
                )
            else:
                code = run_ask(
                    engine,
                    settings,
                    text,
                    attachments=records,
                    json_out=json_out,
                    show_think=not no_think,
                    print_stats=stats,
                    chat=chat,
                    stop=stop,
                )
    raise typer.Exit(code)


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


def attach(paths: list[str], piped: str | None) -> list[Attachment]:
    """Each file read and checked before anything loads or is sent."""
    stdin = piped.encode("utf-8") if piped is not None else None
    return [read_attachment(p, stdin) for p in paths]


def note_attachments(
    engine: Engine, attached: list[Attachment], *, quiet: bool
) -> list[dict[str, Any]]:
    """The files' records for the history, with what each costs in tokens; said before it is
    sent on a terminal (stderr, so pipes get the answer only)."""
    from r1chat.attachments import tokens_of
    from r1chat.sanitize import sanitize

    records = []
    for a in attached:
        tokens = tokens_of(engine.count_tokens, a.text)
        records.append(a.record(tokens))
        if not quiet and sys.stderr.isatty():
            sys.stderr.write(
                f"r1chat: attached {sanitize(a.name)}: {a.size:,} bytes, about {tokens:,} tokens\n"
            )
    return records


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


def open_retry(*, latest: bool, conv_id: int | None, save: bool) -> tuple[Conversation, str]:
    """The conversation whose last reply is sampled again, and its last question."""
    from r1chat.conversation import Conversation
    from r1chat.history import HistoryStore

    if latest == (conv_id is not None):
        raise R1ChatError("--retry needs the conversation: -c (the latest) or --conversation ID", 2)
    store = HistoryStore.open()
    if conv_id is None:
        conv_id = store.latest_conversation_id()
        if conv_id is None:
            raise R1ChatError("no conversation to retry: the history is empty", 2)
    chat, question = Conversation.retry(store, conv_id)
    if not save:
        chat.store = None
    return chat, question


def open_conversation(*, save: bool, latest: bool, conv_id: int | None) -> Conversation:
    """The conversation this `ask` continues and saves to (unsaved when neither is asked for)."""
    from r1chat.conversation import Conversation

    if latest and conv_id is not None:
        raise R1ChatError("use either --continue or --conversation, not both", 2)
    if not save and not latest and conv_id is None:
        return Conversation()
    from r1chat.history import HistoryStore

    store = HistoryStore.open()
    if latest:
        conv_id = store.latest_conversation_id()
        if conv_id is None:
            raise R1ChatError("no conversation to continue: the history is empty", 2)
    chat = Conversation.resume(store, conv_id) if conv_id is not None else Conversation(store)
    if not save:
        chat.store = None  # continue it, but keep this exchange out of the history
    return chat


def run_ask(
    engine: Engine,
    settings: Settings,
    question: str,
    *,
    json_out: bool,
    show_think: bool,
    print_stats: bool,
    chat: Conversation | None = None,
    stop: Interrupts | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> int:
    """Stream the answer; 0, or 128 + the signal that stopped it (what came is kept)."""
    from r1chat.conversation import Conversation
    from r1chat.endings import NO_ANSWER
    from r1chat.reasoning import ThinkingControl
    from r1chat.render import JsonRenderer, make_renderer, stats_line
    from r1chat.turn import (
        ContextTrimmed,
        Delta,
        Held,
        HeldDecided,
        LoopNoticed,
        ThinkingEnded,
        TurnDone,
    )

    chat = chat or Conversation()
    stop = stop or Interrupts()
    renderer = make_renderer(
        json_out=json_out, show_think=show_think, math=settings.math == "unicode"
    )
    if attachments and isinstance(renderer, JsonRenderer):
        renderer.extra["attachments"] = attachments
    result = None
    steered = [k for k in ("think_budget", "think_min") if settings.source(k) != "default"]
    if steered and not engine.info.thinks:
        names = " and ".join("--" + k.replace("_", "-") for k in steered)
        verb = "do" if len(steered) > 1 else "does"
        sys.stderr.write(
            f"r1chat: note: {engine.info.name} is not known to think: {names} {verb} nothing\n"
        )
    control = ThinkingControl(settings.reasoning_params())
    with stop.deferred() as cancel:
        events = chat.ask(
            engine, question, settings.sampling_params(), cancel, control, attachments
        )
        try:
            for ev in events:
                if isinstance(ev, Delta):
                    (renderer.think if ev.kind == "think" else renderer.answer)(ev.text)
                elif isinstance(ev, Held):
                    renderer.held(ev.chars)
                elif isinstance(ev, HeldDecided):
                    renderer.decided()
                elif isinstance(ev, TurnDone):
                    result = ev.result
                elif isinstance(ev, ThinkingEnded):
                    renderer.thinking_ended(ev)
                elif isinstance(ev, LoopNoticed):
                    sys.stderr.write("r1chat: note: the thinking repeats itself\n")
                elif isinstance(ev, ContextTrimmed):
                    sys.stderr.write(f"r1chat: {ev.note}\n")
            assert result is not None
            renderer.finish(result)
            sys.stdout.flush()
        except OSError as e:
            # The reader went away (`| head -1`) or the disk is full: stop, keep what came
            # (closing the stream saves it, as stopped), and keep Python from complaining
            # again when it flushes stdout at exit.
            cancel.set()
            events.close()
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            if isinstance(e, BrokenPipeError):
                return 0
            raise R1ChatError(f"cannot write the answer: {e.strerror or e}") from None
    if print_stats:
        sys.stderr.write(stats_line(result) + "\n")
    if result.stats.undecided:
        from r1chat.endings import UNDECIDED_NOTE

        sys.stderr.write(f"r1chat: note: {UNDECIDED_NOTE}\n")
    why = result.no_answer(settings.max_tokens)
    if why is not None:
        sys.stderr.write(f"r1chat: {why}\n")
        return stop.exit_code or NO_ANSWER
    return stop.exit_code
