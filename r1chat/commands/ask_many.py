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
    from r1chat.batch import SampleProgress
    from r1chat.config import Settings
    from r1chat.conversation import Conversation
    from r1chat.engine import Engine
    from r1chat.interrupts import Interrupts
    from r1chat.samples import Samples

REFRESH_S = 1 / 8


class LiveLines:
    """The samples' lines (r1chat.samples.SampleMeter) on stderr, redrawn a few times a second
    (progress comes once per token)."""

    def __init__(self, k: int) -> None:
        from rich.console import Console
        from rich.live import Live

        from r1chat.samples import SampleMeter

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
    chat: Conversation,
    stop: Interrupts,
    attachments: list[dict[str, Any]] | None = None,
) -> int:
    from r1chat.prompts import ChatMessage
    from r1chat.samples import ask_many

    live = LiveLines(k) if not json_out and sys.stdout.isatty() and sys.stderr.isatty() else None
    messages = [*chat.history(), ChatMessage("user", question)]
    with stop.deferred() as cancel:
        try:
            result = ask_many(
                engine,
                messages,
                settings.sampling_params(),
                k,
                cancel=cancel,
                on_progress=live.progress if live else None,
            )
        finally:
            if live is not None:
                live.close()
        save(chat, question, engine.info.name, result, attachments)
    if json_out:
        sys.stdout.write(safe_json(as_json(question, engine.info.name, result), indent=None) + "\n")
    elif live is not None:
        show(result, math=settings.math == "unicode")
    else:
        sys.stdout.write(result.chosen().answer.rstrip("\n") + "\n")
    sys.stdout.flush()
    return stop.exit_code


def save(
    chat: Conversation,
    question: str,
    model: str,
    result: Samples,
    attachments: list[dict[str, Any]] | None,
) -> None:
    chosen = result.chosen().index
    replies = result.replies()
    chat.save_samples(question, model, replies, chosen, attachments)


def as_json(question: str, model: str, result: Samples) -> dict[str, Any]:
    from dataclasses import asdict

    chosen = result.chosen()
    return {
        "question": question,
        "model": model,
        "samples": [
            {**asdict(s), "completion_tokens": s.completion_tokens} for s in result.samples
        ],
        "vote": {"answer": result.vote.answer, "count": result.vote.count, "of": result.vote.of},
        "chosen": chosen.index,
        "answer": chosen.answer,
        "boxed": chosen.boxed,
        "stats": asdict(result.stats),
    }


def show(result: Samples, *, math: bool) -> None:
    from rich.console import Console

    from r1chat.markdown import markdown_segments

    console = Console(highlight=False)
    for s in result.samples:
        got = sanitize(s.boxed) if s.boxed is not None else f"no answer ({s.finish_reason})"
        console.print(
            f"  sample {s.index + 1:>2}  {s.thinking_tokens:>6,} thinking tokens  {got}",
            markup=False,
        )
    console.print()
    console.print(sanitize(result.agreement()), style="bold", markup=False)
    console.print()
    console.print(markdown_segments(console, sanitize(result.chosen().answer), math=math))
