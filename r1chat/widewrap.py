"""Line breaks for text written without spaces: Chinese and Japanese wrap between characters.

Rich (the answer, `ask`) and Textual (the thinking pane, the sidebar) both break lines only at
whitespace: a Chinese sentence is one "word" to them, so a line ends at the last space before it
and up to half the width stays empty ("剩下 2×(n−1)" alone, then the sentence on the next line).
Unicode's line-breaking rules (UAX #14) allow a break between any two ideographs, except that
closing punctuation never starts a line and opening punctuation never ends one (kinsoku).

Both libraries split text with one module-level function; `install` gives each a version whose
words are single wide characters (with the punctuation that must stay beside them) and, elsewhere,
what they were. Korean (Hangul) is left alone: it is written with spaces between words.
`tests/test_widewrap.py` fails if either library stops calling the function replaced here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Scripts written without spaces, as wide (two-cell) characters: CJK radicals, punctuation,
# kana, ideographs (and their extensions), compatibility ideographs, fullwidth forms.
_WIDE = (
    "\u2e80-\u2fdf\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3200-\u33ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff60\uffe0-\uffe6"
    "\U00020000-\U0003ffff"
)
# Kept with the character before them: never the first on a line.
_CLOSE = "、。，．：；！？）」』】〕〉》〙〗〟’”｠»…‥・ー々〻ゝゞヽヾ%"
# Kept with the character after them: never the last on a line.
_OPEN = "（「『【〔〈《〘〖〝‘“｟«"

_C, _O = re.escape(_CLOSE), re.escape(_OPEN)
# One unit that may not be broken: an ideograph, or a run of other non-space characters, with
# its opening punctuation before it and its closing punctuation after it.
_UNIT = rf"[{_O}]*(?:(?![{_O}{_C}])[{_WIDE}]|[^\s{_WIDE}]+)[{_C}]*|\S"

RICH_WORD = re.compile(rf"\s*(?:{_UNIT})\s*")
TEXTUAL_CHUNK = re.compile(rf"(?:{_UNIT})\s*|\s+")


def rich_words(text: str) -> Iterable[tuple[int, int, str]]:
    """`rich._wrap.words`, with a break allowed between wide characters."""
    position = 0
    match = RICH_WORD.match(text, position)
    while match is not None:
        start, end = match.span()
        yield start, end, match.group(0)
        match = RICH_WORD.match(text, end)


def textual_chunks(text: str) -> Iterable[tuple[int, int, str]]:
    """`textual._wrap.chunks`, with a break allowed between wide characters."""
    end = 0
    while (match := TEXTUAL_CHUNK.match(text, end)) is not None:
        start, end = match.span()
        yield start, end, match.group(0)


def install(*, tui: bool = False) -> None:
    """Give Rich, and Textual when asked (the app), the breaks above (idempotent)."""
    import rich._wrap

    rich._wrap.words = rich_words
    if tui:
        import textual._wrap

        textual._wrap.chunks = textual_chunks
