"""TUI test helpers: an engine that pauses mid-reply, a frozen clock, and waiting on the app."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from r1chat.engines.base import Event, Token
from r1chat.engines.scripted import ScriptedEngine
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ThinkingControl
from r1chat.sampling import SamplingParams

T = TypeVar("T")

# R1-like text: thinking, then a Markdown answer with a code block and a boxed result.
THINKING = (
    "The user asks for the sum of the first 10 positive integers.\n"
    "Gauss's trick: pair 1 with 10, 2 with 9, and so on: five pairs of 11.\n"
    "5 × 11 = 55. Let me double-check with the formula n(n+1)/2 = 10·11/2 = 55.\n"
)
ANSWER = (
    "## Sum of 1..10\n\n"
    "Pair the numbers from both ends:\n\n"
    "- 1 + 10 = 11\n- 2 + 9 = 11\n- … five pairs in all\n\n"
    "```python\nprint(sum(range(1, 11)))\n```\n\n"
    "So the answer is $\\boxed{55}$."
)
REPLY = f"{THINKING}</think>\n\n{ANSWER}"


class GatedEngine:
    """A ScriptedEngine that stops after `pause_after` tokens until `gate` is set.

    Freezes the app mid-thinking for assertions and snapshots; everything else is the real
    scripted stream.
    """

    def __init__(self, reply: str, pause_after: int, **kw: object) -> None:
        self.inner = ScriptedEngine(reply, **kw)  # type: ignore[arg-type]
        self.info = self.inner.info
        self.requests = self.inner.requests
        self.pause_after = pause_after
        self.gate = threading.Event()
        self.paused = threading.Event()

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.inner.count_tokens(messages)

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        n = 0
        for ev in self.inner.stream(messages, params, cancel, control):
            if not isinstance(ev, Token):
                yield ev
                continue
            n += 1
            if n - 1 == self.pause_after:
                self.paused.set()
                while not self.gate.wait(0.02):
                    if cancel is not None and cancel.is_set():
                        break
            yield ev

    def close(self) -> None:
        self.gate.set()


class FrozenClock:
    """A clock that moves only when told to, for stable titles and speeds."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def wait_until(cond: Callable[[], object], pilot: object, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)  # type: ignore[attr-defined]


class Events:
    """The app's lifecycle messages as they are handled, collected through
    `run_test(message_hook=events.hook)`: tests wait on what happened, not on time."""

    def __init__(self) -> None:
        self.seen: list[object] = []
        self._ids: set[int] = set()

    def hook(self, message: object) -> None:
        # A message that bubbles arrives at each widget on its way: keep it once.
        if id(message) not in self._ids:
            self._ids.add(id(message))
            self.seen.append(message)

    def of(self, kind: type[T]) -> list[T]:
        return [m for m in self.seen if isinstance(m, kind)]

    async def wait_for(self, kind: type[T], pilot: object, count: int = 1) -> T:
        await wait_until(lambda: len(self.of(kind)) >= count, pilot)
        return self.of(kind)[count - 1]
