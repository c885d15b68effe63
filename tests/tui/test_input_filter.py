"""The filter in front of Textual's input parser: escape characters inside a bracketed paste
are dropped, an Escape followed by a control key in the same read stays an Escape, and all
else passes as it came, however the input is cut into reads."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from textual import events

from r1chat.tui.input_filter import (
    ESCAPE_KEY,
    PASTE_END,
    PASTE_START,
    FilteringParser,
    InputFilter,
)

PASTE = f"{PASTE_START}pasted \x1bc1 text \x1b[31m in order{PASTE_END}"
STREAM = f"ab\x1b[A{PASTE}\x1bq\x1b"


def run(chunks: list[str]) -> str:
    f = InputFilter()
    return "".join(f(c) for c in chunks)


def keys(data: str) -> list[events.Event]:
    parser = FilteringParser()
    return [*parser.feed(data), *parser.tick()]


def test_escapes_inside_a_paste_are_dropped_and_outside_kept() -> None:
    assert run([STREAM]) == (
        f"ab\x1b[A{PASTE_START}pasted c1 text [31m in order{PASTE_END}\x1bq\x1b"
    )


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_cut_into_reads_gives_the_same_paste(cuts: list[int]) -> None:
    points = sorted({0, len(STREAM), *cuts})
    chunks = [STREAM[a:b] for a, b in pairwise(points)]
    assert run(chunks) == run([STREAM])


def test_a_lone_escape_key_is_not_held_back() -> None:
    f = InputFilter()
    assert f("\x1b") == "\x1b"
    assert f("x") == "x"


def test_the_parser_sees_one_paste_with_the_text_in_order() -> None:
    got = keys(PASTE)
    assert [e.text for e in got if isinstance(e, events.Paste)] == ["pasted c1 text [31m in order"]
    assert not [e for e in got if isinstance(e, events.Key)]


def test_escape_then_a_control_key_in_one_read_are_two_keys() -> None:
    assert run(["\x1b\x13\x1b\x0e"]) == f"{ESCAPE_KEY}\x13{ESCAPE_KEY}\x0e"
    got = [e.key for e in keys("\x1b\x13\x1b\x1b\x0eq") if isinstance(e, events.Key)]
    assert got == ["escape", "ctrl+s", "escape", "escape", "ctrl+n", "q"]


def test_alt_keys_and_sequences_are_untouched() -> None:
    for data in ("\x1bx", "\x1b[A", "\x1bOP", "\x1b\r", "\x1b\x7f"):
        assert run([data]) == data
