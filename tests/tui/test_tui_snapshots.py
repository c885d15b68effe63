"""SVG snapshots of the TUI (pytest-textual-snapshot). Clock and counters are frozen first.

Update after an intended change: `pytest tests/tui/test_tui_snapshots.py --snapshot-update`,
then look at the SVGs under tests/tui/__snapshots__/.
"""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets._footer import FooterKey
from tui_support import REPLY, FrozenClock, GatedEngine, wait_until

from r1chat.config import Settings
from r1chat.engines.base import ModelInfo
from r1chat.engines.scripted import ScriptedEngine
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import TurnView

QUESTION = "What is the sum of the first 10 positive integers?"


def _as_7b(engine: ScriptedEngine | GatedEngine) -> None:
    """Show what the status line says for the real model on a GPU."""
    info = ModelInfo(
        name="r1-7b",
        path="(scripted)",
        backend="CUDA",
        n_gpu_layers=29,
        n_layers=28,
        n_ctx=32768,
        n_ctx_train=131072,
        thinks=True,
    )
    engine.info = info
    if isinstance(engine, GatedEngine):
        engine.inner.info = info


async def _ask(pilot: Pilot[None]) -> TurnView:
    app = pilot.app
    assert isinstance(app, R1ChatApp)
    app.prompt.insert(QUESTION)
    await pilot.press("enter")
    await wait_until(lambda: app.query(TurnView), pilot)
    return app.query(TurnView).last()


def _footer_shows(app: R1ChatApp, description: str) -> bool:
    return any(key.description == description for key in app.query(FooterKey))


async def _finish(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, R1ChatApp)
    await wait_until(lambda: not app.chat.busy and app.chat.conversation.exchanges, pilot)
    # The footer recomposes its keys on its own schedule: wait until Stop has gone from it.
    await wait_until(lambda: not _footer_shows(app, "Stop"), pilot)
    # Speeds come from the wall clock: pin them.
    app.status.set(tok_s=42.5, ttft_s=0.31)
    app.prompt.cursor_blink = False
    await pilot.pause()


def test_empty_app(snap_compare) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(REPLY)
    _as_7b(engine)

    async def before(pilot: Pilot[None]) -> None:
        pilot.app.query_one("#prompt").cursor_blink = False  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(R1ChatApp(engine=engine), terminal_size=(120, 30), run_before=before)


def test_thinking_in_progress(snap_compare) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    engine = GatedEngine(REPLY, pause_after=40)
    _as_7b(engine)
    app = R1ChatApp(engine=engine, clock=clock)

    async def before(pilot: Pilot[None]) -> None:
        view = await _ask(pilot)
        await wait_until(engine.paused.is_set, pilot)
        clock.t += 12
        await wait_until(lambda: str(view.pane.title) == "Thinking… 12s · 40 tokens", pilot)
        await wait_until(lambda: _footer_shows(app, "Stop"), pilot)
        app.prompt.cursor_blink = False
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=(120, 30), run_before=before)
    finally:
        engine.gate.set()


def test_finished_turn_with_thinking_folded(snap_compare) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(REPLY)
    _as_7b(engine)
    app = R1ChatApp(engine=engine, clock=FrozenClock())

    async def before(pilot: Pilot[None]) -> None:
        await _ask(pilot)
        await _finish(pilot)

    assert snap_compare(app, terminal_size=(120, 30), run_before=before)


def test_narrow_terminal_stacks_the_panes(snap_compare) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(REPLY)
    _as_7b(engine)
    app = R1ChatApp(Settings(thinking="open"), engine=engine, clock=FrozenClock())

    async def before(pilot: Pilot[None]) -> None:
        await _ask(pilot)
        await _finish(pilot)

    assert snap_compare(app, terminal_size=(72, 40), run_before=before)


def test_a_reply_sampled_again_shows_its_alternatives(snap_compare) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine(REPLY)
    _as_7b(engine)
    app = R1ChatApp(engine=engine, clock=FrozenClock())

    async def before(pilot: Pilot[None]) -> None:
        await _ask(pilot)
        await _finish(pilot)
        await pilot.press("ctrl+r")
        await wait_until(
            lambda: len(app.chat.conversation.alternatives) == 2 and not app.chat.busy, pilot
        )
        await _finish(pilot)
        await pilot.press("alt+left")
        await wait_until(lambda: app.chat.conversation.shown_alternative == 0, pilot)
        await _finish(pilot)

    assert snap_compare(app, terminal_size=(120, 30), run_before=before)
