"""An engine that replays scripted text: for UI tests, demos and the TUI benchmark.

It implements the same `Engine` protocol as LlamaEngine, so the UI cannot tell them apart.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

from r1chat.engine import Done, Event, ModelInfo, Started, Stats, Token, check_fits
from r1chat.prompts import ChatMessage
from r1chat.reasoning import CLOSE_TAG, Inject, ThinkingControl
from r1chat.sampling import SamplingParams

_PIECES = re.compile(r"\s*\S{1,4}|\s+")


def split_pieces(text: str) -> list[str]:
    """Token-sized pieces of `text` (about 4 characters each), concatenating back to `text`."""
    return _PIECES.findall(text)


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
        # The closing tag is one piece, as it is one token in the R1 vocabulary.
        script = (split_pieces(thought), [tag] if tag else [], split_pieces(answer))
        return self._run(script, params, cancel, self.count_tokens(messages), control)

    def _run(
        self,
        script: tuple[list[str], list[str], list[str]],
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
        finish = "stop"
        n = 0
        t_first = 0.0
        thought, tag, answer = script
        queue = [*thought, *tag, *answer]
        thinking = control is not None
        i = 0
        while i < len(queue):
            piece = queue[i]
            i += 1
            if n >= params.max_tokens:
                finish = "length"
                break
            n += 1
            if n == 1:
                t_first = time.perf_counter()
            elif interval:
                # Pace against the clock, not per sleep, so slow consumers do not slow the rate.
                ahead = t_first + (n - 1) * interval - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            if thinking:
                assert control is not None
                steer = control.close_requested() if piece == CLOSE_TAG else control.token(n)
                thinking = not (piece == CLOSE_TAG and steer is None)  # the model closed it
                if isinstance(steer, Inject):
                    # What the model would write after the injected text: the scripted answer.
                    forced = split_pieces(steer.text)
                    queue = [*([] if steer.drop else [piece]), *forced, *answer]
                    thinking = CLOSE_TAG not in steer.text
                    i = 0
                    n -= 1
                    continue
                if steer is not None:
                    finish = "cancelled"
                    break
            yield Token(n, piece)
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                break
        t_end = time.perf_counter()
        stats.completion_tokens = n
        stats.finish_reason = finish  # type: ignore[assignment]
        stats.ttft_s = (t_first or t_end) - t0
        if n > 1:
            stats.decode_tok_s = (n - 1) / max(t_end - t_first, 1e-9)
        stats.total_s = t_end - t0
        yield Done(stats)

    def close(self) -> None:
        pass
