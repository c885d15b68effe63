"""`r1chat ask --samples k`: k chains of thought at once, a vote over their `\\boxed{}` answers,
and the answer text of one sample that reached the majority.

On a terminal each sample has a live line (its thinking tokens, then its answer); piped, stdout
gets the chosen answer alone; `--json` gives every sample and the vote.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from r1chat.sanitize import safe_json, sanitize

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.conversation import Conversation
    from r1chat.engines.base import Engine
    from r1chat.interrupts import Interrupts
    from r1chat.many import SampleProgress, Samples

REFRESH_S = 1 / 8


class LiveLines:
    """The samples' lines (r1chat.many.SampleMeter) on stderr, redrawn a few times a second
    (progress comes once per token)."""

    def __init__(self, k: int) -> None:
        from rich.console import Console
        from rich.live import Live

        from r1chat.many import SampleMeter

        self.meter = SampleMeter(k)
        self.console = Console(stderr=True, highlight=False)
        self._live = Live(console=self.console, auto_refresh=False, transient=True)
        self._at = 0.0
        self._live.start()

    def progress(self, p: SampleProgress) -> None:
        self.meter.progress(p)
        now = time.monotonic()
        if now - self._at >= REFRESH_S:
            self._at = now
            self._live.update(self._view(), refresh=True)

    def _view(self) -> Any:
        from rich.text import Text

        return Text(self.meter.lines(indent="  "), no_wrap=True, overflow="ellipsis")

    def close(self) -> None:
        self._live.update("", refresh=True)
        self._live.stop()


def run_samples(
    engine: Engine,
    settings: Settings,
    question: str,
    k: int,
    *,
    json_out: bool,
    print_stats: bool,
    chat: Conversation,
    stop: Interrupts,
    attachments: list[dict[str, Any]] | None = None,
) -> int:
    """k replies through `Conversation.ask_samples` (which saves them), then the vote."""
    from r1chat.endings import NO_ANSWER
    from r1chat.many import SampleEvent, SamplesDone, progress
    from r1chat.turn import ContextTrimmed, LoopNoticed

    live = LiveLines(k) if not json_out and sys.stdout.isatty() and sys.stderr.isatty() else None
    result: Samples | None = None
    loops: set[int] = set()
    with stop.deferred() as cancel:
        try:
            for ev in chat.ask_samples(
                engine,
                question,
                settings.sampling_params(),
                k,
                cancel=cancel,
                reasoning=settings.reasoning_params(),
                attachments=attachments,
                ctx_tokens=settings.ctx,
            ):
                if isinstance(ev, SampleEvent):
                    if live is not None:
                        progress(ev, live.progress)
                    if isinstance(ev.event, LoopNoticed):
                        loops.add(ev.index + 1)
                elif isinstance(ev, SamplesDone):
                    result = ev.samples
                elif isinstance(ev, ContextTrimmed):
                    sys.stderr.write(f"r1chat: {ev.note}\n")
        finally:
            if live is not None:
                live.close()
    assert result is not None
    for index, reason in result.errors:
        sys.stderr.write(f"r1chat: sample {index + 1} failed: {sanitize(reason)}\n")
    if loops:
        which = ", ".join(str(i) for i in sorted(loops))
        sys.stderr.write(f"r1chat: note: the thinking of sample {which} repeats itself\n")
    if not result.samples:
        pass  # nothing to show; the line below says why
    elif json_out:
        sys.stdout.write(safe_json(as_json(result), indent=None) + "\n")
    elif result.all_failed:
        pass  # what came is saved; printed as the answer it would read as one
    elif live is not None:
        show(result, math=settings.math == "unicode")
    else:
        sys.stdout.write(result.chosen().answer.rstrip("\n") + "\n")
    sys.stdout.flush()
    if print_stats and result.samples:
        sys.stderr.write(stats_line(result) + "\n")
    why = result.no_answer()
    if why is not None:
        if result.all_failed:
            return stop.exit_code or 1  # the errors are above: a failure, not a short reply
        sys.stderr.write(f"r1chat: {why}\n")
        return stop.exit_code or NO_ANSWER
    return stop.exit_code


def stats_line(result: Samples) -> str:
    s = result.stats
    thinking = sum(x.thinking_tokens for x in result.samples)
    parts = [
        f"{s.k} samples ({s.together})",
        f"prompt {s.prompt_tokens} tok",
        f"thinking {thinking} tok",
        f"{s.completion_tokens} tok in all",
        f"ttft {s.ttft_s:.2f} s",
        f"{s.decode_tok_s:.1f} tok/s together",
        f"{s.total_s:.2f} s",
    ]
    ended = [x.thinking_ended for x in result.samples if x.thinking_ended not in (None, "model")]
    if ended:
        parts.append("thinking ended by " + ", ".join(str(e) for e in ended))
    return " · ".join(parts)


def as_json(result: Samples) -> dict[str, Any]:
    from dataclasses import asdict

    chosen = result.chosen()
    why = result.no_answer()
    return {
        "answered": why is None,
        "no_answer": why,
        "question": result.question,
        "model": result.model,
        "samples": [s.to_dict() for s in result.samples],
        "vote": {"answer": result.vote.answer, "count": result.vote.count, "of": result.vote.of},
        "failed": [{"index": i, "error": why} for i, why in result.errors],
        "chosen": chosen.index,
        "answer": chosen.answer,
        "boxed": chosen.boxed,
        "stats": asdict(result.stats),
    }


def show(result: Samples, *, math: bool) -> None:
    from rich.console import Console

    from r1chat.endings import thinking_note
    from r1chat.markdown import markdown_segments

    console = Console(highlight=False)
    for s in result.samples:
        got = sanitize(s.boxed) if s.boxed is not None else f"no answer ({s.finish_reason})"
        how = thinking_note(s.thinking_ended)
        console.print(
            f"  sample {s.index + 1:>2}  {s.thinking_tokens:>6,} thinking tokens  {got}"
            + (f"  ({how})" if how else ""),
            markup=False,
        )
    console.print()
    console.print(sanitize(result.agreement()), style="bold", markup=False)
    console.print()
    console.print(markdown_segments(console, sanitize(result.chosen().answer), math=math))
