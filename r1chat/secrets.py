"""An API key kept out of everything r1chat shows or saves.

Servers echo what they were sent: in error messages (cut to a length, so a key near the cut comes
back in part), in model ids, even in reply text. A key read from a file with Windows line endings
ends in CR, which no HTTP header may carry. So a key is checked and stripped once, where it is
read, and every text that came from a server passes `Secret.mask` (whole texts) or a
`StreamMask` (text arriving in pieces) before it is cut, shown, saved or logged.
"""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

from r1chat.errors import R1ChatError

MASK = "***"
# A key shorter than this is masked only where it stands alone: masking two letters everywhere
# would garble every message, and no real key is that short.
MIN_MASKED = 4
# The end of a stream that is the first characters of a key, this long or more, is masked too.
MIN_PARTIAL = 8


class Secret:
    """An API key and every form in which it may come back."""

    def __init__(self, value: str) -> None:
        self.value = value
        stripped = value.strip()
        forms = {
            value,
            stripped,
            " ".join(value.split()),  # a message with its whitespace collapsed
            quote(stripped, safe=""),
            quote_plus(stripped),
            json.dumps(stripped)[1:-1],  # inside a JSON string
            f"Bearer {stripped}",
        }
        self.forms = sorted((f for f in forms if len(f) >= MIN_MASKED), key=len, reverse=True)
        self.firsts = frozenset(f[0] for f in self.forms)

    def __repr__(self) -> str:
        return "Secret(***)"

    def mask(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def stream(self) -> StreamMask:
        return StreamMask(self)


class StreamMask:
    """`Secret.mask` for text in pieces: a key split across pieces is held back until the next
    piece says whether it is one, so no piece shows part of it."""

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._secret.mask(self._held + text)
        keep = self._open_prefix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def close(self) -> str:
        """What was held back: masked when it is the start of a key long enough to matter."""
        held, self._held = self._held, ""
        if len(held) >= MIN_PARTIAL and any(f.startswith(held) for f in self._secret.forms):
            return MASK
        return held

    def _open_prefix(self, text: str) -> int:
        """The length of the longest end of `text` that begins a form of the key."""
        forms = self._secret.forms
        if not forms:
            return 0
        firsts = self._secret.firsts
        for i in range(max(0, len(text) - len(forms[0]) + 1), len(text)):
            # Most positions fail on their first character: a token costs a few comparisons.
            if text[i] in firsts and any(f.startswith(text[i:]) for f in forms):
                return len(text) - i
        return 0


def read_key(raw: str | None, source: str) -> tuple[Secret | None, str | None]:
    """The key from `raw` (an environment variable's value) and a one-line note when it had to
    be stripped; a key no HTTP header can carry is an error that never shows the key."""
    if raw is None or not raw.strip():
        return None, None
    stripped = raw.strip()
    message = None
    if stripped != raw:
        message = (
            f"the API key in {source} had spaces or line endings around it (a file with Windows"
            " line endings?); they were removed"
        )
    if not stripped.isascii() or any(not c.isprintable() for c in stripped):
        raise R1ChatError(
            f"the API key in {source} holds characters an HTTP header cannot carry"
            " (non-ASCII letters or control characters); check how it was set",
            2,
        )
    return Secret(stripped), message
