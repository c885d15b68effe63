"""Terminal output for `r1chat ask`: live Rich rendering, plain text for pipes, and JSON.

Model text is untrusted: it is sanitised, and only ever reaches Rich as `Text`/`Markdown` objects
(never markup strings).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol

from r1chat.endings import finish_note, thinking_note
from r1chat.sanitize import StreamSanitizer, safe_json
from r1chat.turn import ThinkingEnded, TurnResult


class Renderer(Protocol):
    def think(self, text: str) -> None: ...
    def thinking_ended(self, ended: ThinkingEnded) -> None: ...
    def answer(self, text: str) -> None: ...
    def finish(self, result: TurnResult) -> None: ...


def stats_line(result: TurnResult) -> str:
    s = result.stats
    parts = [
        f"prompt {s.prompt_tokens} tok ({s.cached_tokens} cached)",
        f"thinking {s.thinking_tokens} tok",
        f"answer {s.answer_tokens} tok",
        f"ttft {s.ttft_s:.2f} s",
        f"thinking {s.thinking_s:.2f} s",
        f"first answer token {s.ttfa_s:.2f} s",
        f"{s.decode_tok_s:.1f} tok/s",
        f"seed {s.seed}",
        s.finish_reason,
    ]
    if result.thinking_ended is not None:
        parts.append(f"thinking ended by {result.thinking_ended}")
    return " · ".join(parts)


class PlainRenderer:
    """Pipes get the answer text only, streamed as it arrives."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._last = ""
        self._clean = StreamSanitizer()

    def think(self, text: str) -> None:
        pass

    def thinking_ended(self, ended: ThinkingEnded) -> None:
        pass

    def answer(self, text: str) -> None:
        text = self._clean.feed(text)
        if text:
            self.out.write(text)
            self.out.flush()
            self._last = text

    def finish(self, result: TurnResult) -> None:
        self.answer(self._clean.close())
        if self._last and not self._last.endswith("\n"):
            self.out.write("\n")
        self.out.flush()


class JsonRenderer:
    def __init__(self, out: IO[str], extra: dict[str, Any] | None = None) -> None:
        self.out = out
        self.extra = extra or {}  # more top-level keys (the attached files)

    def think(self, text: str) -> None:
        pass

    def thinking_ended(self, ended: ThinkingEnded) -> None:
        pass

    def answer(self, text: str) -> None:
        pass

    def finish(self, result: TurnResult) -> None:
        # json.dumps escapes control characters, so nothing raw reaches the terminal.
        self.out.write(safe_json({**result.to_dict(), **self.extra}, indent=None) + "\n")
        self.out.flush()


class TerminalRenderer:
    """Thinking streams dimmed; the answer renders as Markdown, finished blocks printed once and
    only the block in progress kept live (a tall Live duplicates lines, rich#3263)."""

    REFRESH_S = 1 / 8

    def __init__(self, show_think: bool = True, console: Any = None, math: bool = True) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self.show_think = show_think
        self.math = math  # LaTeX in the answer shown as readable Unicode
        self._color = self.console.color_system is not None and not self.console.no_color
        self._thinking = False
        self._think_tail = ""
        self._answer = ""
        self._printed = 0
        self._live: Any = None
        self._status: Any = None
        self._last_update = 0.0
        self._clean_think = StreamSanitizer()
        self._clean_answer = StreamSanitizer()

    def think(self, text: str) -> None:
        text = self._clean_think.feed(text)
        if not text:
            return
        if not self.show_think:
            if self._status is None:
                self._status = self.console.status("Thinking…", spinner="dots")
                self._status.start()
            return
        out = self.console.file
        if not self._thinking:
            self._thinking = True
            if self._color:
                out.write("\x1b[2;3m")
        out.write(text)
        out.flush()
        self._think_tail = (self._think_tail + text)[-2:]

    def thinking_ended(self, ended: ThinkingEnded) -> None:
        """When r1chat ended the thinking (a budget, a loop, a request), say so after it."""
        how = thinking_note(ended.how)
        if how is not None and self.show_think and self._thinking:
            self.console.file.write(f"\n[thinking ended: {how}]")
            self._think_tail = "]"

    def _end_thinking(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._thinking:
            out = self.console.file
            if self._color:
                out.write("\x1b[0m")
            out.write("\n" if self._think_tail.endswith("\n") else "\n\n")
            out.flush()
            self._thinking = False

    def answer(self, text: str) -> None:
        text = self._clean_answer.feed(text)
        if not text:
            return
        if self._live is None:
            from rich.live import Live

            self._end_thinking()
            self._live = Live(console=self.console, auto_refresh=False, transient=True)
            self._live.start()
        self._answer += text
        finished = self._finished_blocks() if "\n" in text else ""
        if finished:
            self._print_blocks(self._live.console, finished)
            self._printed += len(finished)
        now = time.monotonic()
        if finished or now - self._last_update >= self.REFRESH_S:
            self._last_update = now
            self._live.update(self._live_view(), refresh=True)

    def _print_blocks(self, console: Any, text: str) -> None:
        # Rich puts a blank line between blocks it prints together: keep one between batches
        # too, so the spacing never depends on how the tokens arrived.
        if self._printed:
            console.print()
        console.print(self._trimmed(text))

    def _trimmed(self, text: str) -> Any:
        """`text` as Markdown without the blank lines Rich sometimes puts before a block at the
        start (a loose list) or after the last: batches then sit exactly one line apart."""
        from r1chat.markdown import markdown_segments

        return markdown_segments(self.console, text, math=self.math)

    def _live_view(self) -> Any:
        view = self._trimmed(self._answer[self._printed :])
        if not self._printed:
            return view
        from rich.console import Group

        return Group("", view)

    def _finished_blocks(self) -> str:
        """The unprinted blocks that are final: all but the last whole-line block."""
        from r1chat.markdown import block_starts

        tail = self._answer[self._printed :]
        starts = block_starts(tail[: tail.rfind("\n") + 1])
        return tail[: starts[-1]] if len(starts) > 1 else ""

    def finish(self, result: TurnResult) -> None:
        self.think(self._clean_think.close())
        self.answer(self._clean_answer.close())
        self._end_thinking()
        if self._live is not None:
            self._live.update("", refresh=True)
            self._live.stop()
            tail = self._answer[self._printed :]
            if tail.strip():
                self._print_blocks(self.console, tail)
        note = finish_note(
            result.finish_reason, result.stats.completion_tokens, result.thinking_ended
        )
        # No answer at all: `ask` says so on stderr instead, in a pipe too.
        if (
            note is not None
            and result.answer.strip()
            and (result.finish_reason == "length" or result.thinking_ended == "loop")
        ):
            self.console.print(note, style="yellow", markup=False)


def make_renderer(
    *, json_out: bool, show_think: bool, out: IO[str] | None = None, math: bool = True
) -> Renderer:
    stream = out or sys.stdout
    if json_out:
        return JsonRenderer(stream)
    if stream.isatty():
        return TerminalRenderer(show_think=show_think, math=math)
    return PlainRenderer(stream)
