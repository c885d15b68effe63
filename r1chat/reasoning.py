"""Split a reasoning model's streamed text into its thinking and its answer.

Pure functions of text, no I/O: the engine, `ask`, the TUI and history all use the same splitter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["think", "answer"]
Part = tuple[Kind, str]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def _partial_tag_len(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Incremental `<think>…</think>` splitter; any chunking of a stream gives the same result.

    `in_think=True` when the prompt already ended with `<think>\\n`, so the stream starts inside the
    thinking. Only text that could still be the start of a tag is held back between chunks.
    """

    def __init__(self, in_think: bool = False) -> None:
        self._kind: Kind = "think" if in_think else "answer"
        self._buf = ""
        # The model may emit its own `<think>` first; it is consumed, never shown.
        self._at_start = True
        # Whitespace right after a tag (including the prompt's `<think>\n`) is dropped.
        self._skip_ws = in_think

    @property
    def in_think(self) -> bool:
        return self._kind == "think"

    def feed(self, chunk: str) -> list[Part]:
        self._buf += chunk
        return self._drain(final=False)

    def close(self) -> list[Part]:
        """Flush what was held back; call once when the stream ends."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[Part]:
        out: list[Part] = []
        while self._buf:
            if self._skip_ws:
                stripped = self._buf.lstrip()
                if not stripped:
                    self._buf = ""
                    break
                self._buf = stripped
                self._skip_ws = False
            if self._at_start:
                # Blank lines may come first (GLM-4.5 writes "\n<think>").
                lead = self._buf.lstrip()
                if lead.startswith(OPEN_TAG):
                    self._buf = lead[len(OPEN_TAG) :]
                    self._kind = "think"
                    self._at_start = False
                    self._skip_ws = True
                    continue
                if OPEN_TAG.startswith(lead) and not final:
                    break
                self._at_start = False
            if self._kind == "answer":
                out.append(("answer", self._buf))
                self._buf = ""
                break
            i = self._buf.find(CLOSE_TAG)
            if i >= 0:
                if i:
                    out.append(("think", self._buf[:i]))
                self._buf = self._buf[i + len(CLOSE_TAG) :]
                self._kind = "answer"
                self._skip_ws = True
                continue
            hold = 0 if final else _partial_tag_len(self._buf, CLOSE_TAG)
            emit = self._buf[: len(self._buf) - hold]
            if emit:
                out.append(("think", emit))
            self._buf = self._buf[len(emit) :]
            break
        return out


def split_reasoning(text: str, in_think: bool = False) -> tuple[str, str]:
    """The (thinking, answer) of a whole reply."""
    s = ThinkSplitter(in_think=in_think)
    parts = s.feed(text) + s.close()
    think = "".join(t for k, t in parts if k == "think")
    answer = "".join(t for k, t in parts if k == "answer")
    return think, answer


_BOXED = re.compile(r"\\boxed\s*\{")


def extract_boxed(answer: str) -> str | None:
    """Content of the last complete `\\boxed{...}` in `answer` (braces may nest), or None."""
    found: str | None = None
    for m in _BOXED.finditer(answer):
        close = closing_brace(answer, m.end(), len(answer))
        if close is not None:
            found = answer[m.end() : close].strip()
    return found


def closing_brace(text: str, start: int, stop: int) -> int | None:
    """Where the brace opened just before `start` closes, before `stop`; escaped braces (`\\{`)
    do not count."""
    depth = 1
    i = start
    while i < stop:
        c = text[i]
        if c == "\\" and i + 1 < stop and text[i + 1] in "{}":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


# --- steering the thinking ---------------------------------------------------------------------

DEFAULT_BUDGET_MESSAGE = "Time is up, so I stop thinking here and give my answer now."
DEFAULT_WAIT = "Wait"
LOOP_ACTIONS = ("answer", "warn", "stop")
Ended = Literal["model", "budget", "loop", "user"]


@dataclass(frozen=True)
class ReasoningParams:
    """How the thinking is steered; the defaults leave it alone."""

    budget: int | None = None  # end the thinking after this many tokens (0: no thinking at all)
    min_tokens: int | None = None  # until this many, a close of the thinking becomes `wait`
    budget_message: str = DEFAULT_BUDGET_MESSAGE
    wait: str = DEFAULT_WAIT
    on_loop: str = "answer"  # answer | warn | stop
    loop_span: int = 32
    loop_repeats: int = 3
    loop_window: int = 4096

    @property
    def closing(self) -> str:
        """What r1chat writes to end the thinking itself: the message, the tag, a blank line."""
        return f"\n\n{self.budget_message}\n{CLOSE_TAG}\n\n"

    def steers(self) -> bool:
        return self.budget is not None or self.min_tokens is not None or self.on_loop != "warn"


class LoopGuard:
    """Notices thinking that repeats itself: the same span of `span` tokens seen `repeats` times,
    no two occurrences overlapping, within the last `window` tokens.

    Real reasoning repeats short phrases ("Wait, let me check"), never 32 tokens word for word
    three times; a model caught in a loop does exactly that, whatever the cycle's length up to
    about window / repeats. Cost per token: a rolling hash update and a dict lookup.
    """

    _MOD = (1 << 61) - 1
    _BASE = 1_000_003

    def __init__(self, span: int = 32, repeats: int = 3, window: int = 4096) -> None:
        self.span = span
        self.repeats = repeats
        self.window = window
        self._tokens: list[int] = []
        self._hash = 0
        self._drop = pow(self._BASE, span - 1, self._MOD)  # weight of the token leaving
        self._seen: dict[int, list[int]] = {}  # span hash -> start positions, oldest first

    def feed(self, token: int) -> bool:
        """Add a token; True when the thinking has just been found looping."""
        tokens = self._tokens
        tokens.append(token)
        n = len(tokens)
        h = self._hash
        if n > self.span:
            h = (h - (tokens[n - 1 - self.span] + 1) * self._drop) % self._MOD
        h = (h * self._BASE + token + 1) % self._MOD
        self._hash = h
        if n < self.span:
            return False
        start = n - self.span
        starts = self._seen.get(h)
        if starts is None:
            self._seen[h] = [start]
            return False
        # Forget occurrences that left the window; keep the rest non-overlapping.
        while starts and starts[0] < start - self.window:
            starts.pop(0)
        if starts and start - starts[-1] < self.span:
            return False
        here = tokens[start:]
        if starts and tokens[starts[-1] : starts[-1] + self.span] != here:
            return False  # a hash collision, not a repeat
        starts.append(start)
        return len(starts) >= self.repeats


@dataclass(frozen=True)
class Inject:
    """Feed `text` into the context as if the model had written it; `drop` the sampled token
    first (a close of the thinking that came too early); `apart`: on a paragraph of its own
    (think-min's "Wait" starts a new thought, not the end of the last word)."""

    text: str
    drop: bool = False
    apart: bool = False

    def after(self, before: str) -> str:
        """The text to write after `before` (the last text shown)."""
        if not self.apart or before.endswith("\n\n"):
            return self.text
        return ("\n" if before.endswith("\n") else "\n\n") + self.text


@dataclass(frozen=True)
class StopTurn:
    """End the reply here."""


Steer = Inject | StopTurn


class ThinkingControl:
    """One turn's thinking, steered token by token: the engine reports each thinking token and
    asks what to do when the model wants to close the thinking. Thread-safe for `answer_now`,
    which the UI calls while the engine runs."""

    def __init__(self, params: ReasoningParams) -> None:
        self.params = params
        self.tokens = 0  # thinking tokens the model sampled (not what r1chat injected)
        self.ended: Ended | None = None
        self.looping = False  # the guard found a loop (on_loop = "warn" goes on regardless)
        # A server that caps the thinking itself (its own budget field) gets this many tokens
        # past the budget before r1chat cuts it: a backstop for a server that ignores the field.
        self.budget_slack = 0
        # The server ended the thinking (its budget, its control endpoint), not r1chat.
        self.by_server = False
        self._user = False
        self._guard = LoopGuard(params.loop_span, params.loop_repeats, params.loop_window)

    def answer_now(self) -> None:
        """The user asked for the answer: the thinking ends at the next token."""
        self._user = True

    @property
    def user_asked(self) -> bool:
        return self._user

    def token(self, key: int) -> Steer | None:
        """A thinking token was sampled (`key`: its id, or a stand-in for engines without ids)."""
        self.tokens += 1
        p = self.params
        if self._user:
            return self._end("user")
        if p.budget is not None and self.tokens >= p.budget + self.budget_slack:
            return self._end("budget")
        if not self.looping and self._guard.feed(key):
            self.looping = True
            if p.on_loop == "answer":
                return self._end("loop")
            if p.on_loop == "stop":
                self.ended = "loop"
                return StopTurn()
        return None

    def close_requested(self) -> Steer | None:
        """The model sampled the end of the thinking: allow it (None) or make it think on."""
        if self.params.min_tokens is not None and self.tokens < self.params.min_tokens:
            return Inject(self.params.wait, drop=True, apart=True)
        self.ended = "model"
        return None

    def _end(self, how: Ended) -> Inject:
        self.ended = how
        return Inject(self.params.closing)
