"""Make untrusted model text safe for a terminal: no escape sequences, no control characters."""

from __future__ import annotations

import re

# OSC/DCS/APC/PM/SOS strings run to BEL or ST; an unterminated one is dropped to the end of the
# text. CSI runs to its final byte. Any other ESC-prefixed pair, C1 controls (8-bit CSI/OSC among
# them) and C0 controls other than tab and newline go too.
_ESCAPES = re.compile(
    r"""
    \x1b[\]P_^X][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?   # OSC, DCS, APC, PM, SOS (7-bit)
  | [\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?   # the same, 8-bit
  | \x1b\[[0-?]*[ -/]*[@-~]?                           # CSI (7-bit)
  | \x9b[0-?]*[ -/]*[@-~]?                             # CSI (8-bit)
  | \x1b[ -/]*[0-~]?                                   # other escapes (ESC c, ESC ( B, ...)
  | [\x00-\x08\x0b-\x1f\x7f-\x9f]                      # remaining C0/C1 controls, DEL
    """,
    re.VERBOSE,
)


def sanitize(text: str) -> str:
    """`text` without terminal control sequences; newlines and tabs stay, CR-LF becomes LF."""
    if not text:
        return text
    text = text.replace("\r\n", "\n")
    return _ESCAPES.sub("", text)


_INTRODUCER = re.compile(r"[\x1b\x90\x98\x9b\x9d\x9e\x9f]")
_COMPLETE = re.compile(
    r"""
    \x1b[\]P_^X][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)
  | [\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)
  | \x1b\[[0-?]*[ -/]*[@-~]
  | \x9b[0-?]*[ -/]*[@-~]
  | \x1b(?![\[\]P_^X])[ -/]*[0-~]
    """,
    re.VERBOSE,
)
# An escape sequence still open after this many characters is dropped, not waited for.
_MAX_HELD = 1024


class StreamSanitizer:
    """`sanitize` for text that arrives in pieces: an escape sequence split across pieces is held
    back until it is complete, so neither it nor its payload (an OSC title, say) shows."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        pos = 0
        while (m := _INTRODUCER.search(text, pos)) is not None:
            done = _COMPLETE.match(text, m.start())
            if done is not None:
                pos = done.end()
                continue
            if len(text) - m.start() < _MAX_HELD:
                self._held = text[m.start() :]
                text = text[: m.start()]
            break
        return sanitize(text)

    def close(self) -> str:
        """Whatever was held back, sanitised (an unfinished sequence is dropped)."""
        held, self._held = self._held, ""
        return sanitize(held)


# json.dumps(ensure_ascii=False) escapes C0 controls but leaves DEL and C1 (8-bit CSI among them).
_JSON_RAW_CONTROLS = re.compile(r"[\x7f-\x9f]")


def safe_json(value: object, indent: int | None = 2) -> str:
    """JSON text with every control character escaped, so it is safe on a terminal."""
    import json

    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
