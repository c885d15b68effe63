"""`r1chat history ...`: list, show, search, export, rename, delete (to the trash), restore and
purge saved conversations.

Human-readable output is plain text run through `sanitize` (stored model text is untrusted);
`--json` output is exact, with every control character escaped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from r1chat.commands import sub_app
from r1chat.commands.options import ID_RANGE
from r1chat.endings import finish_note, thinking_note
from r1chat.sanitize import safe_json

if TYPE_CHECKING:
    from r1chat.history import ConversationSummary, HistoryStore, Message

history_app = sub_app(
    "List, show, search, export, rename and delete saved conversations (deleted ones go to the"
    " trash for 30 days: `restore` brings them back)."
)

IdArg = Annotated[
    int,
    typer.Argument(help="Conversation id (see `r1chat history list`)", metavar="ID", **ID_RANGE),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
ModelFilterOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Only conversations whose model's name holds this"),
]


class Format(StrEnum):
    md = "md"
    json = "json"


def _say(text: str) -> None:
    from r1chat.sanitize import sanitize

    sys.stdout.write(sanitize(text))
    sys.stdout.flush()


def _local(ts: str) -> str:
    """A stored UTC timestamp in local time, to the minute."""
    try:
        return datetime.fromisoformat(ts).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ts


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


@contextmanager
def _store() -> Iterator[HistoryStore]:
    """The history store, with R1ChatError turned into one line on stderr and an exit status."""
    from r1chat.commands.errors import user_errors
    from r1chat.history import HistoryStore

    with user_errors(), HistoryStore.open() as store:
        yield store


def conversation_rows(convs: list[ConversationSummary]) -> str:
    from r1chat.commands.table import table

    return table(
        ("ID", "UPDATED", "MODEL", "MSGS", "TOKENS", "TITLE"),
        [
            (
                str(c.id),
                _local(c.updated),
                c.model or "?",
                str(c.messages),
                f"{c.tokens:,}",
                c.title,
            )
            for c in convs
        ],
        right=(0, 3, 4),
    )


@history_app.command("list")
def list_cmd(
    json_out: JsonOpt = False,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Show at most this many")
    ] = None,
    model: ModelFilterOpt = None,
) -> None:
    """Saved conversations, most recently active first: when, which model, how big."""
    with _store() as store:
        convs = store.list_conversations(limit, model=model)
    if json_out:
        sys.stdout.write(safe_json([c.to_dict() for c in convs]) + "\n")
        return
    if not convs:
        sys.stderr.write("r1chat: no saved conversations\n")
        return
    sys.stdout.write(conversation_rows(convs))


def render_text(
    conv: ConversationSummary,
    messages: list[Message],
    *,
    think: bool,
    on_branch: set[int] | None = None,
) -> str:
    """A conversation for reading in a terminal: thinking indented under a bar; messages off
    the branch shown (when `on_branch` is given) are marked as such."""
    out = [
        f"{conv.title}",
        f"conversation {conv.id} · {conv.model or 'unknown model'} · "
        f"{_local(conv.created)} · {conv.messages} messages",
        "",
    ]
    for m in messages:
        aside = on_branch is not None and m.id not in on_branch
        tag = f" (message {m.id}, another branch) " if aside else " "
        if m.role == "user":
            out += ["── You" + tag + "─" * 40, m.content.rstrip()]
            files = [f for f in m.attachments or [] if isinstance(f, dict)]
            if files:
                out.append(
                    "(attached: "
                    + ", ".join(
                        f"{f.get('name')} ({int(f.get('size') or 0):,} bytes)" for f in files
                    )
                    + ")"
                )
            out.append("")
            continue
        out.append("── r1" + tag + "─" * 41)
        if think and m.thinking.strip():
            out += ["│ " + line for line in m.thinking.strip().splitlines()]
            how = thinking_note(m.thinking_ended)
            if how:
                out.append(f"│ [thinking ended: {how}]")
            out.append("")
        if m.content.strip():
            out.append(m.content.rstrip())
        note = finish_note(
            m.finish_reason, (m.stats or {}).get("completion_tokens"), m.thinking_ended
        )
        if note is not None:
            out.append(f"({note})")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


@history_app.command("show")
def show_cmd(
    conv_id: IdArg,
    json_out: JsonOpt = False,
    no_think: Annotated[bool, typer.Option("--no-think", help="Leave out the thinking")] = False,
    all_branches: Annotated[
        bool,
        typer.Option("--all", help="Every branch: replies sampled again, questions edited"),
    ] = False,
) -> None:
    """One conversation: the branch it shows (the one it continues), or every branch."""
    from r1chat.history import export_dict

    with _store() as store:
        conv = store.get_conversation(conv_id)
        shown = store.shown(conv_id)
        messages = store.messages(conv_id, all_branches=True) if all_branches else shown
    if json_out:
        sys.stdout.write(safe_json(export_dict(conv, messages)) + "\n")
    else:
        on_branch = {m.id for m in shown} if all_branches else None
        _say(render_text(conv, messages, think=not no_think, on_branch=on_branch))


@history_app.command("search")
def search_cmd(
    query: Annotated[
        list[str],
        typer.Argument(help="Words to find (all of them; word* for a prefix)", metavar="QUERY..."),
    ],
    json_out: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most hits")] = 20,
    model: ModelFilterOpt = None,
) -> None:
    """Find messages whose question, answer or thinking contain the words, best match first."""
    text = " ".join(query)
    if not text.strip():
        from r1chat.commands.errors import fail

        fail("empty search query", 2)
    with _store() as store:
        hits = store.search(text, limit, model=model)
    if json_out:
        sys.stdout.write(safe_json([h.to_dict() for h in hits]) + "\n")
        return
    if not hits:
        sys.stderr.write("r1chat: no matches\n")
        raise typer.Exit(1)
    _say(
        "".join(
            f"{h.conversation_id:>5}  {h.title}  ({h.role}, message {h.message_id})\n"
            f"       {' '.join(h.snippet.split())}\n"
            for h in hits
        )
    )


@history_app.command("export")
def export_cmd(
    conv_id: IdArg,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="md or json")] = Format.md,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Write to this file (default: stdout)"),
    ] = None,
    no_think: Annotated[
        bool, typer.Option("--no-think", help="Leave out the thinking (answers only)")
    ] = False,
) -> None:
    """Export one conversation (the branch it shows) as Markdown or JSON."""
    from r1chat.commands.errors import fail
    from r1chat.history import export_dict, export_markdown
    from r1chat.sanitize import sanitize

    with _store() as store:
        conv = store.get_conversation(conv_id)
        messages = store.shown(conv_id)
    if no_think:
        messages = [replace(m, thinking="") for m in messages]
    if fmt is Format.json:
        text = safe_json(export_dict(conv, messages)) + "\n"
    else:
        # Escape sequences mean nothing in a Markdown file and would act when it is cat'ed.
        text = sanitize(export_markdown(conv, messages))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {output}: {e.strerror or e}")
    sys.stderr.write(f"r1chat: wrote conversation {conv_id} to {output}\n")


@history_app.command("rm")
def rm_cmd(
    conv_id: IdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Delete for good (from the trash too), not to the trash"),
    ] = False,
) -> None:
    """Move a conversation to the trash (asks first unless --yes); `restore` brings it back
    within 30 days. --purge deletes it for good."""
    from r1chat.commands.errors import fail
    from r1chat.history import TRASH_DAYS

    with _store() as store:
        conv = next((c for c in store.trash() if c.id == conv_id), None) if purge else None
        conv = conv or store.get_conversation(conv_id)
        if not yes:
            if not stdin_is_terminal():
                fail(f"not deleting conversation {conv_id} without confirmation: pass --yes", 2)
            from r1chat.sanitize import sanitize

            how = "for good" if purge else "to the trash"
            try:
                ok = typer.confirm(
                    f'Delete conversation {conv_id} "{sanitize(conv.title)}" '
                    f"({conv.messages} messages) {how}?",
                    default=False,
                )
            except typer.Abort:
                ok = False
            if not ok:
                sys.stderr.write(f"r1chat: kept conversation {conv_id}\n")
                raise typer.Exit(1)
        if purge:
            store.purge(conv_id)
        else:
            store.delete(conv_id)
    if purge:
        sys.stderr.write(f"r1chat: deleted conversation {conv_id} for good\n")
    else:
        sys.stderr.write(
            f"r1chat: moved conversation {conv_id} to the trash; `r1chat history restore"
            f" {conv_id}` brings it back (the trash is emptied after {TRASH_DAYS} days)\n"
        )


@history_app.command("restore")
def restore_cmd(conv_id: IdArg) -> None:
    """Bring a conversation back from the trash."""
    with _store() as store:
        store.restore(conv_id)
        conv = store.get_conversation(conv_id)
    sys.stderr.write(f"r1chat: restored conversation {conv_id}\n")
    _say(f"{conv.id}  {conv.title}\n")


@history_app.command("trash")
def trash_cmd(
    json_out: JsonOpt = False,
    empty: Annotated[
        bool, typer.Option("--empty", help="Delete everything in it for good")
    ] = False,
) -> None:
    """The conversations in the trash (emptied of what is older than 30 days on its own)."""
    with _store() as store:
        convs = store.trash()
        if empty:
            for c in convs:
                store.purge(c.id)
            sys.stderr.write(f"r1chat: deleted {len(convs)} conversations for good\n")
            return
    if json_out:
        sys.stdout.write(safe_json([c.to_dict() for c in convs]) + "\n")
    elif not convs:
        sys.stderr.write("r1chat: the trash is empty\n")
    else:
        sys.stdout.write(conversation_rows(convs))


@history_app.command("rename")
def rename_cmd(
    conv_id: IdArg,
    title: Annotated[list[str], typer.Argument(help="The new title", metavar="TITLE...")],
) -> None:
    """Give a conversation a new title."""
    with _store() as store:
        store.rename(conv_id, " ".join(title))
        conv = store.get_conversation(conv_id)
    _say(f"{conv.id}  {conv.title}\n")
