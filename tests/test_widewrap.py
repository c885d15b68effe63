"""Chinese wraps between characters in Rich and in Textual; English wraps as it always did."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from itertools import pairwise

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from r1chat import widewrap

widewrap.install(tui=True)

CHINESE = (
    "每一种铺法的开头只有两种可能：一块竖着的骨牌，剩下 2×(n−1) 的棋盘；或者两块横着的骨牌，"
    "剩下 2×(n−2) 的棋盘。「这样」一直递推下去，直到棋盘铺满为止，总数就是斐波那契数。"
)
ENGLISH = (
    "Each tiling starts with either a vertical domino or two horizontal ones, so f(n) = f(n-1)."
)
CLOSING = "、。，：；！？）」』】"
OPENING = "（「『【"


def rich_lines(text: str, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO())
    return [line.plain for line in Text(text).wrap(console, width)]


def textual_lines(text: str, width: int) -> list[str]:
    from textual._wrap import compute_wrap_offsets

    cuts = [0, *compute_wrap_offsets(text, width, 4), len(text)]
    return [text[a:b] for a, b in pairwise(cuts)]


def check_chinese(lines: list[str], width: int) -> None:
    assert "".join(lines).replace(" ", "") == CHINESE.replace(" ", "")
    for line in lines:
        assert cell_len(line.rstrip()) <= width, line
        # Kinsoku: closing punctuation never starts a line, opening never ends one.
        assert line[:1] not in CLOSING, lines
        assert line.rstrip()[-1:] not in OPENING, lines
    # A line ends at a space only when the next word does not fit: every line but the last
    # is filled to within one wide character, a Latin run or the punctuation kept with it.
    for line in lines[:-1]:
        assert cell_len(line.rstrip()) >= width - 8, lines


def test_rich_breaks_chinese_between_characters() -> None:
    for width in (20, 33, 40, 57):
        check_chinese(rich_lines(CHINESE, width), width)
    # Before: "…剩下 2×(n−1)" then a break, the rest of the line left empty.
    assert rich_lines(CHINESE, 40)[1] == "骨牌，剩下 2×(n−1) 的棋盘；或者两块横着"


def test_textual_breaks_chinese_between_characters() -> None:
    for width in (20, 33, 40, 57):
        check_chinese(textual_lines(CHINESE, width), width)


def library_words(pattern: str) -> Callable[[str], Iterable[tuple[int, int, str]]]:
    """The libraries' own splitters: a word is the whitespace-separated run."""

    def words(text: str) -> Iterable[tuple[int, int, str]]:
        for m in re.finditer(pattern, text):
            yield m.start(), m.end(), m.group(0)

    return words


def test_english_wraps_at_spaces_as_before() -> None:
    import rich._wrap
    import textual._wrap

    ours = rich_lines(ENGLISH, 30), textual_lines(ENGLISH, 30)
    assert ours[0][0] == "Each tiling starts with either"
    # The same lines as the libraries' own splitters give (their patterns, as in their source).
    try:
        rich._wrap.words = library_words(r"\s*\S+\s*")  # type: ignore[assignment]
        textual._wrap.chunks = library_words(r"\S+\s*|\s+")  # type: ignore[assignment]
        theirs = rich_lines(ENGLISH, 30), textual_lines(ENGLISH, 30)
    finally:
        widewrap.install(tui=True)
    assert ours == theirs


def test_a_run_of_closing_punctuation_at_the_start_still_wraps() -> None:
    text = "」」」" + "字" * 30
    for lines in (rich_lines(text, 10), textual_lines(text, 10)):
        assert "".join(lines) == text
        assert all(cell_len(line) <= 10 for line in lines)


def test_korean_keeps_its_spaces_as_the_only_breaks() -> None:
    text = "한국어는 단어 사이에 띄어쓰기를 합니다 그래서 단어 안에서 줄을 바꾸지 않습니다"
    for line in rich_lines(text, 20):
        assert " " not in line.strip() or all(len(w) > 1 for w in line.split())
        assert cell_len(line.rstrip()) <= 20
    assert rich_lines(text, 20)[0].rstrip() == "한국어는 단어 사이에"
