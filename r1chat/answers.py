"""Final answers of math problems: which answer a reply gives, whether two mean the same, and
which one most samples agree on.

Why math-verify (Hugging Face's grader, the one open-r1 scores R1 reproductions with) and not a
normaliser of our own: the same answer comes in too many forms to list. `0.5`, `\\frac12`, `1/2`
and `50\\%` are one number; `x = 3` is `3`; `(1, 2)` is `\\left(1,2\\right)` but not `(2, 1)`;
`[0, 1)` is not `[0, 1]`; `\\frac{\\sqrt2}2` is `\\sqrt{2}/2`. math-verify parses LaTeX into SymPy
(numbers, sets, intervals, tuples, equations, matrices) and compares with SymPy, after cleaning
up `\\left`, `\\dfrac`, `\\text{ cm}`, `^\\circ` and the like.

Which answer (`extract`): as math-verify reads a reply, so that a vote, `ask -k` and `eval` grade
what open-r1 would. Every box of the final answer counts: `\\boxed{-2} and \\boxed{1}` is the set
`-2, 1`, not `1` (boxes close together or joined by "and", "or", a comma). A reply without a box
falls back to math-verify's own patterns ("final answer is $…$", the last `$…$`, the last
number). r1chat's deliberate differences: only the text after the thinking is read; what it
finds first is the answer even when it does not parse (it is then compared as text), where
math-verify goes on to the next match that parses.

Time: some answers make SymPy work for minutes (`2^{2^{30}}`, an integral, a tower of powers
inside a sine). Each comparison runs under one total limit, `_TIME_LIMIT_S`, in a worker process
of a small pool, which is killed when the limit passes; a timed-out comparison counts as not
equal and says so (`Verdict.timed_out`, `Vote.timed_out`). A thread cannot be stopped, and a
blocking call ignores a deadline checked between calls: before this, two parses and a comparison
each had their own 5 s (12.7 s in all for one answer), and a late result still counted.

* The workers are forked from a forkserver that imported math-verify once, never from this
  process: the app runs threads (Textual, engines), and forking a threaded process can copy a
  lock held by another thread. Where there is no forkserver (Windows), they are spawned.
* In a worker's main thread a timer signal (`setitimer`) raises math-verify's own
  `TimeoutException`, which parse and verify already handle, so a slow answer usually ends
  cleanly and the worker is reused; only C code that ignores signals (big-integer arithmetic)
  needs the kill. math-verify's own alarms stay off: each call's `signal.alarm` would reset the
  comparison's timer, and they take whole seconds.
* When no worker process can start (a sandbox without processes, a start past
  `_START_LIMIT_S`), comparisons run in this process with the earlier bound: a trace function
  (`sys.settrace`, per thread) raises the same exception at the next Python call past the limit,
  under one lock (the ANTLR runtime under math-verify's parser shares a cache without locking).
  It makes math-verify about twice as slow and cannot stop C code. `grading_mode()` says which.

What cannot be parsed cheaply is not parsed at all, so the common slow cases never reach the
limit: answers over `MAX_CHARS`, brackets nested deeper than `_MAX_DEPTH`, chained powers,
unbalanced braces, integrals, limits, sums and products (SymPy would work them out), what the
parser evaluates on the spot (`\\binom{10^{12}}{10^5}`, `\\Gamma(10^7)`, matrix operators); and
a parsed answer whose exact value would run past `_MAX_DIGITS` digits keeps only its text. Those
compare by normalised text.

No I/O but the workers' pipes, no UI. math-verify and SymPy load in the workers (about a second
and a half, once), not when this module is imported.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import itertools
import logging
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Literal

from r1chat.reasoning import closing_brace

__all__ = [
    "MAX_CHARS",
    "Verdict",
    "Vote",
    "check",
    "compare",
    "equivalent",
    "extract",
    "grade",
    "grading_mode",
    "vote",
    "warm_up",
]

# Past this, answers compare by normalised text only. Real final answers run to a few dozen
# characters, rarely past 150; what is longer is mostly a model boxing its reasoning. The cost of a
# comparison grows fast with length: a list of 50 pairs (200 characters) takes about a second, of
# 250 pairs (1,000 characters) several.
MAX_CHARS = 300
# Real answers nest 4 or 5 deep (`\left(\frac{\sqrt{3}}{2}, ...\right)`); 8 parses in under a
# second (the worst: mixed brackets, the first time), 20 took two minutes.
_MAX_DEPTH = 8
# 1000! has 2,568 digits and compares in a fraction of a second; 2^(2^30) takes 12 s, (10^6)! 10.
_MAX_DIGITS = 10_000.0
# One comparison (both parses and every check between them), or one reading of a reply without
# a box, all told: math-verify's own default, which it applied to each step separately.
_TIME_LIMIT_S = 5.0
# The worker stops itself this long before the limit, so that it answers "timed out" and stays
# in the pool; the kill at the limit is for what a signal cannot interrupt.
_STOP_MARGIN_S = 0.5
# A worker not ready by then (math-verify's imports on a loaded machine take a few seconds) is
# taken for a pool that cannot start: comparisons then run in this process.
_START_LIMIT_S = 60.0
# One worker serves a vote (its comparisons come one at a time); a second only when threads
# compare at once. Each holds SymPy and the parser, about 100 MB.
_POOL_SIZE = 2

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vote:
    answer: str | None  # the winning answer as first written by a sample (None: no sample had one)
    count: int  # how many samples agree with it
    of: int  # how many samples in all (including those without an answer)
    members: tuple[int, ...]  # indices of the samples in the winning group
    # Comparisons that ran out of time: each counted as "not the same answer", so a group may be
    # smaller than it should.
    timed_out: int = 0


@dataclass(frozen=True)
class Verdict:
    """Whether two answers mean the same (or a prediction matches its gold)."""

    equal: bool
    # No answer within the time limit (or the process comparing died): counted as not equal.
    timed_out: bool = False

    def __bool__(self) -> bool:
        return self.equal


def equivalent(a: str, b: str) -> bool:
    """Whether two final answers (\\boxed{} contents, LaTeX or plain) mean the same.

    Symmetric. A blank answer (an empty `\\boxed{}`) states nothing and equals nothing. An
    answer too slow to compare equals nothing but itself: `compare` says when that happened."""
    return compare(a, b).equal


def compare(a: str, b: str) -> Verdict:
    """`equivalent`, saying whether the comparison ran out of time."""
    x, y = _prepare(a), _prepare(b)
    if not (x and y):
        return Verdict(False)
    return _same(*sorted((x, y)))


def vote(answers: Sequence[str | None]) -> Vote:
    """Majority vote: group equivalent answers; the largest group wins; ties go to the group whose
    first member came first. None (no answer) never wins, nor does a blank answer.

    Each answer joins the first group whose first member it is equivalent to; each comparison has
    its own time limit, and those that ran out are counted in `Vote.timed_out`."""
    groups: list[list[int]] = []
    heads: list[str] = []
    timed_out = 0
    for i, answer in enumerate(answers):
        text = _prepare(answer) if answer is not None else ""
        if not text:
            continue
        for group, head in zip(groups, heads, strict=True):
            verdict = _same(*sorted((head, text)))
            timed_out += verdict.timed_out
            if verdict.equal:
                group.append(i)
                break
        else:
            groups.append([i])
            heads.append(text)
    if not groups:
        return Vote(answer=None, count=0, of=len(answers), members=(), timed_out=timed_out)
    # max() keeps the first of equals: groups are in order of their first member.
    best = max(groups, key=len)
    return Vote(
        answer=answers[best[0]],
        count=len(best),
        of=len(answers),
        members=tuple(best),
        timed_out=timed_out,
    )


def grade(predicted: str | None, gold: str) -> bool:
    """Whether a predicted final answer matches a dataset's gold answer (`3`, `\\frac{1}{2}`,
    `(1, 2)`, `[0, 1)`, `10\\%`, `\\text{(B)}`...).

    Gold goes first to math-verify, as it expects: `x = 3` against gold `3` is right, and so is
    `3` against gold `x = 3`."""
    return check(predicted, gold).equal


def check(predicted: str | None, gold: str) -> Verdict:
    """`grade`, saying whether the comparison ran out of time."""
    if predicted is None:
        return Verdict(False)
    pred, ref = _prepare(predicted), _prepare(gold)
    if not pred or not ref:
        return Verdict(False)
    if _plain(pred) == _plain(ref):
        return Verdict(True)
    return _graded(pred, ref)


def extract(reply: str, *, fallback: bool = True) -> str | None:
    """The final answer a reply gives, as math-verify reads it; None when it gives none.

    Only the text after the last `</think>` counts. The boxes of the final answer are joined as
    math-verify joins them, working back from the last `\\boxed{}`: a box joins when it is closer
    than 10 characters to the next, or than 70 with "and", "or", a comma or a semicolon between
    and another content; a repeat counts once. Several give `a, b`, which compares as a set.

    Without a closed last box (and with `fallback`), math-verify's own ladder of patterns picks
    the answer: "final answer is $…$", "answer: …", the last `$…$`, `\\[…\\]` or `\\(…\\)`, the
    last number or expression; and "The final answer is $…$. I hope it is correct." after the
    last box wins over it, as there. The answer comes back as written: `$-2,1$` gives `-2,1`,
    `12,000,023` gives `12000023`, `$28$\\%` gives `28\\%`. Unlike math-verify, a match that does
    not parse is still the answer (compared as text), as a box is: math-verify would go on to
    the next one that parses, reading `1 - \\frac{1}{\\mathrm{e}}` (which it cuts short) as `1`."""
    text = reply.rpartition("</think>")[2]
    boxes = _final_boxes(text)
    if boxes is not None:
        boxed, end = boxes
        if not fallback or not _HOPE.search(text, end):
            return boxed
        return _read_reply(text, boxed)
    return _read_reply(text, None) if fallback else None


def grading_mode() -> str:
    """Where comparisons run, in a line for `doctor` and logs: worker processes (and how they
    start) or this process (and why)."""
    if _fallback_reason is not None:
        return f"in this process, bounded by a trace function ({_fallback_reason})"
    method = _context_name()
    return f"worker processes ({method}), at most {_TIME_LIMIT_S:g} s a comparison"


def warm_up() -> None:
    """Start a worker now, in the background, so that the first comparison does not wait for
    math-verify's imports (about a second and a half): call it when samples begin. Every run of
    samples calls it (each problem of an eval): one warm-up at a time is enough."""
    if _warming.acquire(blocking=False):
        threading.Thread(target=_warm_up, name="r1chat-grader-warm-up", daemon=True).start()


_warming = threading.Lock()  # held while a warm-up runs


def _warm_up() -> None:
    try:
        pool = _the_pool()
        if pool is not None:
            try:
                pool.prepare()
            except _PoolBroken as e:
                _fall_back(str(e))
    finally:
        _warming.release()


# --- reading the answer out of a reply ----------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What lets a box further back join the last one, as math-verify has it.
_JOINS = re.compile(r"\b(?:and|or)\b|[,;]")
# MATH's few-shot ending, which math-verify ranks with boxes: the last of them wins.
_HOPE = re.compile(r"(?i:final answer is)[\s\S]*?I hope")


def _final_boxes(text: str) -> tuple[str, int] | None:
    """The boxes of the final answer joined by ", ", and where the last one ends; None when
    there is no `\\boxed{}` or the last box is not closed (a reply cut short: math-verify gets
    nothing from it either)."""
    boxes = list(_BOX.finditer(text))
    if not any(m[0].startswith("\\boxed") for m in boxes):
        return None  # math-verify looks for `\boxed{`; `\fbox` only counts beside one
    contents: list[str] = []
    later_start = end = len(text)
    for m in reversed(boxes):
        close = closing_brace(text, m.end(), later_start)
        if close is None:
            if not contents:
                return None
            break
        content = text[m.end() : close].strip()
        if not contents:
            end = close + 1
        else:
            gap = text[close + 1 : later_start]
            joins = len(gap) < 10 or (
                content != contents[-1] and len(gap) < 70 and _JOINS.search(gap) is not None
            )
            if not joins:
                break
        if not contents or content != contents[-1]:
            contents.append(content)
        later_start = m.start()
    return ", ".join(reversed(contents)), end


@lru_cache(maxsize=256)
def _read_reply(text: str, boxed: str | None) -> str | None:
    timed_out, answer = _run("read", (text, boxed))
    if timed_out:
        _log.info("reading an answer out of a reply ran past %g s", _TIME_LIMIT_S)
    return answer if isinstance(answer, str) else boxed


def _read_now(text: str, boxed: str | None) -> str | None:
    """math-verify's extraction ladder: its regexes, in its order (priority groups, the
    rightmost match first in each), the first match wins. `boxed`: the final answer's boxes,
    when a box pattern wins (None: the last box is not closed, and box patterns are passed
    over). Regexes alone, no parse: it runs in a worker only because math-verify's regexes come
    with SymPy, and a regex cannot be interrupted."""
    from math_verify import ExprExtractionConfig
    from math_verify.parser import get_extraction_regexes

    patterns = [
        (pattern, target, priority)
        for target_patterns, target in get_extraction_regexes(_math_verify().reading)
        for pattern, priority in target_patterns
    ]
    patterns.sort(key=lambda p: p[2])
    for _, group in itertools.groupby(patterns, key=lambda p: p[2]):
        matches = [
            (m, target, "boxed" in pattern.pattern)
            for pattern, target, _ in group
            for m in pattern.finditer(text)
        ]
        matches.sort(key=lambda found: (found[0].end(), -found[0].start()), reverse=True)
        for m, target, box in matches:
            if box:
                if boxed is not None:
                    return boxed
                continue
            answer = _as_written(m, isinstance(target, ExprExtractionConfig))
            if answer:
                return answer
    return None


_ENV_GROUP = re.compile(r"(first|next\d)_latex")


def _as_written(m: re.Match[str], expression: bool) -> str:
    """A match of math-verify's patterns as the answer it stands for, in the reply's words."""
    found = m.groupdict()
    percent = "\\%"
    if expression:
        # A number as math-verify reads it (`12,000,023` and `1 000` are one number), or an
        # expression (`1/2`) as written.
        integer = next((v for k, v in found.items() if k.startswith("integer") and v), "")
        decimal = next((v for k, v in found.items() if k.startswith("decimal") and v), "")
        if integer or decimal:
            written = (integer.replace(",", "").replace(" ", "").lstrip("0") or "0") + (
                decimal.replace(",", ".")
            )
        else:
            written = (found.get("expr") or "").strip()
        return written + percent if written and found.get("percent") else written
    parts = []
    for name, value in found.items():
        env = _ENV_GROUP.match(name)
        if env is None or not value:
            continue
        value = value.strip()
        if _BOX.search(value):  # math-verify takes every box of an environment
            value = ", ".join(_all_boxes(value))
        if found.get(f"{env[1]}_percent"):
            value += percent
        parts.append(value)
    return ", ".join(parts)


def _all_boxes(text: str) -> list[str]:
    contents = []
    for m in _BOX.finditer(text):
        close = closing_brace(text, m.end(), len(text))
        if close is not None:
            contents.append(text[m.end() : close].strip())
    return contents or [text]


# --- preparing the text -------------------------------------------------------------------------

# Each of these fixes a form math-verify 0.9.0 gets wrong:
# `1\,000`, `1\;000`, `1~000` and `1 000` parse as 1 * 000 = 0: spaces between digit groups;
_DIGIT_GROUPS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\\[,;:! ]|~|\s)+\d{3}(?!\d))+")
_GROUP_SPACE = re.compile(r"\\[,;:! ]|~|\s")
# `6.` and `\frac12.` (a sentence's full stop) do not parse at all.
_FULL_STOP = re.compile(r"(?<![\\.])\.\s*$")


def _prepare(answer: str) -> str:
    text = answer.strip()
    # `90°` does not parse; `90^\circ` does, as 90.
    text = text.replace("°", "^\\circ")
    text = _DIGIT_GROUPS.sub(lambda m: _GROUP_SPACE.sub("", m[0]), text)
    return _FULL_STOP.sub("", text).strip()


_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SMALL_FRAC = re.compile(r"\\[dt]frac(?![A-Za-z])")
_SPACING = re.compile(r"\\[,;:! ]|~")
_SPACE_BETWEEN_LETTERS = re.compile(r"(?<=[A-Za-z])\s+(?=[A-Za-z])")


def _plain(text: str) -> str:
    """Text as compared when math-verify is not asked: no layout, no spacing."""
    text = _SMALL_FRAC.sub(r"\\frac", _LEFT_RIGHT.sub("", text))
    text = _SPACING.sub(" ", text)
    # A space between letters can separate a command from a variable (`\pi r`); others cannot.
    text = _SPACE_BETWEEN_LETTERS.sub(" ", text)
    return re.sub(r"\s+(?![A-Za-z])|(?<![A-Za-z])\s+", "", text)


# --- what math-verify is asked ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _same(a: str, b: str) -> Verdict:
    """`a` and `b` prepared, in sorted order (the cache then serves both orders). What timed out
    is cached too: a vote run again as samples come in pays for a slow answer once."""
    if _plain(a) == _plain(b):
        return Verdict(True)
    timed_out, same = _run("same", (a, b))
    return Verdict(bool(same), timed_out)


@lru_cache(maxsize=1024)
def _graded(pred: str, ref: str) -> Verdict:
    timed_out, same = _run("grade", (pred, ref))
    return Verdict(bool(same), timed_out)


def _same_now(a: str, b: str) -> bool:
    x, y = _parsed(a), _parsed(b)
    # math-verify is asymmetric with equations and inequalities (`x = 3` is unwrapped on the gold
    # side, a relation turns into a set...), and only there: equal either way round is equal.
    return _agree(x, y) or (_has_relation(x + y) and _agree(y, x))


def _grade_now(pred: str, ref: str) -> bool:
    return _agree(_parsed(ref), _parsed(pred))


def _has_relation(items: tuple[Any, ...]) -> bool:
    from sympy.core.relational import Relational

    try:
        return any(not isinstance(item, str) and item.has(Relational) for item in items)
    except Exception:
        return True


def _agree(gold: tuple[Any, ...], pred: tuple[Any, ...]) -> bool:
    verify = _math_verify().verify
    for g in gold:
        for p in pred:
            if isinstance(g, str) != isinstance(p, str):
                continue  # math-verify never matches text with an expression
            if _mv(verify, g, p, timeout_seconds=None):
                return True
    return False


@lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[Any, ...]:
    """What math-verify makes of a prepared answer (SymPy objects, then its normalised text), or
    nothing when the answer is not safe to parse. A parse cut by the time limit raises, so it is
    not cached."""
    if not _safe_to_parse(text):
        return ()
    lib = _math_verify()
    # Wrapped as `\boxed{}`, as it came: math-verify only reads LaTeX inside delimiters, and takes
    # a box whole.
    found = _mv(lib.parse, f"\\boxed{{{text}}}", extraction_config=lib.config, parsing_timeout=None)
    return tuple(item for item in found or () if isinstance(item, str) or not _too_big(item))


_MATRIX_OPERATORS = re.compile(
    r"\\det(?![A-Za-z])|\\operatorname\*?\s*\{?\s*(?:eye|rank|trace|tr|rref|nullspace|norm|cols|"
    r"rows|eig|diagonalize|svd|zeros|ones|diag|hstack|vstack|orth)",
    re.IGNORECASE,
)
# Integrals, limits, sums and products: SymPy works them out to compare (a short integral took
# over five seconds); a final answer has them worked out already.
_CALCULUS = re.compile(r"\\(?:i*int|oint|lim|sum|prod)(?![A-Za-z])")
# Evaluated while parsing, to an exact integer: the timeout would be the only bound.
_EAGER = re.compile(r"\\(?:[dt]?binom|choose)(?![A-Za-z])|\\[Gg]amma\s*(?:\\left\s*)?[({\[]")
_GROWTH = re.compile(r"[\^!*]|\\cdot|\\times|\d{5}")
# `x^x^x`: each unbraced power in a chain multiplies the grammar's look-ahead (25 take seconds).
_CHAINED_POWER = re.compile(r"\^\s*(?:\\[A-Za-z]+|[^\\{\s]|\{[^{}]*\})\s*\^")
_ESCAPED_BRACE = re.compile(r"\\[{}]")


def _safe_to_parse(text: str) -> bool:
    if len(text) > MAX_CHARS or any(
        pattern.search(text) for pattern in (_MATRIX_OPERATORS, _CALCULUS, _CHAINED_POWER)
    ):
        return False
    eager = len(_EAGER.findall(text))
    if eager > 1 or (eager and _GROWTH.search(text)):
        return False
    depth = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            if depth > _MAX_DEPTH:
                return False
        elif ch in "})]":
            # Intervals close with the other kind (`[0, 1)`), so any closer closes.
            depth = max(depth - 1, 0)
    # An unbalanced `}` would end the `\boxed{}` the answer is wrapped in.
    braces = 0
    for ch in _ESCAPED_BRACE.sub("", text):
        braces += (ch == "{") - (ch == "}")
        if braces < 0:
            return False
    return braces == 0


def _too_big(expr: Any) -> bool:
    try:
        digits, log_value = _measure(expr)
    except RecursionError:
        return True
    # `not <=` so that a NaN from inf * 0 counts as too big.
    return not (digits <= _MAX_DIGITS and log_value <= _MAX_DIGITS)


def _measure(expr: Any) -> tuple[float, float]:
    """Upper bounds on the digits of `expr`'s exact value and on log10 of its size, for what
    SymPy would compute exactly: powers, factorials, binomials. Symbols count as 10."""
    import sympy

    if isinstance(expr, sympy.MatrixBase):
        parts = [_measure(x) for x in expr]
        return sum(d for d, _ in parts) + 1, max((v for _, v in parts), default=0.0)
    if not isinstance(expr, sympy.Basic):
        return 1.0, 0.0
    if isinstance(expr, sympy.Integer):
        size = _log10_int(int(expr))
        return size + 1, size
    if isinstance(expr, sympy.Rational):
        top, bottom = _log10_int(expr.p), _log10_int(expr.q)
        return top + bottom + 2, top
    if isinstance(expr, sympy.Float):
        try:
            size = max(math.log10(abs(float(expr))), 0.0) if expr else 0.0
        except (OverflowError, ValueError):
            size = math.inf
        return size + 20, size
    if expr.is_Atom:
        return 1.0, 1.0
    if isinstance(expr, sympy.Pow):
        (base_digits, base_size), (exp_digits, exp_size) = map(_measure, expr.args)
        times = _exp10(exp_size)
        return _times(times, base_digits) + exp_digits, _times(times, base_size)
    if isinstance(expr, (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.gamma)):
        arg_digits, arg_size = _measure(expr.args[0])
        n = _exp10(arg_size)
        size = _times(n, math.log10(n + 1) if math.isfinite(n) else math.inf)
        return size + 1 + arg_digits, size
    if isinstance(expr, (sympy.binomial, sympy.RisingFactorial, sympy.FallingFactorial)):
        (x_digits, x_size), (k_digits, k_size) = map(_measure, expr.args[:2])
        size = _times(_exp10(k_size), max(x_size, 1.0))
        return size + 1 + x_digits + k_digits, size
    parts = [_measure(x) for x in expr.args]
    digits = sum(d for d, _ in parts) + 1
    sizes = [v for _, v in parts]
    if isinstance(expr, sympy.Mul):
        return digits, sum(sizes)
    return digits, max(sizes, default=0.0) + math.log10(len(sizes) + 1)


def _log10_int(n: int) -> float:
    return math.log10(abs(n)) if n else 0.0


def _exp10(x: float) -> float:
    return math.inf if x > 300 else 10.0**x


def _times(a: float, b: float) -> float:
    return 0.0 if a == 0 or b == 0 else a * b


# --- one comparison under one limit -------------------------------------------------------------

_OPS: dict[str, Callable[..., Any]] = {"same": _same_now, "grade": _grade_now, "read": _read_now}


class _OutOfTime(BaseException):
    """The comparison's limit passed, seen between math-verify's calls. A BaseException, as
    math-verify's own timeout is: no `except Exception` on the way swallows it."""


@dataclass
class _Clock:
    """The limit of the comparison running now (one at a time: a worker's main thread, or under
    `_lock` in this process)."""

    stop_at: float
    traced: bool  # bounded by a trace function (in this process), not by a timer signal
    fired: bool = False  # the limit interrupted math-verify, which may have returned quietly

    def past(self) -> bool:
        return self.fired or time.monotonic() >= self.stop_at


_clock: _Clock | None = None
_lock = threading.Lock()


def _mv(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A call into math-verify inside the running comparison. What comes back after the limit
    does not count, even when math-verify caught the timeout itself and returned "not equal" or
    "nothing parsed": the comparison is over."""
    clock = _clock
    if clock is None:  # called outside a comparison (directly, by a test): no limit
        return fn(*args, **kwargs)
    if clock.past():
        raise _OutOfTime
    result = _traced(clock, fn, *args, **kwargs) if clock.traced else fn(*args, **kwargs)
    if clock.past():
        raise _OutOfTime
    return result


def _timed(op: str, args: tuple[Any, ...], limit: float, traced: bool) -> tuple[bool, Any]:
    """(timed out, result) of one operation under one limit. With a timer signal (a worker's main
    thread), the signal raises math-verify's `TimeoutException` wherever the work is."""
    global _clock
    timeout = _math_verify().timeout
    clock = _Clock(time.monotonic() + limit, traced)
    _clock = clock
    try:
        try:
            if not traced:
                signal.setitimer(signal.ITIMER_REAL, limit)
            return False, _OPS[op](*args)
        finally:
            if not traced:
                signal.setitimer(signal.ITIMER_REAL, 0)
            _clock = None
    except (_OutOfTime, timeout):
        return True, None


def _on_timer(signum: int, frame: FrameType | None) -> None:
    clock = _clock
    if clock is not None:
        clock.fired = True
        raise _math_verify().timeout("answer comparison ran past its time limit")


def _traced(clock: _Clock, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, with math-verify's `TimeoutException` raised at the next Python call
    past the clock's limit, where its signal handler would have raised it. A trace function is
    called at each Python call in this thread (only this one); whatever tracer was set (a
    debugger, coverage) keeps being called, and is put back after."""
    timeout = _math_verify().timeout
    previous = sys.gettrace()

    def check(frame: FrameType, event: _TraceEvent, arg: Any) -> Any:
        # Not into a generator being resumed, nor a finaliser: a generator closed by the garbage
        # collector, or __del__, would print the exception to stderr and carry on. (Any raise
        # unsets the tracer, so a swallowed one would also end the deadline.)
        if (
            time.monotonic() > clock.stop_at
            and not frame.f_code.co_flags & _RESUMABLE
            and frame.f_code.co_name != "__del__"
        ):
            clock.fired = True
            raise timeout("answer comparison ran past its time limit")
        return previous(frame, event, arg) if previous is not None else None

    # Not a context manager: its __exit__ would be a traced call, and could be the one that
    # raises, leaving the tracer set.
    sys.settrace(check)
    try:
        return fn(*args, **kwargs)
    finally:
        sys.settrace(previous)


_TraceEvent = Literal["call", "line", "return", "exception", "opcode"]
_RESUMABLE = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)


def _run(op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
    """(timed out, result) of one operation under `_TIME_LIMIT_S`: in a worker, or here when no
    worker can start."""
    limit = _TIME_LIMIT_S
    if limit <= 0:
        return True, None
    pool = _the_pool()
    if pool is not None:
        try:
            return pool.run(op, args, limit)
        except _PoolBroken as e:
            _fall_back(str(e))
    with _lock:
        return _timed(op, args, limit, traced=True)


# --- the worker processes ----------------------------------------------------------------------


class _PoolBroken(Exception):
    """No worker process can run: comparisons go on in this process."""


def _serve(conn: Connection, initializer: Callable[[], None] | None) -> None:
    """A worker's life, in its main thread: answer (op, args, limit) requests until the pipe
    closes or None comes."""
    # Ctrl+C reaches the whole process group; the app decides what it stops, and ends us by
    # closing the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A traceback or a library's warning must not land on the app's screen, and the terminal's
    # input is the app's.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    timer = hasattr(signal, "setitimer")
    if timer:
        signal.signal(signal.SIGALRM, _on_timer)
    # The grammar is built at the first parse (a few hundred milliseconds): before any request.
    _timed("same", ("\\frac{1}{2}", "0.5"), _START_LIMIT_S, traced=not timer)
    if initializer is not None:
        initializer()
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        op, args, limit = request
        try:
            outcome = _timed(op, args, limit, traced=not timer)
        except Exception as e:  # a bug, not an answer: not equal, and the worker goes on
            outcome = (False, None)
            _log.debug("grader failed on %r: %r", args, e)
        conn.send(outcome)


class _Worker:
    def __init__(self, ctx: BaseContext, initializer: Callable[[], None] | None) -> None:
        parent, child = ctx.Pipe()
        self.conn = parent
        self.process: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child, initializer), name="r1chat-grader", daemon=True
        )
        try:
            self.process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        try:
            ready = parent.poll(_START_LIMIT_S) and parent.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise _PoolBroken(f"no grader process was ready within {_START_LIMIT_S:g} s")

    def run(self, op: str, args: tuple[Any, ...], limit: float) -> tuple[bool, Any] | None:
        """(timed out, result); None when the worker had to be killed or died (it is gone)."""
        try:
            self.conn.send((op, args, max(limit - _STOP_MARGIN_S, limit / 2)))
            if self.conn.poll(limit):
                outcome: tuple[bool, Any] = self.conn.recv()
                return outcome
        except (EOFError, OSError):
            pass
        self.kill()
        return None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=1)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class _Pool:
    """Up to `size` workers, started when needed, reused across comparisons; one that overruns
    is killed, and its place taken by a new one at the next request."""

    def __init__(
        self, ctx: BaseContext, size: int, initializer: Callable[[], None] | None = None
    ) -> None:
        self._ctx = ctx
        self._size = size
        self._initializer = initializer
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self.killed = 0  # workers killed at the limit (for tests and benchmarks)

    def prepare(self) -> None:
        """At least one worker ready (for a warm-up)."""
        worker = self._take()
        self._give(worker)

    def run(self, op: str, args: tuple[Any, ...], limit: float) -> tuple[bool, Any]:
        worker = self._take()
        try:
            outcome = worker.run(op, args, limit)
        except BaseException:
            # Stopped while waiting (Ctrl+C): its answer would reach the next request.
            worker.kill()
            self._give(None, worker)
            raise
        if outcome is None:
            self.killed += 1
            self._give(None, worker)
            return True, None
        self._give(worker)
        return outcome

    def _take(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise _PoolBroken("the grader was shut down")
                if self._idle:
                    worker = self._idle.pop()
                    self._busy.add(worker)
                    return worker
                # One start at a time: a request waits for a worker being started (by a warm-up,
                # by another thread) rather than start a second one beside it.
                if not self._starting and len(self._busy) < self._size:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker(self._ctx, self._initializer)
        except BaseException as e:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            if isinstance(e, Exception) and not isinstance(e, _PoolBroken):
                # No processes here (a sandbox, no /dev/shm, a limit reached).
                raise _PoolBroken(f"no grader process could start: {e}") from e
            raise
        with self._cond:  # busy before the next request looks: never more than `size`
            self._starting -= 1
            self._busy.add(worker)
            self._cond.notify()
        return worker

    def _give(self, worker: _Worker | None, gone: _Worker | None = None) -> None:
        with self._cond:
            if worker is not None:
                self._busy.discard(worker)
                self._idle.append(worker)
            if gone is not None:
                self._busy.discard(gone)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, busy = self._idle, list(self._busy)
            self._idle = []
            self._cond.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:  # only at exit, with a comparison still waiting in another thread
            worker.kill()


_shared: _Pool | None = None
_fallback_reason: str | None = None
_pool_lock = threading.Lock()


def _context_name() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _context() -> BaseContext:
    """How workers start (ValueError where there is no way)."""
    ctx = multiprocessing.get_context(_context_name())
    preload = getattr(ctx, "set_forkserver_preload", None)
    if preload is not None:
        # Imported once in the forkserver, so that each worker forked from it starts warm. The
        # forkserver serves this process alone; `__main__` is in its default list.
        preload(["__main__", "math_verify", __name__])
    return ctx


def _the_pool() -> _Pool | None:
    """The shared pool, created at first use; None once comparisons run in this process."""
    global _shared
    why = ""
    with _pool_lock:
        if _shared is None and _fallback_reason is None:
            try:
                _shared = _Pool(_context(), _POOL_SIZE)
            except ValueError as e:
                why = f"no way to start a process: {e}"
            else:
                atexit.register(_shared.close)
        pool = _shared
    if why:
        _fall_back(why)
    return pool


def _fall_back(why: str) -> None:
    """From now on compare in this process, and say so once: to the log at INFO (with no logging
    set up, a warning would go to stderr, across the app's screen); `grading_mode()` says it
    for `doctor` and the like."""
    global _fallback_reason, _shared
    with _pool_lock:
        if _fallback_reason is None:
            _log.info(
                "answers are compared in this process (%s): a slow one may take longer than %g s",
                why,
                _TIME_LIMIT_S,
            )
            _fallback_reason = why
        pool, _shared = _shared, None
    if pool is not None:
        pool.close()


def _forget_pool_after_fork() -> None:
    # A child forked from this process (not one of our workers) shares the parent's pipes: it
    # must start its own pool, and never touch the parent's.
    global _shared, _pool_lock, _lock
    _shared = None
    _pool_lock = threading.Lock()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


# --- math-verify -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lib:
    parse: Callable[..., list[Any]]
    verify: Callable[..., bool]
    timeout: type[BaseException]
    config: tuple[Any, ...]
    reading: tuple[Any, ...]


class _NoTimeoutNotices(logging.Filter):
    """math-verify warns once that its timeouts are off (they are, on purpose), and at each
    timeout; with no logging set up that goes to stderr, across the app's screen."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout")


@cache
def _math_verify() -> _Lib:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_NO_TIMEOUT_NOTICES)
    return _Lib(
        parse=parse,
        verify=verify,
        timeout=TimeoutException,
        # The answer is one `\boxed{}`: take it before anything else that might match inside.
        config=(LatexExtractionConfig(boxed_match_priority=0),),
        # A reply read for its answer: math-verify's recommended targets for model output.
        reading=(LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()),
    )


_NO_TIMEOUT_NOTICES = _NoTimeoutNotices()
