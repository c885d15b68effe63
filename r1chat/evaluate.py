"""`r1chat eval`: a benchmark file of problems with known answers, k samples each, graded.

Reads JSONL in the shape MATH-500 is published in on Hugging Face (and Qwen2.5-Math's copy of
AIME 2024): one object per line with `problem` (or `question`) and `answer`; r1chat.suites reads
the card's own benchmarks into the same problems. Reports pass@1 (the mean over all samples of
being right, as the model card's table does) with its 95 % interval (`wilson`), maj@k (the vote
being right), conf@k (DeepConf's confidence-weighted vote being right, where the engine measures
confidence; the majority where it does not), the mean thinking tokens, decode speed and wall
time. Results go one line per problem to `--out` as each is done, so a stopped run keeps what it
finished and a rerun goes on from there.

Stopping early (`--stop-early`, off by default) stops a problem's samples once its vote is
settled: maj@k stays what it would be ("overtaken"; nearly so with "beta"), but pass@1 is then
measured over the samples that finished, which are the shorter ones: it says so.

A result is reused only for the same problem (its question and gold answer, not its id: ids
repeat within files and across them) under the same settings (each line carries them), so a
rerun never counts another benchmark's or another configuration's results as its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

from r1chat.answers import grade
from r1chat.confidence import KEEP
from r1chat.config import Settings
from r1chat.endings import STOPPED_EARLY
from r1chat.engines.base import Engine
from r1chat.errors import PromptTooLong, R1ChatError
from r1chat.many import EarlyRule, SampleProgress, ask_many
from r1chat.prompts import ChatMessage, apply_preset

# json.loads turns a lone "\ud800" escape into a lone surrogate, which no UTF-8 encoder takes
# (writing --out, printing, tokenizing would fail later): they become U+FFFD on loading.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Whether a sample's \boxed{} answer (None: it boxed none) is the gold answer.
Grader = Callable[[str | None, str], bool]
# The normal quantile of a two-sided 95 % interval.
_Z95 = 1.959963984540054


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
    # Added later, with defaults, so that the lines of an older --out still load.
    # Each sample's confidence (its lowest group confidence; None where none was measured).
    confidence: list[float | None] = field(default_factory=list)
    conf_vote: str | None = None  # the confidence-weighted vote's answer
    # Whether it was right; None in an older line, where it counts as the majority did.
    conf_vote_correct: bool | None = None
    conf_weighted: bool = False  # every answer had a confidence (else it is the majority)
    stopped_early: int = 0  # samples stopped once the vote was settled (--stop-early)
    tokens_saved_estimate: int = 0  # what they would have written besides, about


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
    return problems_from_rows(_json_rows(path, lines), str(path), limit)


def _json_rows(path: Path, lines: list[str]) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise R1ChatError(f"{path}:{n}: not a JSON object", 2) from None
        except RecursionError:
            raise R1ChatError(f"{path}:{n}: nested too deeply to be a problem", 2) from None
        yield n, row


def problems_from_rows(
    rows: Iterable[tuple[int, Any]], source: str, limit: int | None = None
) -> list[Problem]:
    """Problems from (line number, row) pairs, each row an object with `problem` (or
    `question`) and `answer`, whatever file they were read from (`source` names it)."""
    problems: list[Problem] = []
    seen: Counter[tuple[str, str]] = Counter()
    for n, row in rows:
        if not isinstance(row, dict):
            raise R1ChatError(f"{source}:{n}: not a JSON object", 2)
        question = row.get("problem", row.get("question"))
        answer = row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise R1ChatError(f'{source}:{n}: no "problem" (or "question") text', 2)
        if answer is None or isinstance(answer, (dict, list)):
            raise R1ChatError(f'{source}:{n}: no "answer"', 2)
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
        raise R1ChatError(f"{source}: no problems in it", 2)
    return problems


def eval_settings(
    settings: Settings, preset: str | None, early: EarlyRule = "off", keep: float = KEEP
) -> dict[str, Any]:
    """The settings a result depends on, as --out records them with each result. Not those
    that change only how it is computed (--ctx, --gpu-layers, threads). Early stopping and the
    confidence vote's share are recorded only when not the default, so that an --out written
    before they existed goes on."""
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
        **({"stop_early": early} if early != "off" else {}),
        **({"keep": keep} if keep != KEEP else {}),
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
    "stop_early": "--stop-early",
    "keep": "--keep",
}
_RESULT_FIELDS = frozenset(f.name for f in fields(Result))
# What every line has had from the first: the fields added later have defaults.
_FIRST_FIELDS = frozenset(
    f.name for f in fields(Result) if f.default is MISSING and f.default_factory is MISSING
)


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
        if not _FIRST_FIELDS <= set(row) <= _RESULT_FIELDS or not isinstance(row["key"], str):
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
    *,
    grader: Grader = grade,
    on_progress: Callable[[SampleProgress], None] | None = None,
    early: EarlyRule = "off",
    keep: float = KEEP,
) -> Result:
    """The problem's k samples (k: `settings.samples`), each steered as a single reply is,
    graded against its answer, with both votes; or a skipped result when its prompt does not
    fit in the context (one long problem must not end a long run)."""
    t0 = time.perf_counter()
    messages = [ChatMessage("user", apply_preset(problem.question, preset))]
    try:
        got = ask_many(
            engine,
            messages,
            settings.sampling_params(),
            settings.samples,
            cancel=cancel,
            on_progress=on_progress,
            reasoning=settings.reasoning_params(),
            ctx_tokens=settings.ctx,
            early=early,
            keep=keep,
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
    conf = got.confident
    conf_vote = conf.answer if conf is not None else None
    return Result(
        index=problem.index,
        id=problem.id,
        answer=problem.answer,
        boxed=boxed,
        correct=[grader(b, problem.answer) for b in boxed],
        vote=got.vote.answer,
        vote_correct=grader(got.vote.answer, problem.answer),
        thinking_tokens=[s.thinking_tokens for s in got.samples],
        tokens=got.tokens_spent,
        seconds=time.perf_counter() - t0,
        finish=[s.finish_reason for s in got.samples],
        key=problem.key,
        confidence=[s.stats.confidence for s in got.samples],
        conf_vote=conf_vote,
        conf_vote_correct=grader(conf_vote, problem.answer),
        conf_weighted=conf is not None and conf.weighted,
        stopped_early=got.early_stop.stopped if got.early_stop is not None else 0,
        tokens_saved_estimate=got.tokens_saved,
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
    grader: Grader = grade,
    on_progress: Callable[[SampleProgress], None] | None = None,
    early: EarlyRule = "off",
    keep: float = KEEP,
) -> Iterator[Result]:
    """Each problem's result, in order: one in `done` is reused (not solved again), but for a
    skipped one. A problem stopped midway (`cancel`) is not yielded: it is not done (samples
    stopped early are: their problem's vote is settled). Results in `done` of problems not in
    `problems` are left out. `grader` tells a right answer (the suites' own: AIME's answers are
    integers); `on_progress` hears each sample's new text."""
    done = done or {}
    for p in problems:
        if not needs_solving(p, done):
            yield done[p.key]
            continue
        if cancel is not None and cancel.is_set():
            return
        result = solve(
            engine,
            p,
            settings,
            preset,
            cancel,
            grader=grader,
            on_progress=on_progress,
            early=early,
            keep=keep,
        )
        if "cancelled" in result.finish:
            return
        if on_result is not None:
            on_result(result)
        yield result


def _finished(r: Result, per_sample: list[Any]) -> list[Any]:
    """`per_sample` (one entry per sample of `r`) without the samples stopped early: they are
    no draw of the model's answer. A skipped problem's entries all stay."""
    if r.skipped is not None or len(per_sample) != len(r.finish):  # the latter: a hand-made line
        return per_sample
    return [x for x, f in zip(per_sample, r.finish, strict=True) if f != STOPPED_EARLY]


def summary(results: list[Result], k: int, wall_s: float) -> dict[str, Any]:
    """The report; a skipped problem counts as wrong (its k samples and both votes), and its
    missing samples add nothing to the thinking tokens or the speed.

    Samples stopped early count in the tokens spent, not in pass@1 or the thinking tokens: they
    were stopped midway. pass@1 is then the mean over the samples that finished, which leans to
    the shorter ones (they finish first): `pass@1_of_finished` says so. conf@k is the
    confidence vote's score; where no confidence was measured that vote is the majority's
    (`confidence_measured` is False unless every problem solved had them)."""
    n = len(results)
    samples = [c for r in results for c in _finished(r, r.correct)]
    pass1 = sum(samples) / len(samples) if samples else 0.0
    thinking = [t for r in results for t in _finished(r, r.thinking_tokens)]
    seconds = sum(r.seconds for r in results if r.skipped is None)
    solved = [r for r in results if r.skipped is None]
    conf_right = sum(
        r.vote_correct if r.conf_vote_correct is None else r.conf_vote_correct for r in results
    )
    stopped = sum(r.stopped_early for r in results)
    return {
        "problems": n,
        "samples": k,
        "pass@1": pass1,
        "pass@1_ci95": list(wilson(pass1, n)),
        f"maj@{k}": sum(r.vote_correct for r in results) / n if n else 0.0,
        f"conf@{k}": conf_right / n if n else 0.0,
        "confidence_measured": bool(solved) and all(r.conf_weighted for r in solved),
        "mean_thinking_tokens": sum(thinking) / len(thinking) if thinking else 0.0,
        "tokens": sum(r.tokens for r in results),
        "tok_s": sum(r.tokens for r in results) / seconds if seconds > 0 else 0.0,
        "wall_s": wall_s,
        "cut_at_max_tokens": sum(f == "length" for r in results for f in r.finish),
        "skipped": sum(r.skipped is not None for r in results),
        "stopped_early": stopped,
        "tokens_saved_estimate": sum(r.tokens_saved_estimate for r in results),
        "pass@1_of_finished": stopped > 0,
    }


def wilson(p: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a pass rate `p` measured over `n` problems.

    Why Wilson over problems, and not over samples or a bootstrap: a problem's k samples are
    not independent (an easy problem is right in all of them), so the unit is the problem and
    n is the number of problems. With k = 1 each problem scores 0 or 1 and this is the usual
    Wilson interval; with k > 1 a problem scores a fraction in [0, 1], whose variance is at most
    p(1 - p), so the same interval is a little wide, never too narrow. A bootstrap over problems
    would fit k > 1 exactly but collapses to a point when every problem is right or wrong (5 of
    5 right gives [100 %, 100 %]), which is where a short `--limit` run lands; Wilson's stays
    honest there (5 of 5: 57-100 %) and costs nothing to compute. The first N problems of a
    suite are not a random draw from it: the interval speaks for those N.
    """
    if n <= 0:
        return (0.0, 1.0)
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 / (1 + z2 / n) * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))
