"""The TUI driven through Textual's Pilot with a scripted engine: what a user does and sees."""

from __future__ import annotations

import re
import threading

from textual.command import CommandList
from textual.geometry import Region
from tui_support import ANSWER, REPLY, THINKING, FrozenClock, GatedEngine, wait_until

from r1chat.config import Settings
from r1chat.engines.scripted import ScriptedEngine, split_pieces
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage, apply_preset
from r1chat.tui.app import R1ChatApp
from r1chat.tui.widgets.answer import AnswerView, MarkdownPart
from r1chat.tui.widgets.message import ThinkingPane, ThinkingText, TurnView

WIDE = (130, 40)
NARROW = (80, 40)


def idle(app: R1ChatApp) -> bool:
    return not app.chat.busy


async def ask(pilot, app: R1ChatApp, question: str) -> TurnView:  # type: ignore[no-untyped-def]
    app.prompt.focus()
    app.prompt.insert(question)
    await pilot.press("enter")
    await wait_until(lambda: app.query(TurnView), pilot)
    return app.query(TurnView).last()


def markdown_source(view: TurnView) -> str:
    return view.query_one(AnswerView).source


async def test_enter_sends_and_both_panes_fill() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "Sum of 1 to 10?")
        await wait_until(lambda: idle(app), pilot)
        assert engine.requests[0][-1] == ChatMessage("user", "Sum of 1 to 10?")
        assert view.query_one(ThinkingText).text == THINKING
        assert markdown_source(view) == ANSWER
        assert app.prompt.text == ""
        assert app.chat.conversation.exchanges == [("Sum of 1 to 10?", ANSWER)]
        assert view.query_one(".boxed").content.plain == "55"  # type: ignore[attr-defined]


async def test_ctrl_j_adds_a_line_instead_of_sending() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("a", "ctrl+j", "b")
        assert app.prompt.text == "a\nb"
        assert not app.query(TurnView)
        await pilot.press("enter")
        await wait_until(lambda: app.chat.conversation.exchanges, pilot)
        assert engine.requests[0][-1].content == "a\nb"


async def test_thinking_streams_live_with_a_running_title() -> None:
    clock = FrozenClock()
    engine = GatedEngine(REPLY, pause_after=12)
    app = R1ChatApp(engine=engine, clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        clock.t += 7
        await wait_until(lambda: engine.paused.is_set(), pilot)
        await wait_until(lambda: str(view.pane.title) == "Thinking… 7s · 12 tokens", pilot)
        assert not view.folded
        assert THINKING.startswith(view.query_one(ThinkingText).text)
        assert markdown_source(view) == ""
        engine.gate.set()
        await wait_until(lambda: idle(app), pilot)
        assert str(view.pane.title).startswith("Thought for 7s · ")


async def test_auto_folds_when_the_answer_starts_and_ctrl_t_unfolds() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: idle(app), pilot)
        assert view.folded and view.has_class("-folded")
        await pilot.press("ctrl+t")
        assert not view.folded
        await pilot.press("ctrl+t")
        assert view.folded


async def test_clicking_the_pane_title_unfolds_it() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: idle(app), pilot)
        await pilot.click(view.pane._title)
        assert not view.folded


async def test_thinking_setting_open_keeps_the_pane_open() -> None:
    app = R1ChatApp(Settings(thinking="open"), engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: idle(app), pilot)
        assert not view.folded


async def test_thinking_setting_folded_starts_folded() -> None:
    engine = GatedEngine(REPLY, pause_after=5)
    app = R1ChatApp(Settings(thinking="folded"), engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: engine.paused.is_set(), pilot)
        assert view.folded
        engine.gate.set()
        await wait_until(lambda: idle(app), pilot)
        assert view.folded


async def test_escape_stops_at_once_and_keeps_what_came() -> None:
    engine = GatedEngine(REPLY, pause_after=75)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: engine.paused.is_set() and view.answer, pilot)
        await pilot.press("escape")
        await wait_until(lambda: idle(app), pilot, timeout=5)
        # The token in flight when Esc came is the last one: nothing is decoded after it.
        emitted = "".join(split_pieces(REPLY)[:76])
        kept = emitted.split("</think>\n\n", 1)[1]
        assert view.answer == kept and 0 < len(kept) < len(ANSWER)
        assert app.chat.conversation.exchanges == [("q", kept)]
        assert any("Stopped" in str(n.content) for n in view.query(".note"))  # type: ignore
        # The engine is free again: the next turn runs and sees the kept answer as history.
        engine.pause_after = 10**6
        await ask(pilot, app, "again")
        await wait_until(lambda: len(app.chat.conversation.exchanges) == 2, pilot)
        assert engine.requests[1][:2] == [ChatMessage("user", "q"), ChatMessage("assistant", kept)]


async def test_escape_while_thinking_keeps_the_thinking() -> None:
    engine = GatedEngine(REPLY, pause_after=6)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: engine.paused.is_set() and view.thinking, pilot)
        await pilot.press("escape")
        await wait_until(lambda: idle(app), pilot, timeout=5)
        assert view.thinking and THINKING.startswith(view.thinking)
        assert view.answer == ""
        assert str(view.pane.title).startswith("Stopped after")
        assert app.chat.conversation.exchanges == [("q", "")]


async def test_second_turn_sends_history_without_thinking() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "first")
        await wait_until(lambda: idle(app), pilot)
        await ask(pilot, app, "second")
        await wait_until(lambda: len(app.chat.conversation.exchanges) == 2, pilot)
        assert engine.requests[1] == [
            ChatMessage("user", "first"),
            ChatMessage("assistant", ANSWER),
            ChatMessage("user", "second"),
        ]
        assert len(app.query(TurnView)) == 2


async def test_new_chat_forgets_the_conversation() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "first")
        await wait_until(lambda: idle(app), pilot)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not app.query(TurnView) and app.chat.conversation.exchanges == []
        await ask(pilot, app, "fresh")
        await wait_until(lambda: idle(app), pilot)
        assert engine.requests[1] == [ChatMessage("user", "fresh")]


async def test_preset_wraps_the_next_question() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("f2")
        assert "preset: math" in str(app.status.content)
        await ask(pilot, app, "2+2?")
        await wait_until(lambda: idle(app), pilot)
        assert engine.requests[0][-1].content == apply_preset("2+2?", "math")
        await pilot.press("f2")
        assert app.prompt.preset is None


async def test_copy_answer_and_last_code_block() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        await ask(pilot, app, "q")
        await wait_until(lambda: idle(app), pilot)
        await pilot.press("ctrl+o")
        assert app.clipboard == ANSWER
        await pilot.press("ctrl+b")
        assert app.clipboard == "print(sum(range(1, 11)))"
        await pilot.press("f9")
        assert app.clipboard == REPLY.split("</think>")[0].strip()


async def test_model_text_is_never_markup_and_escapes_are_stripped() -> None:
    nasty = "[bold]x[/] [link=http://e]y[/link] \x1b]0;pwned\x07z\x1b[31m"
    reply = f"{nasty}\n</think>\n\n{nasty}"
    app = R1ChatApp(Settings(thinking="open"), engine=ScriptedEngine(reply))
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "[/] q")
        await wait_until(lambda: idle(app), pilot)
        clean = "[bold]x[/] [link=http://e]y[/link] z"
        assert view.query_one(ThinkingText).text == clean + "\n"
        assert view.answer == clean
        assert "\x1b" not in view.thinking + view.answer
        assert "[/] q" in str(view.query_one(".question").content)  # type: ignore[attr-defined]


async def test_load_error_is_shown_with_what_to_do() -> None:
    def fail(_progress: object) -> ScriptedEngine:
        raise R1ChatError("model file not found: /nowhere/model.gguf")

    app = R1ChatApp(engine_factory=fail)
    async with app.run_test(size=WIDE) as pilot:
        await wait_until(lambda: app.load_error, pilot)
        note = str(app.query_one("#load-error").content)  # type: ignore[attr-defined]
        assert "model file not found: /nowhere/model.gguf" in note
        assert "--model" in note
        assert "not loaded" in str(app.status.content)
        await pilot.press(*"hello", "enter")
        assert app.prompt.text == "hello"  # kept, nothing lost


async def test_unexpected_load_failure_is_shown_not_raised() -> None:
    def crash(_progress: object) -> ScriptedEngine:
        raise RuntimeError("boom")

    app = R1ChatApp(engine_factory=crash)
    async with app.run_test(size=WIDE) as pilot:
        await wait_until(lambda: app.load_error, pilot)
        assert "RuntimeError: boom" in str(app.query_one("#load-error").content)  # type: ignore


async def test_input_typed_while_loading_is_sent_once_loaded() -> None:
    release = threading.Event()
    engine = ScriptedEngine(REPLY)

    def slow_load(_progress: object) -> ScriptedEngine:
        release.wait(10)
        return engine

    app = R1ChatApp(engine_factory=slow_load)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press(*"early", "enter")
        assert "loading" in str(app.status.content)
        assert app.prompt.text == "early" and not app.query(TurnView)
        release.set()
        await wait_until(lambda: app.chat.conversation.exchanges, pilot)
        assert app.chat.conversation.exchanges[0][0] == "early" and app.prompt.text == ""


async def _regions_mid_reply(size: tuple[int, int]) -> tuple[Region, Region]:
    """The thinking pane's and the answer's regions while both are streaming, thinking open."""
    engine = GatedEngine(REPLY, pause_after=60)
    app = R1ChatApp(Settings(thinking="open"), engine=engine)
    async with app.run_test(size=size) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: engine.paused.is_set() and view.answer, pilot)
        await pilot.pause()
        regions = view.query_one(ThinkingPane).region, view.query_one(".answer").region
        engine.gate.set()
        await wait_until(lambda: idle(app), pilot)
    return regions


async def test_wide_terminal_puts_thinking_beside_the_answer() -> None:
    pane, answer = await _regions_mid_reply(WIDE)
    assert answer.x >= pane.right and answer.y == pane.y


async def test_narrow_terminal_stacks_thinking_above_the_answer() -> None:
    pane, answer = await _regions_mid_reply(NARROW)
    assert answer.y >= pane.bottom and answer.x == pane.x


async def test_folded_thinking_leaves_the_answer_the_whole_width() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "q")
        await wait_until(lambda: idle(app), pilot)
        await pilot.pause()
        assert view.folded
        answer = view.query_one(".answer").region
        assert answer.width == view.region.width
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert view.query_one(".answer").region.width < view.region.width // 2 + 2


async def test_command_palette_runs_actions() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"preset: logic")
        await wait_until(
            lambda: (
                app.screen.query(CommandList) and app.screen.query_one(CommandList).option_count > 0
            ),
            pilot,
        )
        first = app.screen.query_one(CommandList).get_option_at_index(0)
        assert "Preset: logic" in str(first.prompt)
        await pilot.press("enter")
        await wait_until(lambda: app.prompt.preset == "logic", pilot, timeout=5)


async def test_f1_shows_the_keys() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ != "HelpScreen"


async def test_download_progress_shows_in_the_status_line() -> None:
    import threading

    from r1chat.config import Settings
    from r1chat.tui.app import R1ChatApp

    release = threading.Event()

    def slow_factory(report):  # type: ignore[no-untyped-def]
        report.download(1_200_000_000, 4_680_000_000)
        release.wait(10)
        raise RuntimeError("stop here")

    app = R1ChatApp(Settings(), engine_factory=slow_factory)
    async with app.run_test() as pilot:
        await wait_until(lambda: "downloading" in str(app.status.content), pilot)
        assert "downloading 1.20 of 4.68 GB" in str(app.status.content)
        release.set()
        await wait_until(lambda: app.query("#load-error"), pilot)
        assert "stop here" in str(app.query_one("#load-error").content)  # type: ignore[attr-defined]


async def test_a_model_without_thinking_shows_only_the_answer() -> None:
    engine = ScriptedEngine("Plain answer, no reasoning.", thinks=False)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        view = await ask(pilot, app, "Hello?")
        await wait_until(lambda: idle(app), pilot)
        await pilot.pause()
        assert not view.pane.display and markdown_source(view) == "Plain answer, no reasoning."
        question = view.query_one(".question").region
        answer = view.query_one(MarkdownPart).region
        # One blank line under the question, as above a thinking pane; the answer has the width.
        assert answer.y == question.bottom + 1
        assert answer.width > WIDE[0] - 10


def burst(app: R1ChatApp, text: str, *keys: str) -> None:
    """Queue keys at the app all at once, as a terminal delivers a burst read in one go."""
    from textual import events

    for ch in text:
        app.post_message(events.Key(ch if ch != " " else "space", ch))
    for key in keys:
        app.post_message(events.Key(key, None))


async def test_a_burst_of_keys_and_enter_sends_every_key() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        text = "Explain why the sky is blue, " * 20
        burst(app, text.strip(), "enter")
        await wait_until(lambda: engine.requests and idle(app), pilot)
        assert engine.requests[0][-1].content == text.strip()
        assert app.prompt.text == ""


async def test_keys_after_enter_in_the_same_burst_stay_in_the_prompt() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        burst(app, "first question", "enter")
        burst(app, "typed on")
        await wait_until(lambda: engine.requests and idle(app), pilot)
        assert engine.requests[0][-1].content == "first question"
        assert app.prompt.text == "typed on"


async def test_editing_keys_in_a_burst_apply_in_order() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        burst(app, "abd", "left", "backspace")
        burst(app, "xc", "end", "ctrl+j")
        burst(app, "e", "enter")
        await wait_until(lambda: engine.requests and idle(app), pilot)
        assert engine.requests[0][-1].content == "axcd\ne"


async def test_end_follows_the_reply_from_an_empty_prompt_and_ends_the_line_otherwise() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        app.chat.anchor(False)
        await pilot.press("end")
        assert app.chat.is_anchored
        app.chat.anchor(False)
        await pilot.press(*"abc", "home", "end", "d")
        assert app.prompt.text == "abcd" and not app.chat.is_anchored


async def test_the_thinking_meter_counts_toward_the_budget_and_says_how_it_ended() -> None:
    clock = FrozenClock()
    engine = GatedEngine(REPLY, pause_after=3)
    app = R1ChatApp(Settings(think_budget=6), engine=engine, clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        assert "thinking budget 6" in str(app.status.content)
        view = await ask(pilot, app, "q")
        clock.t += 4
        await wait_until(lambda: engine.paused.is_set(), pilot)
        await wait_until(lambda: str(view.pane.title) == "Thinking… 4s · 3 / 6 tokens", pilot)
        engine.gate.set()
        await wait_until(lambda: idle(app), pilot)
        # The budget counts the model's own tokens; the closing sentence is shown apart.
        title = str(view.pane.title)
        assert re.fullmatch(
            r"Thought for 4s · 6 tokens · budget reached \(\+\d+ to close it\)", title
        )
        assert markdown_source(view) == ANSWER  # the answer follows the budget's closing text
        assert "Time is up" in view.thinking


async def test_f8_sets_the_budget_of_the_next_questions() -> None:
    engine = ScriptedEngine(REPLY)
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("f8")
        await wait_until(lambda: app.screen.query("#dialog-input"), pilot)
        await pilot.press(*"1,024", "enter")
        await wait_until(lambda: app.reasoning.budget == 1024, pilot)
        assert "thinking budget 1,024" in str(app.status.content)
        await pilot.press("f8")
        await wait_until(lambda: app.screen.query("#dialog-input"), pilot)
        app.screen.query_one("#dialog-input").value = "0"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(lambda: app.reasoning.budget == 0, pilot)
        assert "no thinking" in str(app.status.content)
        view = await ask(pilot, app, "q")
        await wait_until(lambda: idle(app), pilot)
        assert view.thinking == "" and markdown_source(view) == ANSWER


async def test_ctrl_g_with_nothing_thinking_says_so() -> None:
    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert any("Nothing is thinking" in str(n.message) for n in app._notifications)


async def test_help_fits_80x24_and_scrolls_to_its_last_key() -> None:
    from textual.containers import VerticalScroll

    from r1chat.tui.help import EXTRA_KEYS

    app = R1ChatApp(engine=ScriptedEngine(REPLY))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        screen = app.screen.region
        keys = app.screen.query_one("#help-keys", VerticalScroll)
        rows = list(app.screen.query(".help-row"))
        # Nothing is cut off at the side: descriptions wrap.
        assert all(r.region.right <= screen.right for r in rows)
        assert screen.contains_region(app.screen.query_one("#help-foot").region)
        assert keys.max_scroll_y > 0  # more keys than fit: it scrolls
        for _ in range(60):
            await pilot.press("down")
        await pilot.pause()
        last = rows[-1]
        assert str(last.query_one(".help-key").render()) == EXTRA_KEYS[-1][0]
        assert keys.region.contains_region(last.region)
        await pilot.press("escape")
        assert type(app.screen).__name__ != "HelpScreen"
