"""Rebuild assets/screenshot.svg: the real app, replaying an R1-style reply from a scripted engine.

The 7B model cannot be downloaded on the development machines, so the reply is written out here;
everything on screen is drawn by the app itself. Speeds and times are pinned for a stable image.
With `--model` (a path or alias) the reply comes from that model instead, with real timings.

    .venv/bin/python scripts/screenshot.py [-o OUT.svg] [--model r1-7b] [--question TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from r1chat.config import Settings
from r1chat.conversation import Chats
from r1chat.engines.scripted import ScriptedEngine
from r1chat.history import HistoryStore
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import TurnView

QUESTION = "How many positive divisors does 360 have?"
THINKING = (
    "Okay, so I need to find how many positive divisors 360 has. Let me start with its prime "
    "factorization.\n"
    "360 divided by 2 is 180, by 2 again is 90, and again is 45. So that's 2^3.\n"
    "45 is 9 times 5, which is 3^2 times 5. So 360 = 2^3 · 3^2 · 5^1.\n"
    "The number of divisors is the product of (exponent + 1) for each prime: "
    "(3+1)(2+1)(1+1).\n"
    "That's 4 · 3 · 2 = 24. Wait, let me double-check by listing a few: 1, 2, 3, 4, 5, 6, 8, 9, "
    "10, 12, 15, 18, 20, 24, 30, 36, 40, 45, 60, 72, 90, 120, 180, 360. That's 24. Good.\n"
)
ANSWER = (
    "To count the divisors of 360, factor it into primes:\n\n"
    "$$360 = 2^3 \\cdot 3^2 \\cdot 5$$\n\n"
    "Each divisor picks an exponent for every prime:\n\n"
    "- 2: one of 0…3 → 4 choices\n"
    "- 3: one of 0…2 → 3 choices\n"
    "- 5: one of 0…1 → 2 choices\n\n"
    "```python\nfrom sympy import divisor_count\nprint(divisor_count(360))  # 24\n```\n\n"
    "So 360 has $\\boxed{24}$ positive divisors."
)


async def shoot(out: Path, model: str | None, question: str = QUESTION) -> None:
    settings = Settings(thinking="open")
    engine: Any
    if model is None:
        engine = ScriptedEngine(f"{THINKING}</think>\n\n{ANSWER}")
        engine.info = replace(engine.info, name="r1-7b (scripted)", n_ctx=8192)
    else:
        from r1chat.loading import load_engine

        settings = replace(settings, model=model, seed=1)
        engine = load_engine(settings)
    scratch = tempfile.TemporaryDirectory()  # saved as in real use, not into your history
    app = R1ChatApp(
        settings,
        engine=engine,
        chats=Chats(HistoryStore.open(Path(scratch.name) / "h.sqlite3")),
    )
    async with app.run_test(size=(132, 34)) as pilot:
        app.prompt.insert(question)
        await pilot.press("enter")
        while not app.chat.conversation.exchanges or app.chat.busy:
            await pilot.pause(0.05)
        if model is None:
            app.query(TurnView).last().set_title("Thought for 9s · 146 tokens")
            app.status.set(tok_s=38.6, ttft_s=0.21)
        app.prompt.cursor_blink = False
        await pilot.pause(0.3)
        out.write_text(app.export_screenshot(title="r1chat"), encoding="utf-8")
    scratch.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=Path("assets/screenshot.svg"))
    ap.add_argument("--model", help="a GGUF path or alias: a live session instead of the replay")
    ap.add_argument("--question", default=QUESTION)
    args = ap.parse_args()
    asyncio.run(shoot(args.out, args.model, args.question))
