"""How fast the real TUI absorbs a stream: a scripted engine feeds the app headless.

The reply is a ~4,000-token thinking and a ~4,000-token Markdown answer (headings, lists, code
fences). By default the engine emits as fast as it can; `--rate 280` paces it like an H200 on the
7B model, to see how much of a core the UI needs at that speed.

Prints tokens/s absorbed (Enter to the last token on screen) and CPU ms per token
(time.process_time of the whole process, the producer thread included), next to the producer
alone (run_turn with no UI) measured in the same run.

    .venv/bin/python benchmarks/tui_absorb.py [--tokens 4000] [--rate TOK_S] [--hz 20]
        [--thinking open] [--history N] [--answer code] [--typing] [--languages en,zh,mixed]

`--languages` runs the reply in each language in turn, in one run, and prints their figures side
by side: English, Chinese (wide characters, two cells each, in the thinking, the prose and a
table) and a mixed-script one, as the model card's users write.

`--history N` first shows N earlier turns like this one (as from the history): every layout pass
visits every widget on the screen, so this shows whether a long conversation slows the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1chat.engines.scripted import ScriptedEngine, split_pieces
from r1chat.sampling import SamplingParams
from r1chat.turn import run_turn

THINKING = {
    "en": [
        "Let me consider the problem from the start. We need the number of ways to tile a 2xn "
        "board with dominoes; call it f(n).",
        "If the first column holds a vertical domino, the rest is f(n-1); if two horizontal "
        "dominoes cover the first two columns, the rest is f(n-2).",
        "So f(n) = f(n-1) + f(n-2) with f(1) = 1 and f(2) = 2. Wait, let me double-check f(3): "
        "three vertical, or one vertical and two horizontal on either side: 3. Yes.",
        "Hmm, that is the Fibonacci sequence shifted by one. For n = 10 that gives 89.",
    ],
    "zh": [
        "我们先从头考虑这个问题。要求用多米诺骨牌铺满 2×n 棋盘的方法数，记为 f(n)。",
        "如果第一列放一块竖着的骨牌，剩下的部分有 f(n-1) 种铺法；如果前两列放两块横着的骨牌，"
        "剩下的部分有 f(n-2) 种铺法。",
        "所以 f(n) = f(n-1) + f(n-2)，并且 f(1) = 1，f(2) = 2。等等，让我再验证一下 f(3)："
        "三块竖放，或者一块竖放加两块横放，共 3 种。没错。",
        "嗯，这就是错位一项的斐波那契数列。n = 10 时结果是 89。",
    ],
    "mixed": [
        "Let me 先从头考虑: we need 铺满 2×n 棋盘的方法数 f(n), the classic domino tiling.",
        "第一列 vertical 的话剩下 f(n-1)；two horizontal dominoes 的话剩下 f(n-2)。",
        "So f(n) = f(n-1) + f(n-2)，f(1) = 1, f(2) = 2。Wait, 验证 f(3) = 3: yes, 没错。",
        "这是 Fibonacci shifted by one，n = 10 gives 89 种。",
    ],
}


def thinking_text(n_tokens: int, language: str = "en") -> str:
    lines = THINKING[language]
    out: list[str] = []
    n = 0
    i = 0
    while n < n_tokens:
        line = lines[i % len(lines)] + "\n"
        out.append(line)
        n += len(split_pieces(line))
        i += 1
    return "".join(out)


ANSWER_SECTIONS = {
    "zh": (
        "## 第 {k} 步：递推关系\n\n"
        "每一种铺法的开头只有两种可能：\n\n"
        "1. 一块**竖着**的骨牌，剩下 2×(n−1) 的棋盘；\n"
        "2. 两块*横着*的骨牌，剩下 2×(n−2) 的棋盘。\n\n"
        "| n | 铺法数 | 说明 |\n|---|---|---|\n"
        "| 1 | 1 | 只能竖放 |\n| 2 | 2 | 两竖或两横 |\n| 3 | 3 | 斐波那契 |\n\n"
        "```python\n"
        "def 铺法数(列数: int) -> int:\n"
        "    前, 后 = 1, 2  # 一列和两列的铺法\n"
        "    for _ in range(列数 - 1):\n"
        "        前, 后 = 后, 前 + 后\n"
        "    return 前\n"
        "```\n\n"
        "> n = 10 时答案是 $\\boxed{{89}}$。\n\n"
    ),
    "mixed": (
        "## Step {k}: 递推 recurrence\n\n"
        "Each tiling 的开头 is either:\n\n"
        "1. a **vertical** 骨牌, leaving 2×(n−1)；\n"
        "2. two *horizontal* 骨牌, leaving 2×(n−2)。\n\n"
        "| n | tilings 铺法 | note 说明 |\n|---|---|---|\n"
        "| 1 | 1 | only 竖放 |\n| 2 | 2 | 两竖 or 两横 |\n| 3 | 3 | Fibonacci |\n\n"
        "> n = 10 的答案 is $\\boxed{{89}}$。\n\n"
    ),
}


def answer_text(n_tokens: int, language: str = "en") -> str:
    if language in ANSWER_SECTIONS:
        parts: list[str] = []
        n, k = 0, 1
        while n < n_tokens:
            part = ANSWER_SECTIONS[language].format(k=k)
            parts.append(part)
            n += len(split_pieces(part))
            k += 1
        return "# 多米诺骨牌铺法\n\n" + "".join(parts)
    section = (
        "## Step {k}: the recurrence\n\n"
        "Each tiling starts with either:\n\n"
        "1. a **vertical** domino, leaving a 2×(n−1) board, or\n"
        "2. two *horizontal* dominoes, leaving a 2×(n−2) board.\n\n"
        "- base cases: `f(1) = 1`, `f(2) = 2`\n"
        "- growth: roughly φ^n\n\n"
        "```python\n"
        "def tilings(n: int) -> int:\n"
        "    a, b = 1, 2\n"
        "    for _ in range(n - 1):\n"
        "        a, b = b, a + b\n"
        "    return a\n"
        "```\n\n"
        "> The answer for n = 10 is $\\boxed{{89}}$.\n\n"
    )
    out: list[str] = []
    n = 0
    k = 1
    while n < n_tokens:
        part = section.format(k=k)
        out.append(part)
        n += len(split_pieces(part))
        k += 1
    return "# Domino tilings\n\n" + "".join(out)


def code_answer_text(n_tokens: int) -> str:
    """One long fenced code block, as when the model is asked for a program."""
    out = ["Here is the program:\n\n```python\n"]
    n = 0
    k = 0
    while n < n_tokens:
        part = (
            f"def tilings_{k}(n: int) -> int:\n"
            f'    """Tilings of a 2x{k} board, by the recurrence."""\n'
            "    a, b = 1, 2\n    for _ in range(n - 1):\n        a, b = b, a + b\n"
            "    return a\n\n"
        )
        out.append(part)
        n += len(split_pieces(part))
        k += 1
    return "".join(out) + "```\n\nRun it with any n."


def producer_alone(reply: str) -> tuple[float, float, int]:
    engine = ScriptedEngine(reply)
    w0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for _ in run_turn(engine, [], "q", SamplingParams(max_tokens=10**6), threading.Event()):
        n += 1
    return time.perf_counter() - w0, time.process_time() - c0, n


@dataclass
class AppRun:
    wall: float
    cpu: float
    frames: int
    key_ms: list[float]  # key press to handled by the prompt, while streaming (--typing)


async def type_while_streaming(app: Any, done: Callable[[], bool], out: list[float]) -> None:
    """Every 200 ms a key goes to the prompt as a terminal would send it; time until handled."""
    from textual import events

    while not done():
        before = app.prompt.text
        t0 = time.perf_counter()
        app.post_message(events.Key("x", "x"))
        while app.prompt.text == before:
            await asyncio.sleep(0.001)
        out.append(1000 * (time.perf_counter() - t0))
        await asyncio.sleep(0.2)


async def through_app(
    reply: str,
    rate: float | None,
    hz: float,
    thinking: str = "auto",
    history: int = 0,
    typing: bool = False,
) -> AppRun:
    from r1chat.tui.app import R1ChatApp
    from r1chat.tui.widgets.message import TurnView

    engine = ScriptedEngine(reply, tokens_per_s=rate)
    from r1chat.config import Settings
    from r1chat.conversation import Chats
    from r1chat.history import HistoryStore

    # The conversation is saved as in real use, but to a scratch file, not the user's history.
    scratch = tempfile.TemporaryDirectory()
    # The made-up thinking repeats its few lines on purpose; the loop guard would rightly end it.
    app = R1ChatApp(
        Settings(max_tokens=10**6, thinking=thinking, on_loop="warn"),
        engine=engine,
        drain_hz=hz,
        chats=Chats(HistoryStore.open(Path(scratch.name) / "history.sqlite3")),
    )
    think_want, answer_want = reply.split("\n</think>\n\n")
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.pause()
        for _ in range(history):
            old = TurnView("An earlier question", folded=True)
            await app.chat.mount(old)
            await old.show_saved(think_want, answer_want, "Thought")
        await pilot.pause()
        app.prompt.insert("How many ways can a 2xn board be tiled with dominoes?")
        w0, c0 = time.perf_counter(), time.process_time()
        await pilot.press("enter")
        key_ms: list[float] = []
        typist = (
            asyncio.create_task(type_while_streaming(app, lambda: not app.chat.busy, key_ms))
            if typing
            else None
        )
        while app.chat.busy:
            await asyncio.sleep(0.005)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if typist is not None:
            await typist
        view = app.query(TurnView).last()
        if view.thinking.strip() != think_want.strip():
            import difflib

            diff = difflib.unified_diff(
                think_want.strip().splitlines(), view.thinking.strip().splitlines(), lineterm=""
            )
            raise AssertionError("thinking lost:\n" + "\n".join(list(diff)[:20]))
        assert view.answer == answer_want, "answer lost"
    scratch.cleanup()
    return AppRun(wall, cpu, app.chat.pacer.frames, key_ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4000, help="tokens of thinking and of answer")
    ap.add_argument("--rate", type=float, default=None, help="pace the engine (tokens/s)")
    ap.add_argument("--hz", type=float, default=20.0, help="UI drain rate")
    ap.add_argument(
        "--thinking",
        default="auto",
        choices=("auto", "open", "folded"),
        help="the thinking pane setting (open: side by side all along)",
    )
    ap.add_argument(
        "--history", type=int, default=0, help="earlier turns like this one on screen first"
    )
    ap.add_argument(
        "--answer",
        default="markdown",
        choices=("markdown", "code"),
        help="a Markdown answer, or one long code block",
    )
    ap.add_argument(
        "--typing",
        action="store_true",
        help="type into the prompt while it streams; print key latency",
    )
    ap.add_argument(
        "--languages",
        default="en",
        help="comma-separated: en, zh (Chinese), mixed; each one's figures side by side",
    )
    args = ap.parse_args()

    for language in args.languages.split(","):
        if language not in THINKING:
            raise SystemExit(f"no language {language!r} (en, zh, mixed)")
        if args.answer == "markdown":
            answer = answer_text(args.tokens, language)
        else:
            answer = code_answer_text(args.tokens)
        reply = f"{thinking_text(args.tokens, language)}\n</think>\n\n{answer}"
        report(language, reply, args)


def report(language: str, reply: str, args: argparse.Namespace) -> None:
    n_tokens = len(split_pieces(reply))
    p_wall, p_cpu, _ = producer_alone(reply)
    run = asyncio.run(
        through_app(reply, args.rate, args.hz, args.thinking, args.history, args.typing)
    )
    wall, cpu, frames = run.wall, run.cpu, run.frames
    pace = f"paced at {args.rate:.0f} tok/s" if args.rate else "as fast as it can"
    print(
        f"[{language}] reply: {n_tokens:,} tokens ({len(reply):,} chars), engine {pace}, "
        f"drain {args.hz:g} Hz, thinking {args.thinking}, {args.history} earlier turns, "
        f"{args.answer} answer"
    )
    print(
        f"[{language}] producer alone : {n_tokens / p_wall:10,.0f} tok/s"
        f"  {1000 * p_cpu / n_tokens:.3f} CPU ms/token"
    )
    print(
        f"[{language}] through the app: {n_tokens / wall:10,.0f} tok/s"
        f"  {1000 * cpu / n_tokens:.3f} CPU ms/token  ({wall:.2f} s wall, {cpu:.2f} s CPU,"
        f" {100 * cpu / wall:.0f}% of a core, {frames / wall:.1f} frames/s)"
    )
    if run.key_ms:
        keys = sorted(run.key_ms)
        print(
            f"[{language}] typing meanwhile: {len(keys)} keys, handled in"
            f" {statistics.median(keys):.0f} ms median, {keys[int(0.9 * (len(keys) - 1))]:.0f}"
            f" ms p90, {keys[-1]:.0f} ms max"
        )


if __name__ == "__main__":
    main()
