"""Pure helpers behind the TUI: pane titles and code-block extraction."""

from __future__ import annotations

from r1chat.tui.text import last_code_block, thinking_title


def test_title_while_thinking_and_after() -> None:
    assert thinking_title("thinking", 12.7, 340) == "Thinking… 12s · 340 tokens"
    assert thinking_title("done", 34.2, 1204) == "Thought for 34s · 1,204 tokens"
    assert thinking_title("done", 65, 1) == "Thought for 1m 05s · 1 token"
    assert thinking_title("stopped", 3, 9) == "Stopped after 3s · 9 tokens"


def test_last_code_block_is_the_last_fence_body() -> None:
    md = "a\n```python\nx = 1\n```\n\ntext\n~~~\ny = 2\nz = 3\n~~~\nend"
    assert last_code_block(md) == "y = 2\nz = 3"


def test_a_longer_fence_holds_a_shorter_one_and_unclosed_runs_to_the_end() -> None:
    assert last_code_block("````md\n```\ninner\n```\n````\n") == "```\ninner\n```"
    assert last_code_block("```\nstill streaming") == "still streaming"
    assert last_code_block("no code here") is None
