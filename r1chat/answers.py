"""Final answers of math problems: whether two mean the same, and which one most samples agree on.

Why math-verify (Hugging Face's grader, the one open-r1 scores R1 reproductions with) and not a
normaliser of our own: the same answer comes in too many forms to list. `0.5`, `\\frac12`, `1/2`
and `50\\%` are one number; `x = 3` is `3`; `(1, 2)` is `\\left(1,2\\right)` but not `(2, 1)`;
`[0, 1)` is not `[0, 1]`; `\\frac{\\sqrt2}2` is `\\sqrt{2}/2`. math-verify parses LaTeX into SymPy
(numbers, sets, intervals, tuples, equations, matrices) and compares with SymPy, after cleaning
up `\\left`, `\\dfrac`, `\\text{ cm}`, `^\\circ` and the like.

Threads: math-verify bounds its work with `signal.alarm`, which only works in the main thread; the
app compares answers in workers (Textual, thread pools). So its own timeouts are off here
(`parse(..., parsing_timeout=None)`, `verify(..., timeout_seconds=None)`) and the bound is ours:

* what cannot be parsed cheaply is not parsed: answers over `MAX_CHARS`, brackets nested deeper
  than `_MAX_DEPTH` (the grammar's look-ahead grows steeply with them), chained powers (`x^x^x`),
  unbalanced braces, integrals, limits, sums and products (SymPy would work them out), and what
  the parser evaluates on the spot (`\\binom{10^{12}}{10^5}`, `\\Gamma(10^7)`, matrix operators).
  Those compare by normalised text;
* numbers too large to compute are not compared: a parsed answer whose exact value would run past
  `_MAX_DIGITS` digits (`2^{2^{30}}`, `(10^6)!`) keeps only its text;
* a deadline stops what is still slow: a trace function (`sys.settrace`, per thread) raises
  math-verify's own `TimeoutException` at the next Python call, which parse and verify already
  handle. It makes math-verify about twice as slow, tens of milliseconds for a real answer;
* one lock around math-verify: the ANTLR runtime under its parser shares its prediction cache
  between parsers without locking.

Pure: no I/O, no UI. math-verify and SymPy load on first use (about a second and a half), not
when this module is imported.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from types import FrameType
from typing import Any, Literal

__all__ = ["MAX_CHARS", "Vote", "equivalent", "grade", "vote"]

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
# math-verify's own default, per parse and per comparison; only a backstop for what the limits
# above let through.
_TIME_LIMIT_S = 5.0

_lock = threading.Lock()

_TraceEvent = Literal["call", "line", "return", "exception", "opcode"]


@dataclass(frozen=True)
class Vote:
    answer: str | None  # the winning answer as first written by a sample (None: no sample had one)
    count: int  # how many samples agree with it
    of: int  # how many samples in all (including those without an answer)
    members: tuple[int, ...]  # indices of the samples in the winning group


def equivalent(a: str, b: str) -> bool:
    """Whether two final answers (\\boxed{} contents, LaTeX or plain) mean the same.

    Symmetric. A blank answer (an empty `\\boxed{}`) states nothing and equals nothing."""
    x, y = _prepare(a), _prepare(b)
    return bool(x and y) and _same(*sorted((x, y)))


def vote(answers: Sequence[str | None]) -> Vote:
    """Majority vote: group equivalent answers; the largest group wins; ties go to the group whose
    first member came first. None (no \\boxed{}) never wins, nor does a blank answer.

    Each answer joins the first group whose first member it is equivalent to."""
    groups: list[list[int]] = []
    heads: list[str] = []
    for i, answer in enumerate(answers):
        text = _prepare(answer) if answer is not None else ""
        if not text:
            continue
        for group, head in zip(groups, heads, strict=True):
            if _same(*sorted((head, text))):
                group.append(i)
                break
        else:
            groups.append([i])
            heads.append(text)
    if not groups:
        return Vote(answer=None, count=0, of=len(answers), members=())
    # max() keeps the first of equals: groups are in order of their first member.
    best = max(groups, key=len)
    return Vote(answer=answers[best[0]], count=len(best), of=len(answers), members=tuple(best))


def grade(predicted: str | None, gold: str) -> bool:
    """Whether a predicted final answer matches a dataset's gold answer (`3`, `\\frac{1}{2}`,
    `(1, 2)`, `[0, 1)`, `10\\%`, `\\text{(B)}`...).

    Gold goes first to math-verify, as it expects: `x = 3` against gold `3` is right, and so is
    `3` against gold `x = 3`."""
    if predicted is None:
        return False
    pred, ref = _prepare(predicted), _prepare(gold)
    if not pred or not ref:
        return False
    return _plain(pred) == _plain(ref) or _agree(_parsed(ref), _parsed(pred))


# --- preparing the text -------------------------------------------------------------------

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


# --- what math-verify is asked ----------------------------------------------------------------


@lru_cache(maxsize=4096)
def _same(a: str, b: str) -> bool:
    """`a` and `b` prepared, in sorted order (the cache then serves both orders)."""
    if _plain(a) == _plain(b):
        return True
    x, y = _parsed(a), _parsed(b)
    # math-verify is asymmetric with equations and inequalities (`x = 3` is unwrapped on the gold
    # side, a relation turns into a set...), and only there: equal either way round is equal.
    return _agree(x, y) or (_has_relation(x + y) and _agree(y, x))


def _has_relation(items: tuple[Any, ...]) -> bool:
    from sympy.core.relational import Relational

    try:
        return any(not isinstance(item, str) and item.has(Relational) for item in items)
    except Exception:
        return True


def _agree(gold: tuple[Any, ...], pred: tuple[Any, ...]) -> bool:
    lib = _math_verify()
    for g in gold:
        for p in pred:
            if isinstance(g, str) != isinstance(p, str):
                continue  # math-verify never matches text with an expression
            # One pair per call, so each has its own deadline (given lists, verify would run all
            # pairs under one).
            with _lock:
                same = _bounded(lib.verify, g, p, timeout_seconds=None)
            if same:
                return True
    return False


@lru_cache(maxsize=1024)
def _parsed(text: str) -> tuple[Any, ...]:
    """What math-verify makes of a prepared answer (SymPy objects, then its normalised text), or
    nothing when the answer is not safe to parse."""
    if not _safe_to_parse(text):
        return ()
    lib = _math_verify()
    # Wrapped as `\boxed{}`, as it came: math-verify only reads LaTeX inside delimiters, and takes
    # a box whole.
    with _lock:
        found = _bounded(
            lib.parse, f"\\boxed{{{text}}}", extraction_config=lib.config, parsing_timeout=None
        )
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


# --- running math-verify ------------------------------------------------------------------------


def _bounded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, stopped once it runs past `_TIME_LIMIT_S`: None then, or what
    math-verify returns when it catches the timeout itself (no parse, not equal).

    A trace function, called at each Python call in this thread (only this one), raises
    math-verify's `TimeoutException` there, where its signal handler would have raised it. Whatever
    tracer was set (a debugger, coverage) keeps being called, and is put back after.

    What timed out is cached like any other result: a vote run again as samples come in pays for
    a pathological answer once."""
    timeout = _math_verify().timeout
    stop_at = time.monotonic() + _TIME_LIMIT_S
    previous = sys.gettrace()

    def check(frame: FrameType, event: _TraceEvent, arg: Any) -> Any:
        # Not into a generator being resumed, nor a finaliser: a generator closed by the garbage
        # collector, or __del__, would print the exception to stderr and carry on. (Any raise
        # unsets the tracer, so a swallowed one would also end the deadline.)
        if (
            time.monotonic() > stop_at
            and not frame.f_code.co_flags & _RESUMABLE
            and frame.f_code.co_name != "__del__"
        ):
            raise timeout("answer comparison ran past its time limit")
        return previous(frame, event, arg) if previous is not None else None

    # Not a context manager: its __exit__ would be a traced call, and could be the one that
    # raises, leaving the tracer set.
    sys.settrace(check)
    try:
        return fn(*args, **kwargs)
    except timeout:
        return None
    finally:
        sys.settrace(previous)


_RESUMABLE = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)


@dataclass(frozen=True)
class _Lib:
    parse: Callable[..., list[Any]]
    verify: Callable[..., bool]
    timeout: type[BaseException]
    config: tuple[Any, ...]


class _NoTimeoutNotices(logging.Filter):
    """math-verify warns once that its timeouts are off (they are, on purpose), and at each
    timeout; with no logging set up that goes to stderr, across the app's screen."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout")


@cache
def _math_verify() -> _Lib:
    from math_verify import LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_NO_TIMEOUT_NOTICES)
    return _Lib(
        parse=parse,
        verify=verify,
        timeout=TimeoutException,
        # The answer is one `\boxed{}`: take it before anything else that might match inside.
        config=(LatexExtractionConfig(boxed_match_priority=0),),
    )


_NO_TIMEOUT_NOTICES = _NoTimeoutNotices()
