"""Split a reasoning model's streamed text into its thinking and its answer.

Pure functions of text, no I/O: the engine, `ask`, the TUI and history all use the same splitter.
"""

from __future__ import annotations

import re
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
                if self._buf.startswith(OPEN_TAG):
                    self._buf = self._buf[len(OPEN_TAG) :]
                    self._kind = "think"
                    self._at_start = False
                    self._skip_ws = True
                    continue
                if OPEN_TAG.startswith(self._buf) and not final:
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
        depth = 1
        i = m.end()
        while i < len(answer):
            c = answer[i]
            if c == "\\" and i + 1 < len(answer) and answer[i + 1] in "{}":
                i += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    found = answer[m.end() : i].strip()
                    break
            i += 1
    return found
