from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from r1chat.sanitize import StreamSanitizer, sanitize


def test_csi_osc_and_c1_sequences_are_removed() -> None:
    assert sanitize("a\x1b[31mred\x1b[0m") == "ared"
    assert sanitize("x\x1b]0;title\x07y") == "xy"
    assert sanitize("x\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\") == "xlink"
    assert sanitize("\x9b2Jq\x9d52;c;aGk=\x07") == "q"


def test_text_and_markup_like_text_stay() -> None:
    assert sanitize("[bold red]x[/] 中文\ttab\nline") == "[bold red]x[/] 中文\ttab\nline"


def test_carriage_returns_cannot_overwrite_lines() -> None:
    assert sanitize("safe\rEVIL") == "safeEVIL"
    assert sanitize("a\r\nb") == "a\nb"


@given(st.text())
def test_no_control_characters_survive(text: str) -> None:
    out = sanitize(text)
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in out)


def test_stream_holds_a_split_escape_until_complete() -> None:
    s = StreamSanitizer()
    out = s.feed("title: \x1b]0;pw") + s.feed("ned\x07 after \x1b[3") + s.feed("1mred") + s.close()
    assert out == "title:  after red"


def test_stream_drops_an_escape_never_finished() -> None:
    s = StreamSanitizer()
    assert s.feed("a\x1b]0;never ends") == "a"
    assert s.close() == ""


@given(st.lists(st.sampled_from(["a", "\x1b", "]0;", "[31m", "\x07", "x", "\x1b\\", "中"])))
def test_stream_output_never_has_controls(pieces: list[str]) -> None:
    s = StreamSanitizer()
    out = "".join(s.feed(p) for p in pieces) + s.close()
    assert "\x1b" not in out and "\x07" not in out
