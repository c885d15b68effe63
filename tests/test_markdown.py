"""Where top-level Markdown blocks begin: the cut points for streaming and for the TUI's parts."""

from __future__ import annotations

import io

from rich.console import Console

from r1chat.markdown import answer_markdown, block_starts, fence_runs


def _blocks(text: str) -> list[str]:
    starts = block_starts(text)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def test_each_top_level_block_starts_once() -> None:
    text = "# Title\n\npara one\nline two\n\n---\n\nlast"
    assert _blocks(text) == ["# Title\n\n", "para one\nline two\n\n", "---\n\n", "last"]


def test_loose_lists_quotes_and_fences_stay_whole() -> None:
    text = (
        "1. first\n\n2. second\n\n   still the second item\n\n"
        "> quoted\n>\n> more quoted\n\n"
        "```python\nx = 1\n\n\ny = 2\n```\n\n"
        "after"
    )
    assert _blocks(text) == [
        "1. first\n\n2. second\n\n   still the second item\n\n",
        "> quoted\n>\n> more quoted\n\n",
        "```python\nx = 1\n\n\ny = 2\n```\n\n",
        "after",
    ]


def test_an_unclosed_fence_runs_to_the_end() -> None:
    assert block_starts("intro\n\n```py\nx = 1\n\ny") == [0, 7]


def test_no_blocks_in_blank_text() -> None:
    assert block_starts("") == [] and block_starts("\n\n  \n") == []


def _render(text: str) -> str:
    console = Console(width=60, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(answer_markdown(text))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_headings_are_left_aligned_and_links_stay_text() -> None:
    out = _render("# Big title\n\nsee [the docs](https://example.com/x)")
    assert out.startswith("Big title")
    assert "https://example.com/x" in out and "\x1b]8" not in out


def test_console_markup_in_model_text_is_shown_as_typed() -> None:
    assert "[bold red]not markup[/bold red]" in _render("[bold red]not markup[/bold red]")


def test_a_growing_fence_keeps_its_runs_but_the_last() -> None:
    # `ask` prints a long fence's runs but the last as final while it streams: more lines must
    # never move a cut. Blank and indented lines around the cuts, and an indented stretch longer
    # than two runs, where a cut falls inside a statement.
    code = "".join(
        f"def f{i}(x):\n" + "    y = x\n" * (i % 4) + "\n" * (i % 3) + f"    return y * {i}\n"
        for i in range(40)
    )
    code += "".join(f"    more = {i}\n" for i in range(50)) + "tail = 1\n"
    lines = code.splitlines(keepends=True)
    whole = fence_runs("```python\n" + code + "```\n")
    assert whole is not None and len(whole) > 6
    for n in range(len(lines) + 1):
        final = (fence_runs("```python\n" + "".join(lines[:n])) or [])[:-1]
        assert final == whole[: len(final)], n
