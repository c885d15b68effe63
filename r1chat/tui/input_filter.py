"""Terminal input put right before Textual's parser reads it: pastes and Escape in bursts.

Two things Textual's input parser (8.2.8) gets wrong, both seen when keys arrive in one read
(a paste tool, tmux send-keys, a fast typist):

- An ESC inside a bracketed paste is read as the start of an escape sequence: the characters
  after it left the paste and arrived as key presses ahead of it ("pasted \\x1bc1 text" was
  typed as "c1 text" + "pasted "). Pasted text has no business carrying escape sequences (they
  are dropped from model text too), so ESC characters inside a paste are removed; only the
  sequence that ends the paste keeps its ESC.
- Escape followed in the same read by a control key (Ctrl+S, Ctrl+N, another Escape) is read
  as Alt+that key, and the Escape is lost: "Esc, Ctrl+N, question, Enter" did not stop the
  reply, and the question merged with the next. Such an ESC is sent on as the Escape key's
  unambiguous kitty-protocol form, CSI 27 u. ESC before a printable key (Alt+x), a sequence
  introducer ("[", "O") or Enter, Tab and Backspace (Alt+Enter and friends) is left alone.
- Keys typed before the app took the terminal (r1chat.tui.typeahead): a line feed among them is
  the Enter it was in the terminal's cooked mode, not Ctrl+J.
- The same when the Escape ends one read and the control key starts the next (tmux send-keys
  Escape, then C-s): the parser read ESC + Ctrl+S across reads as "^" and Ctrl+S. A read that
  ends in a lone ESC keeps it until the next read says what it is, or until the parser's next
  tick (at most 0.1 s later), when it is the Escape key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual._xterm_parser import XTermParser

ESC = "\x1b"
ESCAPE_KEY = "\x1b[27u"
PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
KEEP_AFTER_ESC = "\t\n\r\x7f"


def _control(ch: str) -> bool:
    return (ch < " " and ch not in KEEP_AFTER_ESC) or ch == ESC


# Bytes typed before the app owned the terminal, still to be read (set by `install`).
TYPED_AHEAD = 0


class InputFilter:
    """Streaming: markers split across reads are recognised; outside a paste only a lone ESC at
    the end of a read is held back, until the next read or tick."""

    def __init__(self, typed_ahead: int = 0) -> None:
        self.typed_ahead = typed_ahead  # bytes still to come that were typed in cooked mode
        self.in_paste = False
        self._tail = ""  # the last characters outside a paste, to spot PASTE_START
        self._held = ""  # inside a paste: what may yet be the start of PASTE_END
        self.held_escape = False  # a read ended in a lone ESC: what it is comes next

    def __call__(self, data: str) -> str:
        if self.typed_ahead > 0:
            data = self._uncook(data)
        if self.held_escape:
            self.held_escape = False
            data = ESC + data
        if not self.in_paste and ESC not in data and not self._tail:
            return data  # the common case: typed keys
        out: list[str] = []
        for i, ch in enumerate(data):
            if not self.in_paste:
                nxt = data[i + 1] if i + 1 < len(data) else ""
                out.append(ESCAPE_KEY if ch == ESC and nxt and _control(nxt) else ch)
                self._tail = (self._tail + ch)[-len(PASTE_START) :]
                if self._tail == PASTE_START:
                    self.in_paste, self._tail = True, ""
                elif ESC not in self._tail:
                    self._tail = ""
                continue
            self._held += ch
            while self._held and not PASTE_END.startswith(self._held):
                first, self._held = self._held[0], self._held[1:]
                if first != ESC:
                    out.append(first)
            if self._held == PASTE_END:
                out.append(PASTE_END)
                self.in_paste, self._held = False, ""
        if out and out[-1] == ESC and not self.in_paste:
            out.pop()
            self.held_escape = True
            self._tail = self._tail[:-1]  # it goes through again with the next read
        return "".join(out)

    def _uncook(self, data: str) -> str:
        """In what was typed ahead, a line feed is Enter."""
        out = []
        for ch in data:
            if self.typed_ahead > 0:
                self.typed_ahead -= len(ch.encode("utf-8", "surrogatepass"))
                out.append("\r" if ch == "\n" else ch)
            else:
                out.append(ch)
        return "".join(out)


class FilteringParser(XTermParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._filter = InputFilter(TYPED_AHEAD)

    def feed(self, data: str) -> Iterable[Any]:
        data = self._filter(data)
        # An empty feed is the end of input to Textual's parser: a held ESC is no such thing.
        return super().feed(data) if data else ()

    def tick(self) -> Iterable[Any]:
        if self._filter.held_escape:  # nothing followed it: the Escape key
            self._filter.held_escape = False
            yield from super().feed(ESCAPE_KEY)
        yield from super().tick()


def install(typed_ahead: int = 0) -> None:
    """Use the filtering parser in Textual's terminal driver (it looks the parser up by name);
    `typed_ahead`: bytes typed before the app took the terminal (r1chat.tui.typeahead)."""
    global TYPED_AHEAD
    from textual.drivers import linux_driver

    TYPED_AHEAD = typed_ahead
    linux_driver.XTermParser = FilteringParser  # type: ignore[misc]
