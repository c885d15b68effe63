"""Render a model's chat template (Jinja, from the GGUF file: untrusted) within bounds.

Jinja's sandbox stops a template from reaching Python's internals, but not from spending minutes
and gigabytes: `{{ 'A' * 100000000 }}`, `strftime_now('%Y' * 50000000)` or nested loops over
`range(100000)` ran for minutes with memory past 2 GB, and Ctrl+C could not stop them. Here every
template is rendered with:

- no string, list or number made larger than the output limit by `*`, `**`, `%`, or by a method
  or filter given an integer beyond it (`'x'.ljust(10**9)`, `'x'|center(10**9)`);
- output that stops at the limit, which the caller sets to a few times what the context holds;
- a time limit, checked at every line the compiled template runs.

Whatever goes wrong becomes one TemplateLimitError (or the template's own error) with one line.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

from jinja2 import TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

TIME_LIMIT_S = 2.0
STRFTIME_MAX = 256


class TemplateLimitError(TemplateError):
    """The template went past a bound: too much output, too large a value, or too long."""


def _too_big(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with sizes bounded by `limit` characters."""

    # Intercepted operators are also never folded into constants at compile time.
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, limit: int) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True)
        self.limit = limit
        self.filters = {name: self._bounded(f) for name, f in self.filters.items()}

    def _bounded(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps jinja's pass_context/pass_environment markers
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._check_args(args, kwargs)
            return fn(*args, **kwargs)

        return bounded

    def _check_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if any(_too_big(a, self.limit) for a in (*args, *kwargs.values())):
            raise TemplateLimitError(f"an argument is larger than {self.limit:,}")

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
                if sized and len(seq) * max(n, 0) > self.limit:
                    raise TemplateLimitError(f"a value of more than {self.limit:,} characters")
        elif operator_ == "**":
            # Bits of the result, roughly: 10 ** 10 ** 10 would take Python minutes to compute.
            ints = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
            if ints and right * abs(left).bit_length() > 4 * self.limit:
                raise TemplateLimitError("a number too large to compute")
        elif operator_ == "%" and isinstance(left, str):
            values = right if isinstance(right, tuple) else (right,)
            self._check_args(values, {})
        return self.binop_table[operator_](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self._check_args(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def render_template(
    source: str, limit: int, time_limit_s: float = TIME_LIMIT_S, **variables: Any
) -> str:
    """`source` rendered with `variables`, at most `limit` characters and `time_limit_s`."""
    env = BoundedSandbox(limit)

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def strftime_now(fmt: str) -> str:
        if not isinstance(fmt, str) or len(fmt) > STRFTIME_MAX:
            raise TemplateLimitError(f"a strftime format longer than {STRFTIME_MAX}")
        return datetime.now().strftime(fmt)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    template = env.from_string(source)
    deadline = time.monotonic() + time_limit_s

    def watch(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise TemplateLimitError(f"rendering took longer than {time_limit_s:g} s")
        return watch

    out: list[str] = []
    size = 0
    previous = sys.gettrace()
    sys.settrace(watch)
    try:
        for piece in template.generate(**variables):
            size += len(piece)
            if size > limit:
                raise TemplateLimitError(f"the prompt grew past {limit:,} characters")
            out.append(piece)
    finally:
        sys.settrace(previous)
    return "".join(out)
