"""Pure helpers behind the TUI: pane titles and code-block extraction."""

from __future__ import annotations

from r1chat.tui.text import ended_title, last_code_block, thinking_title


def test_title_while_thinking_and_after() -> None:
    assert thinking_title(12.7, 340) == "Thinking… 12s · 340 tokens"
    assert thinking_title(12.7, 340, budget=4096) == "Thinking… 12s · 340 / 4,096 tokens"
    assert ended_title(34.2, 1204, ended="model") == "Thought for 34s · 1,204 tokens"
    assert ended_title(65, 1, ended="model") == "Thought for 1m 05s · 1 token"
    assert ended_title(3, 9, finish="cancelled") == "Stopped after 3s · 9 tokens"


def test_the_title_says_what_ended_the_thinking_whatever_it_was() -> None:
    # The token limit during the thinking: not a live "Thinking…" left behind.
    assert ended_title(6, 200, finish="length") == "Cut at the token limit after 6s · 200 tokens"
    # A budget counts the model's own tokens; the closing sentence is shown apart.
    assert (
        ended_title(4, 60, ended="budget", forced=17)
        == "Thought for 4s · 60 tokens · budget reached (+17 to close it)"
    )
    assert ended_title(2, 30, ended="loop") == "Thought for 2s · 30 tokens · loop cut"
    assert ended_title(2, 30, ended="user") == "Thought for 2s · 30 tokens · answered on request"
    # From the history, where an old reply's time may not be kept.
    assert ended_title(None, 9, ended="model") == "Thought · 9 tokens"
    assert ended_title(None, 0, finish="cancelled") == "Stopped"


def test_last_code_block_is_the_last_fence_body() -> None:
    md = "a\n```python\nx = 1\n```\n\ntext\n~~~\ny = 2\nz = 3\n~~~\nend"
    assert last_code_block(md) == "y = 2\nz = 3"


def test_a_longer_fence_holds_a_shorter_one_and_unclosed_runs_to_the_end() -> None:
    assert last_code_block("````md\n```\ninner\n```\n````\n") == "```\ninner\n```"
    assert last_code_block("```\nstill streaming") == "still streaming"
    assert last_code_block("no code here") is None


def test_frame_pacer_keeps_the_ui_threads_share_of_a_core() -> None:
    from r1chat.tui.pacing import FramePacer

    clock = {"wall": 0.0, "cpu": 0.0}
    pacer = FramePacer(0.05, share=0.5, cpu=lambda: clock["cpu"], wall=lambda: clock["wall"])

    def frame_after(wall_s: float, cpu_s: float) -> bool:
        clock["wall"] += wall_s
        clock["cpu"] += cpu_s
        return pacer.ready()

    assert pacer.ready()  # the first frame at once
    # Cheap frames (10 ms of CPU): the full rate, one every 50 ms.
    assert not frame_after(0.04, 0.01)
    assert frame_after(0.01, 0.0)
    # A frame costing 80 ms of CPU: the next waits 160 ms, so the UI uses half a core at most.
    assert not frame_after(0.10, 0.08)
    assert not frame_after(0.05, 0.0)
    assert frame_after(0.01, 0.0)
    # Never slower than max_interval, and the last chunk is always drawn.
    assert not frame_after(0.01, 5.0) and frame_after(0.5, 0.0)
    assert pacer.ready(force=True) and pacer.frames == 5
