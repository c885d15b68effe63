"""How long `r1chat ask` takes to render a long code fence on a terminal, by its length.

A ~37 KB, 800-line Python fence (and its first 200 and 400 lines) streams in ~4-character pieces,
as tokens come, through the terminal renderer into a Rich console that takes itself for a
100x40 terminal (the output goes to a buffer). Rich does all its real work: highlighting, the live
view, the runs printed above it.

Two ways to feed it, side by side for each length:

- as fast as possible: the renderer's own throttle decides how often the live view is redrawn;
- paced like a model (`--rate`, tokens/s; the default is the speed of issue 19's report, 37 KB
  in ~21 s piped): the renderer's clock runs as if each token came 1/rate s after the last,
  without waiting, so the seconds printed are the renderer's own, and "of stream" says what
  share of the stream's duration they are.

Rendering in proportion to what was added shows as seconds per 100 lines that stay the same
from 200 to 800 lines, and a redraw that costs the same at the end of a long fence as of a short
one.

    .venv/bin/python benchmarks/ask_render.py [--lines 200,400,800] [--rate 430]
"""

from __future__ import annotations

import argparse
import io
import time
import types
from dataclasses import dataclass
from typing import Any

from rich.console import Console

import r1chat.render as render
from r1chat.engines.scripted import split_pieces
from r1chat.turn import TurnResult

STATEMENTS = [
    "def tilings_{k}(n: int, memo: dict[int, int] | None = None) -> int:",
    '    """Tilings of a 2x{k} board, by the recurrence, memoised."""',
    "    a, b = 1, 2  # the first two widths of the board",
    "    for _ in range(n - 1):",
    "        a, b = b, a + b  # one more column each time",
    "    return a + (memo or {{}}).get(n, 0)  # from the cache",
    "",
]


def fence_answer(lines: int) -> str:
    """An answer that is mostly one Python fence of `lines` lines (~46 characters a line)."""
    code = [STATEMENTS[i % len(STATEMENTS)].format(k=i // len(STATEMENTS)) for i in range(lines)]
    return "Here is the program:\n\n```python\n" + "\n".join(code) + "\n```\n\nRun it with any n."


@dataclass
class Run:
    seconds: float  # in the renderer, first piece to the end of finish()
    redraws: int
    redraw_ms: list[float]  # each redraw of the live view


def stream(text: str, rate: float | None) -> Run:
    """Stream `text` through a TerminalRenderer; `rate`: pace its clock at this many tokens/s."""
    console = Console(file=io.StringIO(), force_terminal=True, width=100, height=40)
    renderer = render.TerminalRenderer(show_think=False, console=console)
    redraw_ms: list[float] = []
    live_view = renderer._live_view

    def timed_view() -> Any:
        t0 = time.perf_counter()
        view = live_view()
        redraw_ms.append(1000 * (time.perf_counter() - t0))
        return view

    renderer._live_view = timed_view  # type: ignore[method-assign]
    pieces = split_pieces(text)
    virtual = [0.0]
    real_clock = render.time
    if rate is not None:
        # The renderer sees real time plus 1/rate s a token: its throttle acts as in a stream.
        render.time = types.SimpleNamespace(  # type: ignore[assignment]
            monotonic=lambda: time.monotonic() + virtual[0]
        )
    try:
        t0 = time.perf_counter()
        for piece in pieces:
            if rate is not None:
                virtual[0] += 1 / rate
            renderer.answer(piece)
        renderer.finish(TurnResult(question="q", answer=text))
        seconds = time.perf_counter() - t0
    finally:
        render.time = real_clock
    return Run(seconds, len(redraw_ms), redraw_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", default="200,400,800", help="fence lengths, comma-separated")
    parser.add_argument("--rate", type=float, default=430.0, help="paced run's tokens/s")
    args = parser.parse_args()
    sizes = [int(n) for n in args.lines.split(",")]

    fast: dict[int, Run] = {}
    paced: dict[int, Run] = {}
    texts = {n: fence_answer(n) for n in sizes}
    stream(texts[sizes[0]], None)  # warm up: imports, Pygments' lexer, Rich's caches
    for n in sizes:
        fast[n] = stream(texts[n], None)
        paced[n] = stream(texts[n], args.rate)

    def row(label: str, cell: Any) -> None:
        print(f"{label:<30}" + "".join(f"{cell(n):>14}" for n in sizes))

    print(f"terminal renderer, 100x40, a Python fence in ~4-character pieces (rich, {args.rate:g}")
    print("tokens/s for the paced run)\n")
    row("fence lines", lambda n: n)
    row("answer KB", lambda n: f"{len(texts[n]) / 1000:.1f}")
    row("pieces (tokens)", lambda n: len(split_pieces(texts[n])))
    print("as fast as possible")
    row("  seconds", lambda n: f"{fast[n].seconds:.2f}")
    row("  seconds per 100 lines", lambda n: f"{100 * fast[n].seconds / n:.3f}")
    row("  redraws", lambda n: fast[n].redraws)
    print(f"paced at {args.rate:g} tokens/s")
    row("  stream duration s", lambda n: f"{len(split_pieces(texts[n])) / args.rate:.1f}")
    row("  renderer seconds", lambda n: f"{paced[n].seconds:.2f}")
    row("  renderer s per 100 lines", lambda n: f"{100 * paced[n].seconds / n:.3f}")
    row(
        "  of stream",
        lambda n: f"{paced[n].seconds / (len(split_pieces(texts[n])) / args.rate):.0%}",
    )
    row("  redraws", lambda n: paced[n].redraws)
    row("  redraw ms, mean", lambda n: f"{sum(paced[n].redraw_ms) / paced[n].redraws:.1f}")
    row("  redraw ms, last 10 mean", lambda n: f"{sum(paced[n].redraw_ms[-10:]) / 10:.1f}")
    row("  redraw ms, max", lambda n: f"{max(paced[n].redraw_ms):.1f}")


if __name__ == "__main__":
    main()
