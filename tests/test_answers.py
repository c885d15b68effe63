"""Final answers: equivalence (math-verify underneath), majority votes, grading against gold.

How an answer is read out of a reply: test_answers_extract.py; time limits and the worker
processes: test_answers_deadline.py."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from r1chat import answers
from r1chat.answers import Verdict, Vote, check, compare, equivalent, grade, vote

# (a, b): the same answer written two ways.
EQUAL = [
    # spaces and layout
    ("3", " 3 "),
    ("x^2 + 2x + 1", "x^2+2x+1"),
    (r"\left(1, 2\right)", "(1,2)"),
    (r"\left[0, 1\right)", "[0,1)"),
    # fraction commands
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac{3}{4}", r"\frac34"),
    # thin spaces and thousands separators (`1\,000` and `1 000`: our pre-normalisation)
    (r"1\!000", "1000"),
    (r"1\,000", "1000"),
    ("1 000", "1000"),
    (r"5\,\text{cm}", "5"),
    # degrees (`°`: our pre-normalisation)
    (r"90^\circ", "90"),
    ("90°", "90"),
    # units in text
    (r"5\text{ cm}", "5"),
    (r"12\mbox{ inches}", "12"),
    # decimals (a trailing full stop: our pre-normalisation)
    ("2.0", "2"),
    ("6.", "6"),
    (r"\frac12.", "0.5"),
    # `x =` prefixes
    ("x = 3", "3"),
    # fractions and decimals
    ("0.5", r"\frac{1}{2}"),
    ("1/2", r"\frac{1}{2}"),
    (r"\frac{1}{3}", "0.3333333"),  # math-verify rounds floats to 6 places
    (r"$\frac{1}{2}$", "0.5"),
    # tuples, intervals, sets
    ("(1,2)", "(1, 2)"),
    ("[0, 1)", "[0,1)"),
    (r"(-\infty, 0) \cup (1, \infty)", r"(-\infty,0)\cup(1,\infty)"),
    (r"\{1, 2\}", r"\{2, 1\}"),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    # roots
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"),
    (r"\dfrac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
    # pi
    (r"\frac{\pi}{2}", r"\pi/2"),
    (r"\frac{3\pi}{2}", r"1.5\pi"),
    # percentages, as math-verify reads them: `10\%` is both 10 and 0.1
    (r"10\%", "10"),
    (r"10\%", "0.1"),
    (r"50\%", r"\frac{1}{2}"),
    # choices
    (r"\text{(B)}", "B"),
    # algebra
    ("x^2+2x+1", "(x+1)^2"),
]

# (a, b): different answers.
UNEQUAL = [
    ("2", "3"),
    ("12", "1,2"),
    ("(1,2)", "(2,1)"),
    ("[0,1)", "[0,1]"),
    ("(0,1)", "[0,1]"),
    (r"(-\infty, 0) \cup (1, \infty)", r"(-\infty,0]\cup(1,\infty)"),
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    ("x^2", "2x"),
    (r"\sqrt{2}", "1.414"),
    (r"\pi", "3.14"),
    (r"\frac{1}{3}", "0.333"),
    (r"10\%", "1"),
    ("x=3", "y=3"),
    (r"\{1, 2\}", r"\{1, 3\}"),
    (r"\text{(B)}", r"\text{(C)}"),
    (r"\text{yes}", r"\text{no}"),
    ("1+i", "1-i"),
    (r"1\,000", "1"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL, ids=[f"equal: {a} | {b}" for a, b in EQUAL])
def test_equal_pairs(a: str, b: str) -> None:
    assert equivalent(a, b)
    assert equivalent(b, a)


@pytest.mark.parametrize(("a", "b"), UNEQUAL, ids=[f"unequal: {a} | {b}" for a, b in UNEQUAL])
def test_unequal_pairs(a: str, b: str) -> None:
    assert not equivalent(a, b)
    assert not equivalent(b, a)


def test_the_table_is_big_enough() -> None:
    assert len(EQUAL) + len(UNEQUAL) >= 50


def test_verdicts_say_whether_time_ran_out() -> None:
    assert compare("0.75", "\\frac34") == Verdict(True)
    assert compare("0.75", "\\frac35") == Verdict(False)
    assert check("0.75", "\\frac34") == Verdict(True)
    assert check(None, "3") == Verdict(False)
    assert Verdict(True) and not Verdict(False, timed_out=True)  # a verdict reads as its answer
    assert vote(["0.75", "\\frac34"]).timed_out == 0


def test_blank_answers_equal_nothing() -> None:
    assert not equivalent("", "")
    assert not equivalent("  ", "3")
    assert not equivalent("3", "")


# --- vote ---------------------------------------------------------------------------------------


def test_vote_groups_equivalent_forms() -> None:
    result = vote(["\\frac12", "0.5", "1/2", "3", None])
    assert result == Vote(answer="\\frac12", count=3, of=5, members=(0, 1, 2))


def test_vote_answer_is_as_first_written() -> None:
    result = vote(["3", " x = 3 ", "4", "3.0"])
    assert result.answer == "3"
    assert result.members == (0, 1, 3)
    assert vote([None, " x = 3 ", "3"]).answer == " x = 3 "


def test_vote_tie_goes_to_the_group_seen_first() -> None:
    assert vote(["2", "3", "3", "2"]) == Vote(answer="2", count=2, of=4, members=(0, 3))
    assert vote(["3", "2", "2", "3"]) == Vote(answer="3", count=2, of=4, members=(0, 3))
    assert vote(["5", "7"]).answer == "5"


def test_vote_none_never_wins() -> None:
    assert vote([None, None, None, "3"]) == Vote(answer="3", count=1, of=4, members=(3,))
    assert vote([None, "", "  ", "4"]) == Vote(answer="4", count=1, of=4, members=(3,))


def test_vote_with_no_answers() -> None:
    assert vote([None, None]) == Vote(answer=None, count=0, of=2, members=())
    assert vote(["", None]) == Vote(answer=None, count=0, of=2, members=())
    assert vote([]) == Vote(answer=None, count=0, of=0, members=())


def test_vote_unanimous_and_split() -> None:
    assert vote(["(1, 2)", "\\left(1,2\\right)", "(1,2)"]).count == 3
    split = vote(["(1,2)", "(2,1)", "[1,2]"])
    assert (split.answer, split.count, split.members) == ("(1,2)", 1, (0,))


# --- grade --------------------------------------------------------------------------------------

GRADED = [
    # (predicted, gold, right)
    ("3.0", "3", True),
    ("x = 3", "3", True),
    ("3", "x = 3", True),
    ("2", "3", False),
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac{1}{3}", "\\frac{1}{2}", False),
    ("(1,2)", "(1, 2)", True),
    ("\\left( 1, 2 \\right)", "(1, 2)", True),
    ("(2, 1)", "(1, 2)", False),
    ("\\left[0,1\\right)", "[0, 1)", True),
    ("[0, 1]", "[0, 1)", False),
    ("10", "10\\%", True),
    ("B", "\\text{(B)}", True),
    ("(B)", "\\text{(B)}", True),
    ("\\textbf{(B)}", "\\text{(B)}", True),
    ("C", "\\text{(B)}", False),
    ("90", "90^\\circ", True),
    ("", "3", False),
]


@pytest.mark.parametrize(("predicted", "gold", "right"), GRADED)
def test_grade_against_dataset_gold(predicted: str, gold: str, right: bool) -> None:
    assert grade(predicted, gold) is right


def test_grade_without_an_answer() -> None:
    assert grade(None, "3") is False


# --- threads, time, garbage ---------------------------------------------------------------------


def test_works_from_a_worker_thread() -> None:
    # math-verify's default timeouts use signal.alarm, which raises outside the main thread.
    results: list[object] = []

    def work() -> None:
        try:
            results.append(equivalent("\\frac{5}{8}", "0.625"))
            results.append(equivalent("(3, 4)", "(4, 3)"))
            results.append(vote(["\\frac{5}{8}", "0.625", "5/8", None]).count)
            results.append(grade("0.625", "\\frac58"))
        except BaseException as e:  # reported below, not lost in the thread
            results.append(e)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert results == [True, False, 3, True]


def test_threads_at_once() -> None:
    # Answers no other test uses, so that each thread parses (the lock, the grammar's caches).
    pairs = [(f"\\frac{{{k}}}{{8}}", str(k / 8)) for k in (1, 3, 5, 7)]
    pairs += [(f"\\frac{{{k}}}{{16}}", str(k / 8)) for k in (1, 3, 5, 7)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda p: equivalent(*p), pairs))
    assert got == [True] * 4 + [False] * 4


@pytest.fixture
def no_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(answers, "_TIME_LIMIT_S", 0.0)
    yield
    answers._same.cache_clear()
    answers._graded.cache_clear()


def test_past_the_deadline_answers_compare_as_text(
    no_time: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG - 1):
        assert compare("\\frac{17}{20}", "0.85") == Verdict(False, timed_out=True)
        assert check("0.85", "\\frac{17}{20}") == Verdict(False, timed_out=True)
        assert not grade("0.85", "\\frac{17}{20}")
        # The same text needs no parsing, and is no timeout.
        assert compare("\\frac{17}{20}", "\\dfrac{17}{20}") == Verdict(True)
        assert vote(["\\frac{17}{20}", "0.85", "\\dfrac{17}{20}"]) == Vote(
            answer="\\frac{17}{20}", count=2, of=3, members=(0, 2), timed_out=1
        )
    # math-verify's "timeout is disabled" and "timeout during parsing" notices stay quiet.
    assert not [r for r in caplog.records if r.getMessage().startswith("Timeout")]


def test_math_verify_timeout_notices_stay_quiet(caplog: pytest.LogCaptureFixture) -> None:
    # With no logging set up they would go to stderr, across the app's screen: wherever
    # math-verify is loaded (a worker, or this process when no worker can start).
    answers._math_verify()
    logger = logging.getLogger("math_verify.parser")
    with caplog.at_level(logging.WARNING, logger="math_verify"):
        logger.warning("Timeout is disabled as parsing_timeout is None or <= 0, ...")
        logger.warning("Timeout during parsing: x")
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def _soup(seed: int) -> str:
    tokens = ["\\frac{", "}", "{", "^", "_", "\\sqrt{", "x", "1", "2", "+", "(", ")", "[", "]"]
    tokens += ["\\left(", "\\right)", "$", "\\boxed{", "\\text{", " ", ",", "=", "\\pi", "!", "\\"]
    rng = random.Random(seed)
    return "".join(rng.choice(tokens) for _ in range(40))


GARBAGE = {
    "100k characters": "1+" * 50_000,
    "braces 500 deep": "{" * 500 + "1" + "}" * 500,
    "parentheses 500 deep": "(" * 500 + "1" + ")" * 500,
    "braces 12 deep": "{" * 12 + "1" + "}" * 12,
    "fractions 200 deep": "\\frac{" * 200 + "1" + "}{2}" * 200,
    "power tower": "2^{2^{30}}",
    "tower of nines": "9^{9^{9^{9}}}",
    "huge factorial": "(10^{6})!",
    "huge product": "\\prod_{i=1}^{10^{6}} i",
    "integral": "\\int_0^1 x^{100}e^{x}\\,dx",
    "huge binomial": "\\binom{1000000000000}{100000}",
    "huge gamma": "\\Gamma(10000000)",
    "huge identity matrix": "\\operatorname{eye}(1000000)",
    "chained powers": "^".join(["x"] * 25),
    "unbalanced": "}}}{{{",
    "backslashes": "\\" * 999,
    "dollars": "$" * 999,
    "boxes": "\\boxed{" * 100,
    "control characters": "\x00\x1b[31m\x07",
    "unicode": "∞≤√π" * 50,
    "soup 1": _soup(1),
    "soup 2": _soup(2),
    "soup 3": _soup(3),
}


@pytest.mark.parametrize("text", GARBAGE.values(), ids=GARBAGE.keys())
def test_huge_and_garbage_answers_return(text: str) -> None:
    # No clock here (speed is for benchmarks): without the bounds these took minutes or never
    # returned, which the suite's own time limit would show.
    assert not equivalent(text, "3")
    assert equivalent(text, text)  # the same text is the same answer, parsed or not
    assert not grade(text, "3")
    result = vote([text, "3", text, None])
    assert (result.answer, result.count) == (text, 2)


def test_importing_does_not_load_math_verify() -> None:
    # The app imports this module at start-up; math-verify and SymPy take a second and a half.
    code = "import sys, r1chat.answers; sys.exit(bool({'sympy', 'math_verify'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
