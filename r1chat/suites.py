"""The model card's benchmarks by name: `r1chat eval math-500`, `r1chat eval aime-2024`.

Each suite is a file on the Hugging Face hub at a pinned commit, fetched as models are
(r1chat.hub): into the hub's cache, read from there without the network on every later run. The
card's pass@1 for DeepSeek-R1-Distill-Qwen-7B goes with it, with the settings the card measured
it under, so a run's report can set the two side by side.

Sources (research/grading, section 3):

* MATH-500: `HuggingFaceH4/MATH-500` `test.jsonl`, JSONL (problem, answer, unique_id, subject,
  level), 500 rows. Pinned at the last commit of 2024-11-15: later commits on `main` add files.
* AIME 2024: every copy on the hub is parquet, and the one JSONL copy (QwenLM/Qwen2.5-Math on
  GitHub) is not on the hub, so it could not be fetched, cached and pinned as models are. Of the
  parquet copies, `AI-MO/aimo-validation-aime` is the one with a full commit to pin and a known
  file name: HuggingFaceH4/aime_2024 (the same 30 problems, copied from AI-MO's) has only short
  commit ids on record and an inferred file name, and Maxwell-Jia/AIME_2024's only full commit
  is the upload that three later fixes corrected. AI-MO's file holds AIME 2022-2024 (90 rows);
  the 2024 ones are those whose AoPS `url` names the 2024 contest. Parquet is read with pyarrow,
  imported only here (about 0.1 s); a reader of our own for one 30-row file would be a second
  parquet implementation to trust.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1chat.answers import grade
from r1chat.errors import R1ChatError
from r1chat.evaluate import Grader, Problem, load_problems, problems_from_rows
from r1chat.hub import fetch

CARD_MODEL = "DeepSeek-R1-Distill-Qwen-7B"
# How the card measured its pass@1: "temperature of 0.6, a top-p value of 0.95", "maximum
# generation length 32,768 tokens", "64 responses per query to estimate pass@1".
CARD_SETTINGS: dict[str, float | int] = {
    "temperature": 0.6,
    "top_p": 0.95,
    "max_tokens": 32768,
    "samples": 64,
}
_HINT = "or pass a local JSONL file"


@dataclass(frozen=True)
class Suite:
    name: str  # as given on the command line
    title: str  # as the card names it
    repo: str  # a dataset repository on the hub
    revision: str  # the commit it is read at
    filename: str
    card_pass1: float  # CARD_MODEL's pass@1 on the card
    integer_answers: bool = False  # AIME: answers are integers 0-999


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "math-500",
            "MATH-500",
            "HuggingFaceH4/MATH-500",
            "ff5b20257d8185524591543f8ff5993951537bb8",
            "test.jsonl",
            0.928,
        ),
        Suite(
            "aime-2024",
            "AIME 2024",
            "AI-MO/aimo-validation-aime",
            "1f8807dabb2265892a7c2cb5e73d95d25df4507b",
            "data/train-00000-of-00001.parquet",
            0.555,
            integer_answers=True,
        ),
    )
}


def suite_file(suite: Suite) -> Path:
    """The suite's file: from the hub's cache, else downloaded into it; one line if it cannot
    be had."""
    return fetch(
        suite.repo,
        suite.filename,
        suite.revision,
        repo_type="dataset",
        what=suite.title,
        hint=_HINT,
    )


def load_suite(suite: Suite, path: Path) -> list[Problem]:
    """Every problem of the suite, read from its file at `path`."""
    if suite.integer_answers:
        return problems_from_rows(_aime_2024(path), str(path))
    return load_problems(path)


def grader(suite: Suite | None) -> Grader:
    return grade_integer if suite is not None and suite.integer_answers else grade


# An integer as written: a sign, zero padding, digits (ASCII: int() takes other scripts' digits).
_INTEGER = re.compile(r"([+-]?)0*([0-9]+)")


def _integer(text: str) -> str | None:
    """An integer written as `text`, without padding or a plus sign ("025" is "25"); None when it
    is not one. Kept a string: int() refuses numbers past 4,300 digits, which a model can box."""
    m = _INTEGER.fullmatch(text.strip())
    if m is None:
        return None
    sign, digits = m.groups()
    return "-" + digits if sign == "-" and digits != "0" else digits


def grade_integer(predicted: str | None, gold: str) -> bool:
    """An answer to an integer problem, compared as an integer: `025` is `25` (AIME copies write
    answers zero-padded, models do both). What is not a bare integer (`\\text{25}`, `25^\\circ`)
    goes to math-verify, which reads those as 25 too."""
    if predicted is None:
        return False
    ours = _integer(predicted.strip().strip("$"))
    if ours is not None:
        return ours == _integer(gold)
    return grade(predicted, gold)


# AoPS's pages of the 2024 contests: ".../2024_AIME_I_Problems/Problem_1" (and II).
_AIME_2024_URL = re.compile(r"/2024_AIME_I{1,2}_Problems/")


def _aime_2024(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The 2024 rows of AI-MO's parquet file, as (row number, problem) with integer answers."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise R1ChatError(
            "AIME 2024 is published as parquet, which needs pyarrow: pip install pyarrow"
        ) from None
    try:
        table = pq.read_table(path, columns=["id", "problem", "answer", "url"])
    except Exception as e:  # pyarrow raises its own ArrowInvalid, OSError, KeyError ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise R1ChatError(f"cannot read {path} as AIME's parquet file: {first[:160]}", 2) from None
    found = False
    for n, row in enumerate(table.to_pylist(), 1):
        if not _AIME_2024_URL.search(str(row.get("url") or "")):
            continue
        found = True
        written = str(row.get("answer") or "").strip()
        answer = _integer(written)
        if answer is None:
            raise R1ChatError(f"{path}:{n}: AIME answer {written[:40]!r} is not an integer", 2)
        yield n, {"problem": row.get("problem"), "answer": answer, "id": row.get("id")}
    if not found:
        raise R1ChatError(f"{path}: no AIME 2024 problems in it", 2)
