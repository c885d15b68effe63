"""What every engine shares: the protocol the front ends use, the events a reply streams as, and
the figures it ends with.

An engine turns messages into a stream of events: `Started` once the prompt is taken, a `Token`
per sampled (or injected) token, `Done` with the reply's `Stats`. Engines that can decode several
sequences of one prompt together (a llama.cpp batch, a server taking concurrent requests) also
implement `DecodesTogether`; `one_at_a_time` serves the others with the same stream shape, so the
samples flow above never asks which engine it has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from r1chat.errors import PromptTooLong, R1ChatError, StreamCut

if TYPE_CHECKING:
    from r1chat.prompts import ChatMessage
    from r1chat.reasoning import ThinkingControl
    from r1chat.sampling import SamplingParams

# "stopped early": a sample of several stopped once the others had settled the vote
# (r1chat.many), not by the user.
FinishReason = Literal["stop", "length", "cancelled", "stopped early"]
# How k samples were decoded: in one batch, as concurrent requests, or one after another.
Together = Literal["batched", "concurrent", "one at a time"]


@dataclass
class Stats:
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache of an earlier turn
    evaluated_tokens: int = 0  # prompt tokens actually run through the model this turn
    completion_tokens: int = 0
    thinking_tokens: int = 0  # written by the model inside its thinking
    answer_tokens: int = 0  # written by the model after it
    forced_tokens: int = 0  # written by r1chat: a budget's closing text, think-min's word
    ttft_s: float = 0.0
    thinking_s: float = 0.0  # from the first token to the end of the thinking
    ttfa_s: float = 0.0  # time to the first answer token
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    total_s: float = 0.0
    seed: int = 0
    finish_reason: FinishReason = "stop"
    # Who ended the thinking when it was steered: "server" (its own budget or control
    # endpoint) or "r1chat" (cut and continued); empty when nothing was steered.
    steered_by: str = ""
    # How sure the model was while writing (r1chat.confidence, DeepConf's measures): the lowest
    # sliding-window mean of the token confidences, their mean, the mean of the last window.
    # None where the engine measures none (a server without log-probabilities).
    confidence: float | None = None
    confidence_mean: float | None = None
    confidence_tail: float | None = None
    # A server's reply cut short (the token limit, a stop) before a `</think>` showed whether
    # its text was thinking: read as the answer, and said so.
    undecided: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Started:
    """The engine took the prompt (it fits) and is about to evaluate it; nothing is decoded yet.

    Front ends save the question only now, so a question the model never saw is never saved.
    """

    prompt_tokens: int | None  # None when the engine cannot tell before the reply (a server)


@dataclass(frozen=True, slots=True)
class Token:
    """One token and the text it completes (empty while a UTF-8 character is split).

    `forced`: r1chat wrote it, not the model (the closing sentence of a budget, think-min's
    "Wait"); it is shown and counted apart from the model's own tokens.
    """

    id: int
    text: str
    forced: bool = False
    # Not known yet to be thinking or answer: a server's text with no `<think>` before it,
    # which a later `</think>` makes thinking (a template that opens the thinking in the prompt)
    # and the end of the stream makes the answer. A `Decided` says which, before any other text.
    held: bool = False
    # The model's confidence at the position it sampled this token in (r1chat.confidence); None
    # for what r1chat wrote and where the engine measures none.
    conf: float | None = None


@dataclass(frozen=True)
class Decided:
    """What the held tokens so far were: thinking (a `</think>` came), or the answer."""

    thinking: bool


@dataclass(frozen=True)
class Done:
    stats: Stats


Event = Started | Token | Decided | Done


@dataclass
class BatchStats:
    """k samples of one prompt, all together."""

    k: int
    prompt_tokens: int = 0
    completion_tokens: int = 0  # all samples together
    ttft_s: float = 0.0  # from the call to the first sampled token (context, prefill included)
    decode_tok_s: float = 0.0  # all sequences together, after the first token of each
    total_s: float = 0.0
    prompt_evals: int = 0  # times the prompt went through the model
    n_ctx: int = 0  # the batch context's size in tokens (0: not the engine's to say)
    together: Together = "batched"


@dataclass(frozen=True)
class BatchDone:
    """The last event of `stream_many`, after every sequence's own Done."""

    stats: BatchStats


@dataclass(frozen=True)
class Failed:
    """Sample `index`'s request failed (a server's error, in one line): the other samples go
    on, and what came of this one before the failure is kept, marked as failed."""

    message: str
    # Why a stream failed when it ended without a reply that ended (r1chat.errors.StreamCut:
    # "cancelled", "cut", "empty"), which a second run may mend; "" for any other error.
    why: str = ""


@dataclass(frozen=True)
class Retrying:
    """Sample `index` runs again from the start, with its seed (`why`: what came of it, in a few
    words): what came of it so far is dropped, and its events start again. The caller may give
    it a fresh ThinkingControl in `controls[index]` now: the retry reads it when it begins."""

    why: str


# (sample index, event); the closing BatchDone comes with index -1.
ManyEvent = tuple[int, Event | BatchDone | Failed | Retrying]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    backend: str  # "CUDA", "Metal", "CPU", ...
    n_gpu_layers: int
    n_layers: int
    n_ctx: int
    n_ctx_train: int
    thinks: bool
    think_end_token: int | None = None


def check_fits(prompt_tokens: int, n_ctx: int) -> None:
    """Refuse a prompt that leaves no room in the context for even one new token."""
    if prompt_tokens >= n_ctx:
        raise PromptTooLong(
            f"the prompt is too long: {prompt_tokens:,} tokens, the context holds {n_ctx:,}"
            " (pass a larger --ctx, or shorten the input)"
        )


class Engine(Protocol):
    """What the front ends need of a model, local or on a server.

    `control`, for a model that thinks, steers the thinking token by token (budget, think
    longer, loop guard, answer now: r1chat.reasoning.ThinkingControl); with a budget of 0 the
    prompt opens and closes the thinking itself.
    """

    info: ModelInfo

    def count_tokens(self, messages: list[ChatMessage]) -> int: ...

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]: ...

    def close(self) -> None: ...


@runtime_checkable
class DecodesTogether(Protocol):
    """An engine that decodes k sequences of one prompt side by side.

    Sample i uses seed `params.seed + i` when a seed is given, and `controls[i]` steers its
    thinking; each sequence streams as `Engine.stream` would, tagged with its index, and a
    BatchDone closes the stream.
    """

    def stream_many(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        k: int,
        cancel: threading.Event | None = None,
        controls: Sequence[ThinkingControl | None] | None = None,
        ctx_tokens: int | None = None,
    ) -> Iterator[ManyEvent]: ...


def seeds_for(params: SamplingParams, k: int) -> list[int | None]:
    """Sample i's seed: `params.seed + i` when a seed is given, else fresh (None) for each."""
    return [params.seed + i if params.seed is not None else None for i in range(k)]


def one_at_a_time(
    engine: Engine,
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    cancel: threading.Event | None = None,
    controls: Sequence[ThinkingControl | None] | None = None,
) -> Iterator[ManyEvent]:
    """k samples for an engine that decodes one sequence at a time, in the shape of
    `DecodesTogether.stream_many`. A sample not begun when `cancel` is set is not run."""
    import time

    t0 = time.perf_counter()
    stats = BatchStats(k=k, together="one at a time")
    seeds = seeds_for(params, k)
    first = 0.0
    for i in range(k):
        if cancel is not None and cancel.is_set():
            break
        control = controls[i] if controls is not None else None
        for ev in engine.stream(messages, replace(params, seed=seeds[i]), cancel, control):
            if isinstance(ev, Token) and not first:
                first = time.perf_counter()
            elif isinstance(ev, Done):
                stats.completion_tokens += ev.stats.completion_tokens
                stats.prompt_evals += 1
                stats.prompt_tokens = ev.stats.prompt_tokens or stats.prompt_tokens
            yield i, ev
    stats.total_s = time.perf_counter() - t0
    stats.ttft_s = (first or time.perf_counter()) - t0
    if stats.total_s > stats.ttft_s:
        stats.decode_tok_s = stats.completion_tokens / (stats.total_s - stats.ttft_s)
    yield -1, BatchDone(stats)


def concurrently(
    engine: Engine,
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    cancel: threading.Event | None = None,
    controls: Sequence[ThinkingControl | None] | None = None,
    *,
    at_once: int | None = None,
) -> Iterator[ManyEvent]:
    """k samples as concurrent `engine.stream` calls (a server batches them itself), at most
    `at_once` running at a time (None: all k; 1: one after another), in the shape of
    `DecodesTogether.stream_many`. Events come in the order they arrive; a sample not begun when
    `cancel` is set is not run. A sample that fails (an R1ChatError) leaves the others running
    and comes as a `Failed` event (the caller decides what a run where every sample failed
    means); any other exception is raised once the running ones have ended."""
    import queue
    import time

    t0 = time.perf_counter()
    stop = threading.Event()  # the caller's cancel, or the caller gone
    events: queue.Queue[tuple[int, Event | BaseException | None]] = queue.Queue()
    seeds = seeds_for(params, k)
    width = k if at_once is None else max(1, min(at_once, k))
    waiting = list(range(k))
    threads: list[threading.Thread] = []

    def one(i: int) -> None:
        control = controls[i] if controls is not None else None
        try:
            for ev in engine.stream(messages, replace(params, seed=seeds[i]), stop, control):
                events.put((i, ev))
        except BaseException as e:  # handed to the caller's thread
            events.put((i, e))
        finally:
            events.put((i, None))

    def begin() -> None:
        t = threading.Thread(target=one, args=(waiting.pop(0),), daemon=True)
        threads.append(t)
        t.start()

    while waiting and len(threads) < width:
        begin()
    together: Together = "concurrent" if width > 1 else "one at a time"
    stats = BatchStats(k=k, together=together)
    first = 0.0
    error: BaseException | None = None
    running = len(threads)
    try:
        while running:
            if cancel is not None and cancel.is_set():
                stop.set()
            try:
                i, item = events.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                running -= 1
                if waiting and not stop.is_set():
                    begin()
                    running += 1
            elif isinstance(item, R1ChatError):
                # Kept apart: the other samples go on, and this one's text stays.
                yield i, Failed(str(item), item.why if isinstance(item, StreamCut) else "")
            elif isinstance(item, BaseException):
                error = error or item
                stop.set()  # a bug: no more
            else:
                if isinstance(item, Token) and not first:
                    first = time.perf_counter()
                elif isinstance(item, Done):
                    stats.completion_tokens += item.stats.completion_tokens
                    stats.prompt_tokens = item.stats.prompt_tokens or stats.prompt_tokens
                yield i, item
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5.0)
    if error is not None:
        raise error
    stats.prompt_evals = len(threads)
    stats.total_s = time.perf_counter() - t0
    stats.ttft_s = (first or time.perf_counter()) - t0
    if stats.total_s > stats.ttft_s:
        stats.decode_tok_s = stats.completion_tokens / (stats.total_s - stats.ttft_s)
    yield -1, BatchDone(stats)
