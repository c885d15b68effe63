"""`r1chat ask --samples k`: k chains of thought at once, a vote over their `\\boxed{}` answers,
and the answer text of one sample that reached the majority.

On a terminal each sample has a live line (its thinking tokens, then its answer); piped, stdout
gets the chosen answer alone; `--json` gives every sample, both votes and the early stop.

Early stopping is on ("overtaken") by default here: it stops the samples still running only once
no answer of theirs could change the majority (r1chat.many.SampleRun), so the answer is the one
all k would have given, for fewer tokens. `eval` leaves it off by default: pass@1 wants every
sample to its end. The answer of record is the majority's unless `--vote confidence`.
"""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from r1chat.confidence import KEEP
from r1chat.sanitize import safe_json, sanitize

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.conversation import Conversation
    from r1chat.engines.base import Engine
    from r1chat.interrupts import Interrupts
    from r1chat.many import EarlyRule, SampleProgress, SampleRun, Samples, VoteBy

REFRESH_S = 1 / 8


class StopEarly(StrEnum):
    """--stop-early (r1chat.many.EarlyRule)."""

    off = "off"
    overtaken = "overtaken"
    beta = "beta"


class VoteWith(StrEnum):
    """--vote (r1chat.many.VoteBy)."""

    majority = "majority"
    confidence = "confidence"


def early_rule(choice: StopEarly) -> EarlyRule:
    """The rule r1chat.many knows by the same word (tests/test_early_stop.py holds them so);
    the command line gets its choices from an enum, kept apart so that it loads nothing else."""
    return cast("EarlyRule", choice.value)


def vote_rule(choice: VoteWith) -> VoteBy:
    return cast("VoteBy", choice.value)


# The options of the samples, for `ask` and `eval` (each gives its own default).
StopEarlyOpt = Annotated[
    StopEarly,
    typer.Option(
        "--stop-early",
        help="Stop the samples still running once the leading answer cannot be overtaken"
        " (overtaken: the majority stays what all k would give), or also once it is the more"
        " likely answer with P >= 0.95 (beta, Adaptive-Consistency); off runs every one",
    ),
]
VoteOpt = Annotated[
    VoteWith,
    typer.Option(
        "--vote",
        help="The answer of record: the majority, or the confidence-weighted vote (DeepConf;"
        " the majority where the engine measures no confidence); both are reported",
    ),
]
KeepOpt = Annotated[
    float,
    typer.Option(
        "--keep",
        min=0.01,
        max=1.0,
        help="The share of samples, most confident first, that the confidence vote counts"
        " (DeepConf: 0.9 keeps nearly all; 0.1 only the surest, with many samples)",
    ),
]


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
    stop_early: EarlyRule = "overtaken",
    vote_by: VoteBy = "majority",
    keep: float = KEEP,
) -> int:
    """k replies through `Conversation.ask_samples` (which saves them), then the votes."""
    from r1chat.endings import NO_ANSWER
    from r1chat.many import SampleEvent, SampleFailed, SampleRetrying, SamplesDone, progress
    from r1chat.turn import ContextTrimmed, LoopNoticed

    live = LiveLines(k) if not json_out and sys.stdout.isatty() and sys.stderr.isatty() else None
    result: Samples | None = None
    loops: set[int] = set()

    def choose(run: SampleRun) -> None:
        run.early, run.vote_by, run.keep = stop_early, vote_by, keep

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
                run=choose,
            ):
                if isinstance(ev, SampleEvent):
                    if live is not None:
                        progress(ev, live.progress)
                    if isinstance(ev.event, LoopNoticed):
                        loops.add(ev.index + 1)
                elif isinstance(ev, SampleFailed) and live is not None:
                    live.meter.failed[ev.index] = ev.message
                elif isinstance(ev, SampleRetrying) and live is not None:
                    live.meter.retrying(ev.index, ev.why)
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
    early = result.early_stop
    if early is not None:
        parts.append(f"{early.stopped} stopped early, about {early.tokens_saved} tok saved")
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
        **result.votes_json(),
        "failed": [{"index": i, "error": why} for i, why in result.errors],
        "chosen": chosen.index,
        "answer": chosen.answer,
        "boxed": chosen.boxed,
        "stats": asdict(result.stats),
    }


def show(result: Samples, *, math: bool) -> None:
    from rich.console import Console

    from r1chat.endings import STOPPED_EARLY, thinking_note
    from r1chat.markdown import markdown_segments

    console = Console(highlight=False)
    for s in result.samples:
        if s.finish_reason == STOPPED_EARLY:
            got = STOPPED_EARLY  # what it had boxed so far is no vote
        elif s.boxed is not None:
            got = sanitize(s.boxed)
        else:
            got = f"no answer ({s.finish_reason})"
        notes = [n for n in (thinking_note(s.thinking_ended),) if n]
        if s.stats.confidence is not None:
            notes.append(f"confidence {s.stats.confidence:.2f}")
        console.print(
            f"  sample {s.index + 1:>2}  {s.thinking_tokens:>6,} thinking tokens  {got}"
            + (f"  ({'; '.join(notes)})" if notes else ""),
            markup=False,
        )
    console.print()
    console.print(sanitize(result.agreement()), style="bold", markup=False)
    console.print()
    console.print(markdown_segments(console, sanitize(result.chosen().answer), math=math))
