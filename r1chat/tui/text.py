"""Pure text helpers for the TUI: counts, durations, pane titles, code blocks. No Textual here."""

from __future__ import annotations

import re

from r1chat.endings import thinking_note

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})[^\n]*\n", re.MULTILINE)


def count(n: int) -> str:
    return f"{n:,}"


def seconds(s: float) -> str:
    """Whole seconds below a minute, then minutes and seconds (`1m 05s`)."""
    s = max(0, int(s))
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m {s % 60:02d}s"


def tokens(n: int) -> str:
    return f"{count(n)} token" + ("" if n == 1 else "s")


def thinking_title(elapsed_s: float, n_tokens: int, *, budget: int | None = None) -> str:
    """The thinking pane's title while it streams: "Thinking… 12s · 1,234 / 4,096 tokens" with
    a budget (the model's own tokens against it)."""
    done = f"{count(n_tokens)} / {tokens(budget)}" if budget else tokens(n_tokens)
    return f"Thinking… {seconds(elapsed_s)} · {done}"


def ended_title(
    elapsed_s: float | None,
    n_tokens: int,
    *,
    finish: str | None = "stop",
    ended: str | None = None,
    forced: int = 0,
) -> str:
    """The thinking pane's title once the reply is over, saying what ended the thinking: the
    model, or r1chat (budget, loop, answer now), or the token limit or a stop before it could
    end. `n_tokens` are the model's own; what r1chat wrote to close it is counted apart."""
    if ended is not None:
        verb = "Thought"
    elif finish == "length":
        verb = "Cut at the token limit"
    elif finish == "cancelled":
        verb = "Stopped"
    elif finish == "stopped early":  # a sample the others' vote made needless
        verb = "Stopped early"
    else:
        verb = "Thought"
    if elapsed_s is not None:
        verb += " for " if verb == "Thought" else " after "
        verb += seconds(elapsed_s)
    title = f"{verb} · {tokens(n_tokens)}" if n_tokens or elapsed_s is not None else verb
    how = thinking_note(ended)
    if how:
        title += f" · {how}"
    if forced:
        title += f" (+{count(forced)} to close it)"
    return title


def last_code_block(markdown: str) -> str | None:
    """The body of the last fenced code block in `markdown` (an unclosed one runs to the end)."""
    blocks: list[str] = []
    pos = 0
    while (m := _FENCE.search(markdown, pos)) is not None:
        fence = m.group("fence")
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = close.search(markdown, m.end())
        if end is None:
            blocks.append(markdown[m.end() :])
            break
        blocks.append(markdown[m.end() : end.start()])
        pos = end.end()
    if not blocks:
        return None
    return blocks[-1].removesuffix("\n")


def model_label(model: str | None, api_base: str | None) -> str:
    """The model as named before it loads; on a server, the server too (never its
    credentials)."""
    from r1chat.sanitize import sanitize

    if api_base:
        from r1chat.engines.remote import host_of

        where = host_of(api_base)
        return sanitize(f"{model} @ {where}" if model else f"server @ {where}")
    return sanitize(model or "r1-7b")


def retriable(error: BaseException) -> bool:
    """Whether loading again may work without the user changing anything: a server that is
    down, slow or failing (r1chat's errors of exit status 1), not a wrong key or model (2)."""
    from r1chat.errors import R1ChatError

    return isinstance(error, R1ChatError) and error.exit_code == 1


def load_failure(error: BaseException, *, retry_in: float | None = None) -> tuple[str, str]:
    """(what failed, the note to show) for a model that could not be loaded; `retry_in`: the
    seconds before the next try at a server."""
    from r1chat.errors import R1ChatError
    from r1chat.sanitize import sanitize

    if isinstance(error, R1ChatError):
        what = sanitize(str(error))
        if retry_in is not None:
            return what, (
                f"Could not load the model: {what}\nTrying again in {retry_in:g} s (Ctrl+L:"
                " now); a question you send goes once it is up. Ctrl+Q quits."
            )
        todo = (
            "Fix the model setting (r1chat --model PATH_OR_ALIAS, --api-base URL, or `model`"
            " in the config file) and start r1chat again. Ctrl+Q quits."
        )
    else:
        what = sanitize(f"{type(error).__name__}: {error}")
        todo = (
            "This looks like a bug. Run `R1CHAT_LOG=1 r1chat` to see llama.cpp's log, "
            "or try `r1chat ask` with the same model. Ctrl+Q quits."
        )
    return what, f"Could not load the model: {what}\n{todo}"
