"""`r1chat eval`: a benchmark file of problems with known answers, k samples each, graded.

Reads JSONL in the shape MATH-500 and AIME 2024 are published in on Hugging Face datasets: one
object per line with `problem` (or `question`) and `answer`. Reports pass@1 (the mean over all
samples of being right, as the model card's table does), maj@k (the vote being right), the mean
thinking tokens, decode speed and wall time. Results go one line per problem to `--out` as each
is done, so a stopped run keeps what it finished and a rerun goes on from there.

A result is reused only for the same problem (its question and gold answer, not its id: ids
repeat within files and across them) under the same settings (each line carries them), so a
rerun never counts another benchmark's or another configuration's results as its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

from r1chat.answers import grade
from r1chat.config import Settings
from r1chat.engines.base import Engine
from r1chat.errors import PromptTooLong, R1ChatError
from r1chat.many import ask_many
from r1chat.prompts import ChatMessage, apply_preset

# json.loads turns a lone "\ud800" escape into a lone surrogate, which no UTF-8 encoder takes
# (writing --out, printing, tokenizing would fail later): they become U+FFFD on loading.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Problem:
    index: int  # the line's position among the problems (0-based)
    id: str  # the dataset's own id when it has one, else the index
    question: str
    answer: str
    key: str  # what its result is kept under in --out: see `problem_key`


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
    key: str
    # Why the problem was not solved (its prompt does not fit in the context); it then counts
    # as wrong in pass@1 and maj@k, so that the scores stay those of the whole file.
    skipped: str | None = None


def problem_key(question: str, answer: str, nth: int) -> str:
    """A problem's identity in --out: its content, and which of identical ones it is."""
    digest = hashlib.sha256(json.dumps([question, answer]).encode()).hexdigest()[:20]
    return f"{digest}:{nth}"


def _clean(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def load_problems(path: Path, limit: int | None = None) -> list[Problem]:
    """The problems of a JSONL file; a bad line is a one-line error naming it."""
    try:
        # utf-8-sig: a file saved by an editor that writes a byte order mark reads as any other.
        # Lines end at "\n" only: JSON takes U+2028 and the like unescaped inside its strings,
        # where str.splitlines() would cut the line (a "\r" before the "\n" is JSON whitespace).
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except FileNotFoundError:
        raise R1ChatError(f"no such file: {path}", 2) from None
    except (OSError, UnicodeDecodeError) as e:
        raise R1ChatError(f"cannot read {path}: {e}", 2) from None
    problems: list[Problem] = []
    seen: Counter[tuple[str, str]] = Counter()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise R1ChatError(f"{path}:{n}: not a JSON object", 2) from None
        except RecursionError:
            raise R1ChatError(f"{path}:{n}: nested too deeply to be a problem", 2) from None
        if not isinstance(row, dict):
            raise R1ChatError(f"{path}:{n}: not a JSON object", 2)
        question = row.get("problem", row.get("question"))
        answer = row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise R1ChatError(f'{path}:{n}: no "problem" (or "question") text', 2)
        if answer is None or isinstance(answer, (dict, list)):
            raise R1ChatError(f'{path}:{n}: no "answer"', 2)
        index = len(problems)
        pid = _clean(str(row.get("unique_id", row.get("id", index))))
        question, answer = _clean(question), _clean(str(answer))
        nth = seen[question, answer]
        seen[question, answer] += 1
        key = problem_key(question, answer, nth)
        problems.append(Problem(index, pid, question, answer, key))
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise R1ChatError(f"{path}: no problems in it", 2)
    return problems


def eval_settings(settings: Settings, preset: str | None) -> dict[str, Any]:
    """The settings a result depends on, as --out records them with each result. Not those
    that change only how it is computed (--ctx, --gpu-layers, threads)."""
    model = settings.model
    if settings.api_base is None:
        from r1chat.models import DEFAULT_ALIAS

        model = model or DEFAULT_ALIAS
        path = Path(model).expanduser()
        if path.is_file():  # the same file however it was named
            model = str(path.resolve())
    s = settings
    return {
        "model": model,
        "api_base": s.api_base,
        "preset": preset or "none",
        "samples": s.samples,
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "seed": s.seed,
        "kv_type": s.kv_type,
        "think_budget": s.think_budget,
        "think_min": s.think_min,
        "budget_message": s.budget_message,
        "think_wait": s.think_wait,
        "on_loop": s.on_loop,
    }


# How eval_settings' keys are given on the command line, where they have a flag of their own.
_FLAGS = {
    "model": "--model",
    "api_base": "--api-base",
    "preset": "--preset",
    "samples": "-k",
    "max_tokens": "--max-tokens",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "seed": "--seed",
    "think_budget": "--think-budget",
    "think_min": "--think-min",
}
_RESULT_FIELDS = frozenset(f.name for f in fields(Result))


class ResultsFile:
    """`--out`: one JSON line per problem done, each with the settings it was done with.

    Opening it reads what an earlier run finished (`done`, by problem key). A last line cut
    short by a stop mid-write is dropped, and cut off the file before anything is appended, so
    its problem is solved again and no new line is glued to it; every whole line stays as it is.
    """

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        self.settings = settings
        self.done: dict[str, Result] = {}
        self._keep = 0  # bytes to keep: the file up to the end of its last whole line
        self._newline = False  # the last whole line has no "\n" (cut right after its "}")
        self._file: BinaryIO | None = None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            raise R1ChatError(f"cannot read {path}: {e}", 2) from None
        # Split on b"\n" only: str.splitlines() would also split a line at a U+2028 in an answer.
        *lines, tail = data.split(b"\n")
        for n, raw in enumerate(lines, 1):
            if raw.strip():
                row = _parse(raw)
                if row is None:
                    raise self._alien(n)
                self._take(row, n)
            self._keep += len(raw) + 1
        if tail.strip():
            row = _parse(tail)
            if row is not None:
                self._take(row, len(lines) + 1)
                self._keep, self._newline = len(data), True
            # else: cut short by a stop mid-write; the problem is done again

    def _alien(self, n: int) -> R1ChatError:
        return R1ChatError(
            f"{self.path}:{n}: not a result of this r1chat eval (another file, or an older"
            " r1chat's results): use another --out",
            2,
        )

    def _take(self, row: Any, n: int) -> None:
        if not isinstance(row, dict) or not isinstance(row.get("settings"), dict):
            raise self._alien(n)
        theirs = row.pop("settings")
        if theirs != self.settings:
            differ = [
                f"{_FLAGS.get(k, k)} {json.dumps(theirs.get(k))} there, {json.dumps(v)} here"
                for k, v in self.settings.items()
                if theirs.get(k) != v
            ] or ["settings this r1chat does not know"]
            raise R1ChatError(
                f"{self.path} holds results made with other settings ({'; '.join(differ)}):"
                " use another --out",
                2,
            )
        if set(row) != _RESULT_FIELDS or not isinstance(row["key"], str):
            raise self._alien(n)
        try:
            result = Result(**row)
        except TypeError:
            raise self._alien(n) from None
        self.done[result.key] = result  # a later line (a skipped problem tried again) wins

    def open(self) -> None:
        """Make it ready to append to (`write` does when it has not been): called before the
        model loads, a file that cannot be written fails before any problem is solved."""
        if self._file is not None:
            return
        try:
            self._file = self.path.open("ab")
            self._file.truncate(self._keep)  # the cut line, if any (appends go to the end)
            if self._newline:
                self._file.write(b"\n")
                self._file.flush()
        except OSError as e:
            raise R1ChatError(f"cannot write {self.path}: {e}", 2) from None

    def write(self, result: Result) -> None:
        """Append `result` and flush it: a stop keeps every problem finished."""
        prev = self.done.get(result.key)
        if result.skipped is not None and prev is not None and prev.skipped == result.skipped:
            return  # skipped again for the same reason: its line says so already
        self.open()
        assert self._file is not None
        line = json.dumps({**asdict(result), "settings": self.settings}, ensure_ascii=False)
        try:
            self._file.write(line.encode("utf-8") + b"\n")
            self._file.flush()
        except OSError as e:
            raise R1ChatError(f"cannot write {self.path}: {e}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _parse(raw: bytes) -> Any:
    """A line's JSON value; None when it is not whole JSON (cut short, or not JSON at all)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def needs_solving(problem: Problem, done: dict[str, Result]) -> bool:
    """Whether `problem` has no result to reuse: never solved, or skipped (tried again: a
    larger --ctx may hold it now)."""
    prev = done.get(problem.key)
    return prev is None or prev.skipped is not None


def solve(
    engine: Engine,
    problem: Problem,
    settings: Settings,
    preset: str | None,
    cancel: threading.Event | None = None,
) -> Result:
    """The problem's k samples (k: `settings.samples`), each steered as a single reply is,
    graded against its answer; or a skipped result when its prompt does not fit in the context
    (one long problem must not end a long run)."""
    t0 = time.perf_counter()
    messages = [ChatMessage("user", apply_preset(problem.question, preset))]
    try:
        got = ask_many(
            engine,
            messages,
            settings.sampling_params(),
            settings.samples,
            cancel=cancel,
            reasoning=settings.reasoning_params(),
            ctx_tokens=settings.ctx,
        )
    except PromptTooLong as e:
        # The engine's own measure: this prompt is what does not fit, a short one would. (A
        # server's refusal has its own words: it ends the run.)
        why = str(e)
        k = settings.samples
        return Result(
            index=problem.index,
            id=problem.id,
            answer=problem.answer,
            boxed=[None] * k,
            correct=[False] * k,
            vote=None,
            vote_correct=False,
            thinking_tokens=[],
            tokens=0,
            seconds=time.perf_counter() - t0,
            finish=[],
            key=problem.key,
            skipped=why,
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
        key=problem.key,
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
    """Each problem's result, in order: one in `done` is reused (not solved again), but for a
    skipped one. A problem stopped midway (`cancel`) is not yielded: it is not done. Results in
    `done` of problems not in `problems` are left out."""
    done = done or {}
    for p in problems:
        if not needs_solving(p, done):
            yield done[p.key]
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
    """The report; a skipped problem counts as wrong (its k samples and its vote), and its
    missing samples add nothing to the thinking tokens or the speed."""
    n = len(results)
    samples = [c for r in results for c in r.correct]
    thinking = [t for r in results for t in r.thinking_tokens]
    seconds = sum(r.seconds for r in results if r.skipped is None)
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
        "skipped": sum(r.skipped is not None for r in results),
    }
