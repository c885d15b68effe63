"""`r1chat eval`: a benchmark file of problems with known answers, k samples each, graded.

Reads JSONL in the shape MATH-500 and AIME 2024 are published in on Hugging Face datasets: one
object per line with `problem` (or `question`) and `answer`. Reports pass@1 (the mean over all
samples of being right, as the model card's table does), maj@k (the vote being right), the mean
thinking tokens, decode speed and wall time. Results go one line per problem to `--out` as each
is done, so a stopped run keeps what it finished and a rerun goes on from there.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from r1chat.answers import grade
from r1chat.config import Settings
from r1chat.engines.base import Engine
from r1chat.errors import R1ChatError
from r1chat.many import ask_many
from r1chat.prompts import ChatMessage, apply_preset


@dataclass(frozen=True)
class Problem:
    index: int  # the line's position among the problems (0-based)
    id: str  # the dataset's own id when it has one, else the index
    question: str
    answer: str


@dataclass(frozen=True)
class Result:
    index: int
    id: str
    answer: str  # the gold answer
    boxed: list[str | None]  # each sample's \boxed{} answer
    correct: list[bool]
    vote: str | None
    vote_correct: bool
    thinking_tokens: list[int]
    tokens: int  # every sample's tokens together
    seconds: float
    finish: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def load_problems(path: Path, limit: int | None = None) -> list[Problem]:
    """The problems of a JSONL file; a bad line is a one-line error naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise R1ChatError(f"no such file: {path}", 2) from None
    except (OSError, UnicodeDecodeError) as e:
        raise R1ChatError(f"cannot read {path}: {e}", 2) from None
    problems: list[Problem] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise R1ChatError(f"{path}:{n}: not a JSON object", 2) from None
        if not isinstance(row, dict):
            raise R1ChatError(f"{path}:{n}: not a JSON object", 2)
        question = row.get("problem", row.get("question"))
        answer = row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise R1ChatError(f'{path}:{n}: no "problem" (or "question") text', 2)
        if answer is None or isinstance(answer, (dict, list)):
            raise R1ChatError(f'{path}:{n}: no "answer"', 2)
        index = len(problems)
        pid = row.get("unique_id", row.get("id", index))
        problems.append(Problem(index, str(pid), question, str(answer)))
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise R1ChatError(f"{path}: no problems in it", 2)
    return problems


def load_done(path: Path | None) -> dict[str, Result]:
    """What an earlier run wrote to `--out` (by problem id); a line cut short is dropped."""
    if path is None or not path.exists():
        return {}
    done: dict[str, Result] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise R1ChatError(f"cannot read {path}: {e}", 2) from None
    for line in text.splitlines():
        try:
            row = json.loads(line)
            done[str(row["id"])] = Result(**row)
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short by a stop: it is done again
    return done


def solve(
    engine: Engine,
    problem: Problem,
    settings: Settings,
    preset: str | None,
    cancel: threading.Event | None = None,
) -> Result:
    """The problem's k samples (k: `settings.samples`), each steered as a single reply is,
    graded against its answer."""
    t0 = time.perf_counter()
    question = apply_preset(problem.question, preset)
    got = ask_many(
        engine,
        [ChatMessage("user", question)],
        settings.sampling_params(),
        settings.samples,
        cancel=cancel,
        reasoning=settings.reasoning_params(),
        ctx_tokens=settings.ctx,
    )
    boxed = [s.boxed for s in got.samples]
    return Result(
        index=problem.index,
        id=problem.id,
        answer=problem.answer,
        boxed=boxed,
        correct=[grade(b, problem.answer) for b in boxed],
        vote=got.vote.answer,
        vote_correct=grade(got.vote.answer, problem.answer),
        thinking_tokens=[s.thinking_tokens for s in got.samples],
        tokens=sum(s.completion_tokens for s in got.samples),
        seconds=time.perf_counter() - t0,
        finish=[s.finish_reason for s in got.samples],
    )


def run(
    engine: Engine,
    problems: list[Problem],
    settings: Settings,
    preset: str | None,
    *,
    done: dict[str, Result] | None = None,
    cancel: threading.Event | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> Iterator[Result]:
    """Each problem's result, those in `done` first (not solved again). A problem stopped
    midway (`cancel`) is not yielded: it is not done."""
    done = done or {}
    for p in problems:
        if p.id in done:
            yield done[p.id]
            continue
        if cancel is not None and cancel.is_set():
            return
        result = solve(engine, p, settings, preset, cancel)
        if "cancelled" in result.finish:
            return
        if on_result is not None:
            on_result(result)
        yield result


def summary(results: list[Result], k: int, wall_s: float) -> dict[str, Any]:
    n = len(results)
    samples = [c for r in results for c in r.correct]
    thinking = [t for r in results for t in r.thinking_tokens]
    seconds = sum(r.seconds for r in results)
    return {
        "problems": n,
        "samples": k,
        "pass@1": sum(samples) / len(samples) if samples else 0.0,
        f"maj@{k}": sum(r.vote_correct for r in results) / n if n else 0.0,
        "mean_thinking_tokens": sum(thinking) / len(thinking) if thinking else 0.0,
        "tokens": sum(r.tokens for r in results),
        "tok_s": sum(r.tokens for r in results) / seconds if seconds > 0 else 0.0,
        "wall_s": wall_s,
        "cut_at_max_tokens": sum(f == "length" for r in results for f in r.finish),
    }
