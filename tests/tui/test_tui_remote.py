"""The app driving a real server (llama-cpp-python's own, on loopback) through the remote
engine: the same thinking pane, answer and history as with the local engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Server, start_llama_cpp_server
from tiny_models import SCRIPT_ANSWER, SCRIPT_THINKING
from tui_support import wait_until

from r1chat.config import Settings
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.answer import AnswerView
from r1chat.tui.widgets.message import ThinkingText, TurnView

pytest.importorskip("uvicorn")


@pytest.fixture
def server(scripted_model: Path, tmp_path: Path) -> Iterator[Server]:
    s = start_llama_cpp_server(scripted_model, tmp_path / "s.log", alias="r1-scripted", n_ctx=512)
    yield s
    s.stop()


async def test_the_app_streams_from_a_server(server: Server, r1home: Path) -> None:
    from r1chat.loading import load_engine

    settings = Settings(api_base=server.base, thinking="open", seed=1)
    app = R1ChatApp(settings, engine_factory=lambda report: load_engine(settings))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_until(lambda: app.engine is not None, pilot, timeout=60)
        status = str(app.status.content)
        assert "r1-scripted" in status and "server @ 127.0.0.1:" in status
        await pilot.press(*"What is 2+2?", "enter")
        await wait_until(
            lambda: app.chat.conversation.exchanges and not app.chat.busy, pilot, timeout=60
        )
        view = app.query_one(TurnView)
        assert view.query_one(ThinkingText).text.strip() == SCRIPT_THINKING.strip()
        assert view.query_one(AnswerView).source == SCRIPT_ANSWER
        assert str(view.pane.title).startswith("Thought for ")
    app.engine.close()  # type: ignore[union-attr]
