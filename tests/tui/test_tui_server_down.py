"""A server that is down when the app starts: the app says what failed and where, the status
names the server, and it tries again on its own (waiting longer each time) or on Ctrl+L; a
question asked meanwhile goes once the server is up. No restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import ReplayServer, Reply, chunk, free_port
from tui_support import wait_until

from r1chat.config import Settings
from r1chat.loading import load_engine
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import TurnView

WIDE = (130, 40)


def reply() -> Reply:
    return Reply([chunk({"reasoning": "Hmm."}), chunk({"content": "Four."}), chunk({}, "stop")])


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


def notes(app: R1ChatApp) -> list[str]:
    return [str(n.render()) for n in app.query(".note")]


async def test_a_server_that_comes_up_later_is_reached_without_a_restart(port: int) -> None:
    settings = Settings(api_base=f"http://127.0.0.1:{port}/v1")
    app = R1ChatApp(settings, engine_factory=lambda report: load_engine(settings))
    server = None
    try:
        async with app.run_test(size=WIDE) as pilot:
            await wait_until(lambda: app.query("#load-error"), pilot)
            note = notes(app)[-1]
            assert f"cannot reach http://127.0.0.1:{port}/v1: connection refused" in note
            assert "Trying again in 1 s" in note
            status = str(app.status.content)
            assert f"server @ 127.0.0.1:{port}" in status and "unreachable" in status
            app.prompt.insert("What is 2+2?")
            await pilot.press("enter")  # waits for the server
            server = ReplayServer([reply()], models=[{"id": "r1"}], port=port)
            await wait_until(lambda: app.engine is not None, pilot, timeout=30)
            await wait_until(
                lambda: app.query(TurnView) and app.query(TurnView).last().answer == "Four.",
                pilot,
                timeout=30,
            )
            assert "r1" in str(app.status.content) and "unreachable" not in str(app.status.content)
    finally:
        if server is not None:
            server.close()


async def test_ctrl_l_tries_again_at_once(port: int) -> None:
    settings = Settings(api_base=f"http://127.0.0.1:{port}/v1")
    app = R1ChatApp(settings, engine_factory=lambda report: load_engine(settings))
    server = None
    try:
        async with app.run_test(size=WIDE) as pilot:
            await wait_until(lambda: app.query("#load-error"), pilot)
            await pilot.press("ctrl+l")  # still down: the next wait is longer
            await wait_until(lambda: "Trying again in 2 s" in notes(app)[-1], pilot)
            server = ReplayServer([], models=[{"id": "r1"}], port=port)
            await pilot.press("ctrl+l")
            await wait_until(lambda: app.engine is not None, pilot, timeout=10)
            assert any(n.startswith("Loaded: r1") for n in notes(app))
    finally:
        if server is not None:
            server.close()


async def test_a_wrong_model_is_not_tried_again(port: int) -> None:
    server = ReplayServer([], models=[{"id": "r1"}], port=port)
    settings = Settings(api_base=f"http://127.0.0.1:{port}/v1", model="nosuch")
    app = R1ChatApp(settings, engine_factory=lambda report: load_engine(settings))
    try:
        async with app.run_test(size=WIDE) as pilot:
            await wait_until(lambda: app.query("#load-error"), pilot)
            assert "has no model 'nosuch'" in notes(app)[-1]
            assert "Trying again" not in notes(app)[-1]
            assert "not loaded" in str(app.status.content)
    finally:
        server.close()
