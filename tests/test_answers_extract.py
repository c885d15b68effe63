"""Which answer a reply gives (`answers.extract`): read as math-verify reads it (issue 21).

Finding 1 of the issue: only the last `\\boxed{}` counted (`reasoning.extract_boxed`, which votes,
`ask -k` and `eval` used), so `\\boxed{-2} and \\boxed{1}` graded against `-2, 1` was wrong. The
tests marked `before` run that reader, and fail (xfail, strict).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from r1chat import answers
from r1chat.answers import extract, grade, vote
from r1chat.reasoning import extract_boxed

Reader = Callable[[str], str | None]
READERS = [
    pytest.param(extract, id="now"),
    pytest.param(
        extract_boxed,
        id="before",
        marks=pytest.mark.xfail(strict=True, reason="only the last box counted"),
    ),
]

TWO_ROOTS = "The integers are \\boxed{-2} and \\boxed{1}."


@pytest.mark.parametrize("read", READERS)
def test_every_box_of_the_final_answer_counts(read: Reader) -> None:
    assert grade(read(TWO_ROOTS), "-2, 1")
    assert grade(read(TWO_ROOTS), "\\{1, -2\\}")
    assert not grade(read(TWO_ROOTS), "1")


@pytest.mark.parametrize("read", READERS)
def test_a_vote_tells_both_roots_from_one(read: Reader) -> None:
    replies = [TWO_ROOTS, "So $x = \\boxed{1}$.", "The roots: \\boxed{1}, \\boxed{-2}"]
    result = vote([read(r) for r in replies])
    assert (result.count, result.members) == (2, (0, 2))


# (reply, the answer read): math-verify 0.9.0 reads the same answer out of each (checked below).
READ = [
    # the last box; earlier ones join only when close, or joined by "and", "or", ",", ";"
    (
        "\\boxed{3}. "
        + "It looks right, but let me check the algebra once more. " * 3
        + "Actually it is \\boxed{4}.",
        "4",
    ),
    ("\\boxed{1},\\boxed{2},\\boxed{3}", "1, 2, 3"),
    ("\\boxed{1} so \\boxed{2}", "1, 2"),  # under 10 characters apart
    ("\\boxed{1} which we double check here \\boxed{2}", "2"),
    ("\\boxed{5} therefore \\boxed{5}", "5"),
    ("\\boxed{5}, \\boxed{5}", "5"),  # a repeat counts once
    ("solutions are:\n\\[\n\\boxed{(1, 2)}, \\boxed{(2, 1)}\n\\]", "(1, 2), (2, 1)"),
    # what is inside a box, as written
    ("\\boxed{\\frac{14}{3}}", "\\frac{14}{3}"),
    ("$\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}"),
    ("$\\boxed{ {a}{b} }$", "{a}{b}"),
    ("\\boxed{\\boxed{5}}", "5"),
    ("\\boxed{}", ""),  # a blank answer: it equals nothing
    ("\\boxed{3} and \\fbox{4}", "3, 4"),
    ("<think>maybe \\boxed{5}?</think> The answer is \\boxed{6}.", "6"),
    # no box: math-verify's ladder, the answer as written
    ("We get 12 apples and then 15 pears, so 27.", "27"),
    ("Final Answer: The final answer is $14{,}916$. I hope it is correct.", "14{,}916"),
    ("Final Answer: The final answer is 12,000,023. I hope it is correct.", "12000023"),
    ("Checking, the only integer roots are $-2,1$.", "-2,1"),
    ("so the total loss is $28$%.", "28\\%"),
    ("The answer is $x \\in [-2,7]$", "x \\in [-2,7]"),
    ("Thus \\[ A = \\frac{1}{2} \\]", "A = \\frac{1}{2}"),
    ("The answer is \\( (-6, 10) \\).", "(-6, 10)"),
    # MATH's few-shot ending after the last box wins, as it does in math-verify
    (
        "so $0.05 \\cdot 10,200 \\cdot \\frac{1}{2} = \\boxed{255}$ and in all $10,455. Final"
        " Answer: The final answer is $10,455$. I hope it is correct.",
        "10,455",
    ),
    ("\\boxed{12}. Final Answer: The final answer is $12$. I hope it is correct.", "12"),
    # nothing to read
    ("The capital of France is Paris.", None),
    ("\\boxed{12", None),  # cut short: math-verify reads nothing either
    ("", None),
]


# r1chat's deliberate differences: (reply, the answer read, what math-verify reads).
DIFFERS = [
    # Only the text after the thinking: the thinking is where a model tries answers out.
    ("<think>\\boxed{5}</think>No box here.", None, "5"),
    # What is found first is the answer, parsed or not: math-verify cuts `\mathrm{e}}` off, does
    # not parse the rest and goes on to the next match, the number 1.
    ("It is $1 - \\frac{1}{\\mathrm{e}}$", "1 - \\frac{1}{\\mathrm{e}}", "1"),
]


@pytest.mark.parametrize(("reply", "answer"), READ, ids=[r[:40] for r, _ in READ])
def test_read_as_math_verify_reads(reply: str, answer: str | None) -> None:
    assert extract(reply) == answer
    # What math-verify reads out of the whole reply is what it reads out of the answer alone.
    read_whole = _math_verify_reads(reply)
    read_answer = _math_verify_reads(f"\\boxed{{{answer}}}" if answer else "")
    assert bool(read_whole) == bool(read_answer)
    if read_whole:
        from math_verify import verify

        assert verify(read_whole, read_answer) and verify(read_answer, read_whole)


@pytest.mark.parametrize(
    ("reply", "answer", "theirs"), DIFFERS, ids=[r[:40] for r, _, _ in DIFFERS]
)
def test_where_r1chat_reads_otherwise(reply: str, answer: str | None, theirs: str) -> None:
    assert extract(reply) == answer
    assert [str(x) for x in _math_verify_reads(reply)[:1]] == [theirs]


def _math_verify_reads(text: str) -> list[object]:
    """What math-verify reads out of `text` (SymPy objects only), with its recommended targets
    for model output."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    targets = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return [x for x in parse(text, targets) if not isinstance(x, str)]


def test_read_answers_grade_as_the_gold() -> None:
    assert grade(extract("Final Answer: The final answer is $14{,}916$. I hope it is."), "14916")
    assert grade(extract("Final Answer: The final answer is 12,000,023. I hope."), "12000023")
    assert grade(extract("so the total loss is $28$%."), "28\\%")
    assert grade(extract("Checking, the only integer roots are $-2,1$."), "1, -2")
    assert grade(extract("Thus \\[ A = \\frac{1}{2} \\]"), "0.5")
    assert not grade(extract("It is $1 - \\frac{1}{\\mathrm{e}}$"), "1 + \\frac{1}{\\mathrm{e}}")


def test_boxes_only_without_fallback() -> None:
    assert extract("We get 12 apples and then 15 pears, so 27.", fallback=False) is None
    assert extract("\\boxed{12", fallback=False) is None
    assert extract("\\boxed{-2} and \\boxed{1}", fallback=False) == "-2, 1"


def test_boxes_are_read_here_without_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    # The common case costs no worker round trip: boxes are found by this module alone.
    def no_worker(op: str, args: tuple[object, ...]) -> tuple[bool, object]:
        raise AssertionError("a boxed reply went to a worker")

    monkeypatch.setattr(answers, "_run", no_worker)
    assert extract("So $x = \\boxed{\\frac{1}{2}}$ and we are done.") == "\\frac{1}{2}"
    assert extract("<think>\\boxed{1}</think>no box", fallback=False) is None


@pytest.mark.parametrize(
    "reply",
    ["$" * 100_000, "\\boxed{" * 5_000, "answer: " * 20_000 + "1", "(" * 50_000 + "1"],
    ids=["dollars", "open boxes", "answer words", "parentheses"],
)
def test_hostile_replies_are_read_in_time(reply: str) -> None:
    t0 = time.monotonic()
    extract(reply)
    # The reading's own limit, plus room for a loaded machine.
    assert time.monotonic() - t0 < answers._TIME_LIMIT_S + 3
