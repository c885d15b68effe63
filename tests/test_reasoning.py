"""The reasoning splitter and \\boxed extraction: a contract other code relies on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from r1chat.reasoning import ThinkSplitter, extract_boxed, split_reasoning


def run(chunks: list[str], in_think: bool) -> tuple[str, str]:
    s = ThinkSplitter(in_think=in_think)
    parts = []
    for c in chunks:
        parts += s.feed(c)
    parts += s.close()
    assert all(text for _, text in parts), "no empty parts"
    think = "".join(t for k, t in parts if k == "think")
    answer = "".join(t for k, t in parts if k == "answer")
    return think, answer


def test_typical_r1_stream_after_forced_think() -> None:
    text = "Let me add.\n2+2=4\n</think>\n\nThe answer is **4**."
    assert run([text], True) == ("Let me add.\n2+2=4\n", "The answer is **4**.")


def test_tag_split_across_chunks_is_recognised() -> None:
    assert run(["abc</th", "ink>\n\nxyz"], True) == ("abc", "xyz")
    assert run(["abc<", "/", "t", "h", "i", "n", "k", ">", "xyz"], True) == ("abc", "xyz")


def test_only_a_possible_tag_prefix_is_held_back() -> None:
    s = ThinkSplitter(in_think=True)
    assert s.feed("hello </th") == [("think", "hello ")]
    assert s.feed("orn") == [("think", "</thorn")]
    s2 = ThinkSplitter(in_think=True)
    assert s2.feed("a<b") == [("think", "a<b")]


def test_model_emitted_think_at_start_is_consumed() -> None:
    assert run(["<think>\nhmm\n</think>\n\nok"], False) == ("hmm\n", "ok")
    assert run(["<th", "ink>", "\nhmm</think>ok"], True) == ("hmm", "ok")


def test_no_tag_and_not_in_think_is_all_answer() -> None:
    assert run(["Hello, ", "world <b>"], False) == ("", "Hello, world <b>")
    assert run(["  spaced  "], False) == ("", "  spaced  ")


def test_think_tag_later_in_answer_is_answer_text() -> None:
    assert run(["Use <think> tags"], False) == ("", "Use <think> tags")


def test_unterminated_think_stays_think() -> None:
    assert run(["still thinking </thi"], True) == ("still thinking </thi", "")


def test_whitespace_after_tags_is_dropped() -> None:
    assert run(["\n\n  first", "</think>", " \n\n", "\n", "answer"], True) == ("first", "answer")
    assert run(["<think>", "\n", "x</think>\n", "\n", "y"], False) == ("x", "y")


def test_second_close_tag_belongs_to_the_answer() -> None:
    assert run(["a</think>b</think>c"], True) == ("a", "b</think>c")


def test_split_reasoning_whole_text() -> None:
    assert split_reasoning("<think>\nx\n</think>\n\ny") == ("x\n", "y")


streams = st.lists(
    st.sampled_from(
        [
            "<think>",
            "</think>",
            "<",
            "/",
            "think",
            ">",
            "\n",
            " ",
            "a",
            "é",
            "中",
            "</th",
            "ink>",
            "<thi",
            "\\boxed{1}",
        ]
    ),
    max_size=30,
).map("".join)


@st.composite
def chunkings(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(st.one_of(streams, st.text(max_size=60)))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces, prev = [], 0
    for c in [*cuts, len(text)]:
        pieces.append(text[prev:c])
        prev = c
    return text, pieces


@settings(max_examples=400, deadline=None)
@given(chunkings(), st.booleans())
def test_any_chunking_gives_the_same_result(case: tuple[str, list[str]], in_think: bool) -> None:
    text, pieces = case
    assert run(pieces, in_think) == run([text], in_think)
    assert run(list(text), in_think) == run([text], in_think)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80).filter(lambda t: "<think>" not in t and not t.startswith("<")))
def test_plain_text_without_tags_is_answer_verbatim(text: str) -> None:
    assert run([text], False) == ("", text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80).filter(lambda t: "</think>" not in t))
def test_text_is_never_lost(text: str) -> None:
    think, answer = run([text], True)
    assert answer == ""
    assert think == text.lstrip().removeprefix("<think>").lstrip()


def test_extract_boxed_last_with_nested_braces() -> None:
    assert extract_boxed(r"first \boxed{1}, then \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert extract_boxed(r"$\boxed{ {a}{b} }$") == "{a}{b}"


def test_extract_boxed_none_and_unterminated() -> None:
    assert extract_boxed("no box here") is None
    assert extract_boxed(r"\boxed{never closed") is None
    assert extract_boxed(r"\boxed{2} and then \boxed{oops") == "2"


def test_extract_boxed_escaped_braces_do_not_count() -> None:
    assert extract_boxed(r"\boxed{\{x\}}") == r"\{x\}"
