"""Hand-over of a turn's stream from the decoding thread to the UI.

The worker thread appends under a lock; the UI drains it from a timer a few dozen times a second,
so the UI thread does work per frame, not per token, and the decoder never waits for a render.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from r1chat.sanitize import StreamSanitizer
from r1chat.session import TurnResult


@dataclass
class Chunk:
    """What arrived since the last drain, and the counters so far."""

    think: str
    answer: str
    think_deltas: int
    answer_deltas: int
    first_at: float | None
    answer_at: float | None
    prompt_tokens: int | None
    done: bool
    result: TurnResult | None
    error: BaseException | None


class TurnBuffer:
    """One turn's stream; written by one thread, drained by the UI. Model text is sanitised here."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._think: list[str] = []
        self._answer: list[str] = []
        self._clean = {"think": StreamSanitizer(), "answer": StreamSanitizer()}
        self._think_deltas = 0
        self._answer_deltas = 0
        self._first_at: float | None = None
        self._answer_at: float | None = None
        self._prompt_tokens: int | None = None
        self._done = False
        self._result: TurnResult | None = None
        self._error: BaseException | None = None

    def set_prompt_tokens(self, n: int) -> None:
        with self._lock:
            self._prompt_tokens = n

    def push(self, kind: str, text: str) -> None:
        text = self._clean[kind].feed(text)
        now = self._clock()
        with self._lock:
            if self._first_at is None:
                self._first_at = now
            if kind == "think":
                self._think.append(text)
                self._think_deltas += 1
            else:
                if self._answer_at is None:
                    self._answer_at = now
                self._answer.append(text)
                self._answer_deltas += 1

    def _flush_sanitizers(self) -> None:
        think, answer = self._clean["think"].close(), self._clean["answer"].close()
        with self._lock:
            if think:
                self._think.append(think)
            if answer:
                self._answer.append(answer)

    def finish(self, result: TurnResult) -> None:
        self._flush_sanitizers()
        with self._lock:
            self._result = result
            self._done = True

    def fail(self, error: BaseException) -> None:
        self._flush_sanitizers()
        with self._lock:
            self._error = error
            self._done = True

    @property
    def done(self) -> bool:
        with self._lock:
            return self._done

    @property
    def result(self) -> TurnResult | None:
        """The finished turn, once the decoding thread has handed it over."""
        with self._lock:
            return self._result

    def take(self) -> Chunk:
        with self._lock:
            think, self._think = "".join(self._think), []
            answer, self._answer = "".join(self._answer), []
            return Chunk(think, answer, self._think_deltas, self._answer_deltas, self._first_at,
                         self._answer_at, self._prompt_tokens, self._done, self._result,
                         self._error)

