"""k samples of one prompt from a server: together when it serves requests together, one at a
time when it cannot (llama_cpp.server cuts a running stream short when another request comes:
the stream ends with `[DONE]` and no finish reason, and a vote over the cut samples is wrong).

A sample is no vote when the server cut it short or cancelled it, or when it came back empty
while others did not: once the others end it runs again, alone, with its own seed. What fails
again stays failed (`Failed`), and the vote (r1chat.many) counts only the samples that came.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from r1chat.engines.base import (
    BatchDone,
    BatchStats,
    Done,
    Engine,
    Failed,
    ManyEvent,
    Retrying,
    Token,
    concurrently,
    seeds_for,
)

if TYPE_CHECKING:
    from r1chat.prompts import ChatMessage
    from r1chat.reasoning import ThinkingControl
    from r1chat.sampling import SamplingParams

# What ended a sample that was no reply of the model's; "other": a failure a retry cannot mend
# (the server's own error, an event r1chat cannot read), kept as it came.
Why = Literal["cancelled", "cut", "empty", "other"]

# Why a stream the server ended before the reply did (r1chat.errors.StreamCut, carried on the
# Failed event): "cancelled", "cut" or "empty". An empty stream is also what an overlong prompt
# gets, so it is retried only when another sample came back whole.
EMPTY = "the reply came back empty (other samples did not), even when run alone"


def stream_many(
    engine: Engine,
    slots: int | None,
    note: Callable[[str], None],
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    cancel: threading.Event | None = None,
    controls: Sequence[ThinkingControl | None] | None = None,
) -> Iterator[ManyEvent]:
    """`slots`: the requests the server serves together (None: it does not say); `note`
    hears one line for the user (how the samples were run, what failed)."""
    t0 = time.perf_counter()
    at_once = k if slots is None else max(1, min(slots, k))
    if at_once == 1 and k > 1:
        note(f"the server serves one request at a time: {k} samples run one after another")
    elif at_once < k:
        note(f"the server serves {at_once} requests at a time: {k} samples run {at_once} at once")
    came = _Watch(k)
    stats = BatchStats(k=k)
    for i, ev in concurrently(engine, messages, params, k, cancel, controls, at_once=at_once):
        if isinstance(ev, BatchDone):
            stats = ev.stats
            continue
        came.see(i, ev)
        yield i, ev
    again = came.to_retry() if cancel is None or not cancel.is_set() else {}
    if again:
        whys = _told(list(again.values()))
        note(f"retrying {len(again)} of {k} samples one at a time ({whys})")
    seeds = seeds_for(params, k)
    for i, why in again.items():
        if cancel is not None and cancel.is_set():
            break
        yield i, Retrying(_told([why]))
        came.forget(i)
        # Read only now: the caller may have given the sample a fresh control on Retrying.
        control = [controls[i]] if controls is not None else None
        alone = replace(params, seed=seeds[i])
        for _, ev in concurrently(engine, messages, alone, 1, cancel, control):
            if isinstance(ev, BatchDone):
                stats.completion_tokens += ev.stats.completion_tokens
                stats.prompt_evals += ev.stats.prompt_evals
                continue
            came.see(i, ev)
            yield i, ev
        if came.done[i] and not came.text[i] and came.failed[i] is None:
            came.failed[i] = EMPTY
            came.why[i] = "empty"
            yield i, Failed(EMPTY, "empty")
    left = came.failures()
    if again and left:
        note(f"{len(left)} of {k} samples failed: {_told(left)}")
    if again:
        stats.total_s = time.perf_counter() - t0
        if stats.total_s > stats.ttft_s:
            stats.decode_tok_s = stats.completion_tokens / (stats.total_s - stats.ttft_s)
    yield -1, BatchDone(stats)


class _Watch:
    """What came of each sample: any text of the model's, its end, its failure."""

    def __init__(self, k: int) -> None:
        self.text = [False] * k
        self.done = [False] * k
        self.failed: list[str | None] = [None] * k
        self.why: list[Why] = ["other"] * k

    def see(self, i: int, ev: object) -> None:
        if isinstance(ev, Token):
            self.text[i] = self.text[i] or (bool(ev.text) and not ev.forced)
        elif isinstance(ev, Done):
            self.done[i] = True
        elif isinstance(ev, Failed):
            self.failed[i] = ev.message
            self.why[i] = _why(ev.why)

    def forget(self, i: int) -> None:
        self.text[i], self.done[i], self.failed[i] = False, False, None
        self.why[i] = "other"

    def to_retry(self) -> dict[int, Why]:
        """The samples worth one more run, in index order, and what came of them."""
        out: dict[int, Why] = {}
        for i, failed in enumerate(self.failed):
            whole = any(
                self.text[j] and self.failed[j] is None for j in range(len(self.text)) if j != i
            )
            why = self.why[i] if failed is not None else None
            if why in ("cancelled", "cut"):
                out[i] = why
            elif whole and (
                why == "empty" or (failed is None and self.done[i] and not self.text[i])
            ):
                out[i] = "empty"
        return out

    def failures(self) -> list[Why]:
        return [self.why[i] for i, m in enumerate(self.failed) if m is not None]


def _why(why: str) -> Why:
    """A Failed event's `why` (r1chat.errors.StreamCut's), as one of ours."""
    if why == "cancelled":
        return "cancelled"
    if why == "cut":
        return "cut"
    if why == "empty":
        return "empty"
    return "other"


def _told(whys: list[Why]) -> str:
    """ "the server cancelled them"; with more than one cause, how many each:
    "the server cancelled 2; 1 came back empty"."""
    counts = {w: whys.count(w) for w in dict.fromkeys(whys)}
    one = len(counts) == 1
    parts = []
    for why, n in counts.items():
        them = ("it" if n == 1 else "them") if one else str(n)
        they = ("it" if n == 1 else "they") if one else str(n)
        parts.append(
            {
                "cancelled": f"the server cancelled {them}",
                "cut": f"the server cut {them} short",
                "empty": f"{they} came back empty",
                "other": f"the request for {them} failed",
            }[why]
        )
    return "; ".join(parts)
