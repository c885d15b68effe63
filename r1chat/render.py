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
    def held(self, chars: int) -> None: ...
    def decided(self) -> None: ...
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

    def held(self, chars: int) -> None:
        pass

    def decided(self) -> None:
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

    def held(self, chars: int) -> None:
        pass

    def decided(self) -> None:
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
    only the block in progress kept live (a tall Live duplicates lines, rich#3263). A long code
    fence is printed in runs of lines as they become final (`fence_runs`), so only its last run is
    live: a redraw then costs the same at line 800 of a fence as at line 20."""

    REFRESH_S = 1 / 8
    # A redraw waits this many times the last one's duration (if more than REFRESH_S), so redraws
    # take at most a third of the time whatever the block in progress costs to render.
    REDRAW_GAP = 2.0

    def __init__(self, show_think: bool = True, console: Any = None, math: bool = True) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self.show_think = show_think
        self.math = math  # LaTeX in the answer shown as readable Unicode
        self._color = self.console.color_system is not None and not self.console.no_color
        self._thinking = False
        self._think_tail = ""
        self._answer = ""
        self._printed = 0  # characters of `_answer` printed
        # Not `_printed > 0`: blank lines before a fence are passed over without printing.
        self._printed_any = False
        # The opening line of a code fence whose first runs are printed ("" when none): the
        # unprinted text continues that fence, so it is rendered after this line.
        self._fence = ""
        self._live: Any = None
        self._status: Any = None
        self._next_update = 0.0
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

    def held(self, chars: int) -> None:
        """A server's text not known yet to be thinking or answer: said on a spinner line
        (never printed as one and moved to the other later)."""
        what = f"{chars:,} characters held back: thinking or answer? (no <think> tag yet)"
        if self._status is None:
            self._status = self.console.status(what, spinner="dots")
            self._status.start()
        else:
            self._status.update(what)

    def decided(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

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
        printed = self._print_final() if "\n" in text else False
        now = time.monotonic()
        # After a print the live view must drop what was printed, or it would show twice.
        if printed or now >= self._next_update:
            self._live.update(self._live_view(), refresh=True)
            done = time.monotonic()
            # Timed from the end of the redraw, and longer after a slow one: timed from its start,
            # a redraw slower than REFRESH_S was due again at once, on every token.
            self._next_update = done + max(self.REFRESH_S, self.REDRAW_GAP * (done - now))

    def _unprinted(self) -> str:
        """The answer not yet printed, as Markdown that renders on its own."""
        return self._fence + self._answer[self._printed :]

    def _advance(self, chars: int, fence: str = "") -> None:
        """The first `chars` characters of `_unprinted()` are printed; `fence`: the opening line
        of the code fence that the rest continues, if any."""
        self._printed += chars - len(self._fence)
        self._fence = fence

    def _print_final(self) -> bool:
        """Print what of the unprinted text is final: all but the last whole-line block, and all
        but the last run of a long code fence in that block. Whether anything was printed."""
        from r1chat.markdown import block_starts, fence_runs

        tail = self._unprinted()
        # Only whole lines decide where blocks begin: "1" may yet become "10. item".
        whole = tail[: tail.rfind("\n") + 1]
        starts = block_starts(whole)
        if not starts:
            return False
        printed = len(starts) > 1
        if printed:
            self._print(self._live.console, whole[: starts[-1]])
        runs = fence_runs(whole[starts[-1] :]) or []
        if starts[-1] and (printed or len(runs) > 1):
            # Printed, or only blank lines and link definitions before a fence printed below.
            self._advance(starts[-1])
        if len(runs) > 1:
            opening = runs[0][: runs[0].index("\n") + 1]
            for run in runs[:-1]:
                self._print(self._live.console, run, more=True)
                # A run is its opening line, its code lines and its closing line: in the answer,
                # the same opening line (or `_fence`) and code lines.
                self._advance(_line_end(self._unprinted(), run.count("\n") - 1), opening)
            printed = True
        return printed

    def _print(self, console: Any, text: str, *, more: bool = False) -> None:
        """Print `text`, the start of `_unprinted()`; `more`: a run of a fence that goes on."""
        # Rich puts a blank line between blocks it prints together: keep one between batches
        # too, so the spacing never depends on how the tokens arrived. A fence's next run follows
        # its last directly.
        if self._printed_any and not self._fence:
            console.print()
        console.print(self._segments(text, more=more))
        self._printed_any = True

    def _segments(self, text: str, *, more: bool = False) -> Any:
        """`text` (the start of `_unprinted()`) as Markdown, without the blank lines Rich sometimes
        puts before a block at the start (a loose list) or after the last: batches then sit
        exactly one line apart. `more`: it is a run of a fence that goes on."""
        from rich.segment import Segment, Segments

        from r1chat.markdown import markdown_lines

        lines = markdown_lines(self.console, text, math=self.math)
        # Each run of a fence renders as a fence of its own, with a padding row above and below:
        # the whole fence has only the first run's top row and the last run's bottom row.
        lines = lines[(1 if self._fence else 0) : (-1 if more else None)]
        return Segments([seg for line in lines for seg in (*line, Segment.line())])

    def _live_view(self) -> Any:
        view = self._segments(self._unprinted())
        if not self._printed_any or self._fence:
            return view
        from rich.console import Group

        return Group("", view)

    def finish(self, result: TurnResult) -> None:
        self.think(self._clean_think.close())
        self.answer(self._clean_answer.close())
        self._end_thinking()
        if self._live is not None:
            self._live.update("", refresh=True)
            self._live.stop()
            if self._answer[self._printed :].strip():
                self._print(self.console, self._unprinted())
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


def _line_end(text: str, lines: int) -> int:
    """The offset in `text` just past its first `lines` lines."""
    end = 0
    for _ in range(lines):
        end = text.index("\n", end) + 1
    return end


def make_renderer(
    *, json_out: bool, show_think: bool, out: IO[str] | None = None, math: bool = True
) -> Renderer:
    stream = out or sys.stdout
    if json_out:
        return JsonRenderer(stream)
    if stream.isatty():
        return TerminalRenderer(show_think=show_think, math=math)
    return PlainRenderer(stream)
