"""A server's text with no `<think>` before it, in the app: shown apart as "thinking or
answer?" until a `</think>` (then it is the thinking) or the end (then it is the answer), and
never in the answer first."""

from __future__ import annotations

import pytest
from servers import ReplayServer, Reply, chunk
from tui_support import wait_until

from r1chat.engines.remote import RemoteEngine
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.message import HeldText, TurnView

WORDS = [f" word{i}" for i in range(40)]


@pytest.mark.parametrize("closes", [True, False], ids=["thinking", "answer"])
async def test_held_text_waits_apart_until_it_is_known(
    made: list[ReplayServer], closes: bool
) -> None:
    tail = ["\n</think>\n\n", "Four."] if closes else []
    events = [chunk({"content": w}) for w in WORDS + tail] + [chunk({}, "stop")]
    s = ReplayServer([Reply(events, gap_s=0.05)], models=[{"id": "/models/plain.gguf"}])
    made.append(s)
    app = R1ChatApp(engine=RemoteEngine(s.base))
    async with app.run_test(size=(120, 40)) as pilot:
        app.prompt.insert("q")
        await pilot.press("enter")
        await wait_until(lambda: app.query(HeldText), pilot)
        view = app.query(TurnView).last()
        await wait_until(lambda: "word5" in app.query_one(HeldText).text, pilot)
        assert view.answer == "" and view.thinking == ""
        await wait_until(lambda: not app.chat.busy, pilot, timeout=30)
        assert not app.query(HeldText)
        said = "".join(WORDS).strip()
        if closes:
            assert (view.thinking.strip(), view.answer.strip()) == (said, "Four.")
            assert view.pane.display
        else:
            assert (view.thinking, view.answer.strip()) == ("", said)
