"""Hand-over of a turn's text from the decoding thread to the UI.

The worker thread appends under a lock; the UI drains it a few dozen times a second at most, so
the UI thread does work per frame, not per token, and the decoder never waits for a render. The
turn's life (started, finished, failed) travels as messages (r1chat.tui.messages), not here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from r1chat.sanitize import StreamSanitizer
from r1chat.turn import Delta


@dataclass
class Chunk:
    """The text that arrived since the last drain, and the counts so far."""

    think: str
    answer: str
    think_tokens: int
    answer_tokens: int
    forced_tokens: int
    first_at: float | None  # clock time of the first text
    answer_at: float | None  # clock time of the answer's first text
    held: str = ""  # text not known yet to be thinking or answer (r1chat.turn.Held)
    decided: bool = False  # the held text was decided: it comes again as think or answer


class TurnBuffer:
    """One turn's text; written by one thread, drained by the UI. Model text is sanitised here,
    where it is about to be displayed (the history keeps it as the model wrote it)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._think: list[str] = []
        self._answer: list[str] = []
        self._clean = {"think": StreamSanitizer(), "answer": StreamSanitizer()}
        self._think_tokens = 0
        self._answer_tokens = 0
        self._forced_tokens = 0
        self._first_at: float | None = None
        self._answer_at: float | None = None
        self._held: list[str] = []
        self._held_clean = StreamSanitizer()
        self._decided = False

    def hold(self, text: str) -> None:
        """Text whose kind is not known yet (see r1chat.turn.Held)."""
        text = self._held_clean.feed(text)
        now = self._clock()
        with self._lock:
            if self._first_at is None:
                self._first_at = now
            self._held.append(text)

    def decide(self) -> None:
        """The held text is decided; its Deltas follow."""
        with self._lock:
            self._held = []
            self._decided = True

    def push(self, delta: Delta) -> None:
        text = self._clean[delta.kind].feed(delta.text)
        now = self._clock()
        with self._lock:
            self._think_tokens = delta.think_tokens
            self._answer_tokens = delta.answer_tokens
            self._forced_tokens = delta.forced_tokens
            if self._first_at is None:
                self._first_at = now
            if delta.kind == "think":
                self._think.append(text)
            else:
                if self._answer_at is None:
                    self._answer_at = now
                self._answer.append(text)

    def close(self) -> None:
        """The stream is over: let out what the sanitisers held back (an unfinished escape
        sequence is dropped)."""
        think, answer = self._clean["think"].close(), self._clean["answer"].close()
        with self._lock:
            if think:
                self._think.append(think)
            if answer:
                self._answer.append(answer)

    def take(self) -> Chunk:
        with self._lock:
            think, self._think = "".join(self._think), []
            answer, self._answer = "".join(self._answer), []
            held, self._held = "".join(self._held), []
            decided, self._decided = self._decided, False
            return Chunk(
                think,
                answer,
                self._think_tokens,
                self._answer_tokens,
                self._forced_tokens,
                self._first_at,
                self._answer_at,
                held,
                decided,
            )
