"""Math-Verify's own test pairs, graded by r1chat (issue 21): each prediction and gold is read as
r1chat reads a reply (`extract`) and graded gold first (`check`), and the result must be the
one Math-Verify's test expects, but for the pairs listed below with their reasons. The test
also checks that a listed pair still differs, so an entry cannot outlive its reason.

The data and its licence are in tests/math_verify_data/ (see its README.md): Math-Verify's tests at
commit 5d148cfa and in the 0.9.0 sdist, Apache-2.0, "Copyright [2025] [HuggingFace Inc.]".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from r1chat import answers
from r1chat.answers import check, extract

HERE = Path(__file__).resolve().parent / "math_verify_data"
RECORDS: list[dict[str, Any]] = json.loads(
    (HERE / "math_verify_pairs.json").read_text(encoding="utf-8")
)

# How the graded pairs are called in Math-Verify's tests: its `compare_strings` helper, or a
# plain `verify(parse(gold), parse(pred))`.
GRADED_CALLS = {"compare_strings", "int(verify(parse(gold), parse(pred)))"}
GRADED = [
    (i, r)
    for i, r in enumerate(RECORDS)
    if isinstance(r["expected"], bool) and r["config"]["call"] in GRADED_CALLS
]

# Not graded pairs: what each of the other records is, by test name.
NOT_PAIRS = {
    "test_string_extraction": "multiple-choice letters (StringExtractionConfig): r1chat has no "
    "letter extraction; a choice is compared as an answer (`\\text{(B)}` is `B`)",
    "test_precision": "sympy_expr_eq called directly with SymPy objects",
    "test_boxed_match_priority": "parse() under non-default configs, checked on its output",
    "test_normalization_config": "parse() under non-default normalisation, checked on its output",
    "test_verify_raise_on_error": "a mock of math-verify's internals raising ValueError",
    "test_gamma_as_function": "parse() output compared with SymPy by simplify()",
    "test_gamma_as_constant": "parse() output compared with SymPy by simplify()",
    "test_timeout_expr": "a timeout mock: run in r1chat's grader by test_answers_deadline.py",
    "test_timeout_latex": "a timeout mock: run in r1chat's grader by test_answers_deadline.py",
    "test_timeout_verify": "a timeout mock: run in r1chat's grader by test_answers_deadline.py",
}

# Where the test asks for settings other than math-verify's defaults, which r1chat uses; in each
# case math-verify itself, with r1chat's settings, gives r1chat's result.
SETTINGS = {
    31: "LaTeX-only extraction: math-verify does not read `$ 9 $` across lines, but r1chat also "
    "reads numbers (math-verify's recommended targets for model output), and finds 9",
    32: "LaTeX-only extraction: as 31, with `\\( 9 \\)` across lines",
    139: "rounding to 2 decimals: 0.33 is 1/3 there; r1chat rounds to 6",
    145: "rounding to 2 decimals: 2.6667 is 8/3 there; r1chat rounds to 6",
    286: "rounding to 4 decimals: 0.3333 is 1/3 there; r1chat rounds to 6",
    192: "allow_set_relation_comp=True: a gold `x \\in [-2,7]` against `-2 \\le x \\le 7`",
    260: "strict=False: variables matched by position, so f(x) is f(y)",
}
# r1chat's deliberate differences (README, "How answers are read and compared").
DIFFERENT = {
    273: "sums, integrals and limits are compared as text, not worked out by SymPy: two sums "
    "with their factors swapped differ",
    277: "a match that does not parse is still the answer: math-verify cuts "
    "`1 - \\frac{1}{\\mathrm{e}}` and `1 + \\frac{1}{\\mathrm{e}}` short and reads both as 1; "
    "r1chat compares them as written, and they differ",
}
DIFFER = SETTINGS | DIFFERENT


@pytest.fixture(scope="module", autouse=True)
def time_enough() -> Iterator[None]:
    # Agreement is what is tested here, not speed: a loaded machine must not turn a slow pair
    # into a timed-out one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(answers, "_TIME_LIMIT_S", 60.0)
        yield
    answers._same.cache_clear()
    answers._graded.cache_clear()


@pytest.mark.parametrize(("index", "record"), GRADED, ids=[f"{i}-{r['test']}" for i, r in GRADED])
def test_pair(index: int, record: dict[str, Any]) -> None:
    gold = extract(record["gold"])
    verdict = check(extract(record["prediction"]), gold if gold is not None else "")
    assert not verdict.timed_out
    if index in DIFFER:
        assert verdict.equal is not record["expected"], f"agrees now: drop it ({DIFFER[index]})"
    else:
        assert verdict.equal is record["expected"]


def test_every_record_is_accounted_for() -> None:
    graded = {i for i, _ in GRADED}
    others = [r["test"] for i, r in enumerate(RECORDS) if i not in graded]
    assert len(RECORDS) == 299
    assert (len(GRADED), len(others)) == (276, 23)
    assert set(others) == set(NOT_PAIRS)
    assert set(DIFFER) <= graded
    # 267 of the 276 graded pairs agree with Math-Verify's expectations.
    assert len(GRADED) - len(DIFFER) == 267
