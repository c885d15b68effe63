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
    """What the filter passes on for these reads, a lone ESC it still holds at the end included
    (the parser's next tick makes it the Escape key)."""
    f = InputFilter()
    out = "".join(f(c) for c in chunks)
    return out + "\x1b" if f.held_escape else out


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


def test_a_lone_escape_key_waits_for_the_next_read_or_tick_at_most() -> None:
    f = InputFilter()
    assert f("\x1b") == "" and f.held_escape
    assert f("x") == "\x1bx"  # Alt+x, as it would have been in one read
    parser = FilteringParser()
    assert list(parser.feed("\x1b")) == []
    assert [e.key for e in parser.tick() if isinstance(e, events.Key)] == ["escape"]


def test_escape_ending_one_read_and_a_control_key_starting_the_next_are_two_keys() -> None:
    """tmux send-keys Escape, then C-s: Textual's parser made "^" and Ctrl+S of them."""
    parser = FilteringParser()
    got = [*parser.feed("\x1b"), *parser.feed("\x13\x1b[Bdy"), *parser.tick()]
    assert [e.key for e in got if isinstance(e, events.Key)] == [
        "escape",
        "ctrl+s",
        "down",
        "d",
        "y",
    ]


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
