"""An engine that replays scripted text: for UI tests, demos and the TUI benchmark.

It implements the same protocols as LlamaEngine (k samples decoded "together", in turns), so the
UI cannot tell them apart, and its tokens go through the same per-token step
(r1chat.engines.step): the thinking control steers a scripted reply exactly as it steers a real
one. Its "model" writes the script token by token; after r1chat closes the thinking it writes the
scripted answer, and after think-min's "Wait" it thinks the scripted thought again.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from r1chat.engines.base import (
    BatchDone,
    BatchStats,
    Done,
    Event,
    ManyEvent,
    ModelInfo,
    Started,
    Stats,
    check_fits,
    seeds_for,
)
from r1chat.engines.step import TokenStep, Vocabulary
from r1chat.prompts import ChatMessage
from r1chat.reasoning import CLOSE_TAG, ThinkingControl
from r1chat.sampling import SamplingParams

_PIECES = re.compile(r"\s*\S{1,4}|\s+")
EOS = 0
THINK_END = 1


def split_pieces(text: str) -> list[str]:
    """Token-sized pieces of `text` (about 4 characters each), concatenating back to `text`."""
    return _PIECES.findall(text)


class _Pieces:
    """A vocabulary grown as text is scripted: each distinct piece an id; the closing tag one
    token, as in the R1 vocabulary."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {"": EOS, CLOSE_TAG: THINK_END}
        self.pieces: dict[int, bytes] = {EOS: b"", THINK_END: CLOSE_TAG.encode()}
        self.lock = threading.Lock()
        self.vocabulary = Vocabulary(
            self.pieces, {EOS: True}, self.piece, self.is_eog, self.tokenize
        )

    def id(self, piece: str) -> int:
        with self.lock:
            i = self.ids.get(piece)
            if i is None:
                i = self.ids[piece] = len(self.ids)
                self.pieces[i] = piece.encode("utf-8")
            return i

    def tokenize(self, text: str) -> list[int]:
        out: list[int] = []
        for n, part in enumerate(text.split(CLOSE_TAG)):
            if n:
                out.append(THINK_END)
            out.extend(self.id(p) for p in split_pieces(part))
        return out

    def piece(self, token: int) -> bytes:
        return self.pieces[token]

    def is_eog(self, token: int) -> bool:
        return token == EOS


class ScriptedEngine:
    """Replays `reply` (text after the prompt's `<think>\\n`, or a function of the messages)."""

    def __init__(
        self,
        reply: str | Callable[[list[ChatMessage]], str],
        *,
        name: str = "scripted",
        thinks: bool = True,
        tokens_per_s: float | None = None,
        first_token_delay_s: float = 0.0,
        n_ctx: int = 8192,
    ) -> None:
        self._reply = reply
        self._rate = tokens_per_s
        self._delay = first_token_delay_s
        self._vocab = _Pieces()
        self.requests: list[list[ChatMessage]] = []
        self.info = ModelInfo(
            name=name,
            path="(scripted)",
            backend="CPU",
            n_gpu_layers=0,
            n_layers=0,
            n_ctx=n_ctx,
            n_ctx_train=n_ctx,
            thinks=thinks,
            think_end_token=THINK_END if thinks else None,
        )

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(split_pieces(m.content)) + 4 for m in messages)

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        self.requests.append(list(messages))
        text = self._reply(messages) if callable(self._reply) else self._reply
        thought, tag, answer = text.partition(CLOSE_TAG)
        if not self.info.thinks or not tag:
            control = None
        elif control is not None and control.params.budget == 0:
            thought, tag, answer, control = "", "", answer.lstrip("\n"), None
        tok = self._vocab.tokenize
        script = (tok(thought), [THINK_END] if tag else [], tok(answer))
        return self._run(script, params, cancel, self.count_tokens(messages), control)

    def stream_many(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        k: int,
        cancel: threading.Event | None = None,
        controls: Sequence[ThinkingControl | None] | None = None,
        ctx_tokens: int | None = None,
    ) -> Iterator[ManyEvent]:
        """k replies in turns, a token of each at a time, as a batch would give them."""
        t0 = time.perf_counter()
        seeds = seeds_for(params, k)
        streams = {
            i: self.stream(
                messages,
                replace(params, seed=seeds[i]),
                cancel,
                controls[i] if controls is not None else None,
            )
            for i in range(k)
        }
        stats = BatchStats(k=k, together="batched", prompt_evals=1)
        while streams:
            for i, events in list(streams.items()):
                ev = next(events, None)
                if ev is None:
                    del streams[i]
                    continue
                if isinstance(ev, Done):
                    stats.completion_tokens += ev.stats.completion_tokens
                    stats.prompt_tokens = ev.stats.prompt_tokens
                yield i, ev
        stats.total_s = time.perf_counter() - t0
        yield -1, BatchDone(stats)

    def _run(
        self,
        script: tuple[list[int], list[int], list[int]],
        params: SamplingParams,
        cancel: threading.Event | None,
        n_prompt: int,
        control: ThinkingControl | None,
    ) -> Iterator[Event]:
        t0 = time.perf_counter()
        check_fits(n_prompt, self.info.n_ctx)
        stats = Stats(prompt_tokens=n_prompt, evaluated_tokens=n_prompt, seed=params.seed or 0)
        yield Started(n_prompt)
        if self._delay:
            time.sleep(self._delay)
        interval = 1.0 / self._rate if self._rate else 0.0
        thought, tag, answer = script
        written = [*thought, *tag, *answer, EOS]
        pos = 0
        step = TokenStep(
            self._vocab.vocabulary,
            params.max_tokens,
            ignore_eos=params.ignore_eos,
            control=control,
            end_id=THINK_END,
        )
        t_first = 0.0
        while True:
            tok = written[pos] if pos < len(written) else EOS
            pos += 1
            if not t_first:
                t_first = time.perf_counter()
            elif interval:
                # Pace against the clock, not per sleep, so slow consumers do not slow the rate.
                ahead = t_first + step.n * interval - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            yield from step.take(tok)
            if step.finish is not None:
                break
            if cancel is not None and cancel.is_set():
                step.finish = "cancelled"
                break
            fed = step.feed
            if len(fed) > 1 or fed[0] != tok:  # r1chat wrote into the thinking
                if THINK_END in fed:
                    written, pos = [*answer, EOS], 0
                else:  # "Wait": the model thinks it over again
                    written, pos = [*thought, *tag, *answer, EOS], 0
        t_end = time.perf_counter()
        n = step.n
        stats.completion_tokens = n
        stats.finish_reason = step.finish or "stop"
        stats.ttft_s = (t_first or t_end) - t0
        if n > 1:
            stats.decode_tok_s = (n - 1) / max(t_end - t_first, 1e-9)
        stats.total_s = t_end - t0
        yield Done(stats)

    def close(self) -> None:
        pass
