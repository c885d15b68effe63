"""The TUI on real llama.cpp: the scripted tiny GGUF loads in the background and its exact
thinking and answer reach the screen."""

from __future__ import annotations

from pathlib import Path

from tiny_models import SCRIPT_ANSWER, SCRIPT_THINKING
from tui_support import wait_until

from r1chat.config import Settings
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.answer import AnswerView
from r1chat.tui.widgets.message import ThinkingText, TurnView


async def test_real_model_streams_exact_thinking_and_answer(
    scripted_model: Path, r1home: Path
) -> None:
    from r1chat.loading import load_engine

    settings = Settings(model=str(scripted_model), ctx=512, thinking="open", seed=1)
    app = R1ChatApp(settings, engine_factory=lambda report: load_engine(settings))
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press(*"What is 2+2?")  # typed while the model may still be loading
        await wait_until(lambda: app.engine is not None, pilot, timeout=60)
        assert "tiny-r1-scripted" in str(app.status.content)
        await pilot.press("enter")
        await wait_until(
            lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot, timeout=60
        )
        view = app.query_one(TurnView)
        assert view.query_one(ThinkingText).text.strip() == SCRIPT_THINKING.strip()
        assert view.query_one(AnswerView).source == SCRIPT_ANSWER
        assert app.chat.conversation.exchanges == [("What is 2+2?", SCRIPT_ANSWER)]
        assert view.query_one(".boxed").content.plain == "4"  # type: ignore[attr-defined]
        assert str(view.pane.title).startswith("Thought for ")
        assert "ctx " in str(app.status.content) and "tok/s" in str(app.status.content)
        # A second turn on the same engine (KV cache reuse path) works too.
        await pilot.press(*"And 3+3?", "enter")
        await wait_until(
            lambda: len(app.chat.conversation.exchanges) == 2 and not app.chat.busy,
            pilot,
            timeout=60,
        )
        assert app.chat.conversation.exchanges[1][1] == SCRIPT_ANSWER
    app.engine.close()  # type: ignore[union-attr]


async def test_answer_now_on_real_llama_cpp(noise_model: Path, r1home: Path) -> None:
    from r1chat.loading import load_engine

    # The noise model never ends by itself: room for a reply however late Ctrl+G lands on a
    # slow machine, and Esc once the answer streams.
    settings = Settings(model=str(noise_model), ctx=8192, max_tokens=100_000, thinking="open")
    app = R1ChatApp(settings, engine_factory=lambda report: load_engine(settings))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_until(lambda: app.engine is not None, pilot, timeout=60)
        await pilot.press(*"q", "enter")
        await wait_until(lambda: app.query(TurnView) and app.query_one(TurnView).thinking, pilot)
        await pilot.press("ctrl+g")
        view = app.query_one(TurnView)
        await wait_until(lambda: view.answer, pilot, timeout=60)
        await pilot.press("escape")
        await wait_until(lambda: not app.chat.busy, pilot, timeout=60)
        assert "answered on request" in str(view.pane.title)
        assert "Time is up" in view.thinking and view.answer
        assert app.chat.conversation.exchanges[-1][1]  # saved as written (shown sanitised)
    app.engine.close()  # type: ignore[union-attr]
