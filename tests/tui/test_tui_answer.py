"""The answer pane: Markdown streamed into a few leaf widgets, rendered by Rich."""

from __future__ import annotations

import random

from textual.app import App, ComposeResult
from textual.content import Content
from textual.selection import Selection
from tui_support import wait_until

from r1chat.mathtext import readable_math
from r1chat.tui.widgets.answer import (
    BLOCKS_PER_PART,
    AnswerView,
    BlockRenders,
    MarkdownPart,
    content_lines,
    fence_runs,
)

SECTION = (
    "## Step {k}\n\n"
    "1. a **vertical** domino\n\n2. two *horizontal* ones\n\n   still item two\n\n"
    "- base: `f(1) = 1`\n- growth: φ^n\n\n"
    "```python\ndef f(n):\n\n    return n\n```\n\n"
    "> so the answer is $\\boxed{{89}}$\n\n"
)
LONG = "# Tilings\n\n" + "".join(SECTION.format(k=k) for k in range(1, 31)) + "Done."


class AnswerApp(App[None]):
    def compose(self) -> ComposeResult:
        yield AnswerView()


def render_markdown(text: str, width: int) -> Content:
    """The whole text rendered at once: what the parts must add up to."""
    return Content("\n").join(content_lines(text, width))


async def _stream(view: AnswerView, text: str, seed: int) -> None:
    for piece in _pieces(text, seed):
        await view.append(piece)


def _pieces(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 40)
        out.append(text[i : i + n])
        i += n
    return out


def _shows_as_whole(view: AnswerView, text: str) -> bool:
    """Whether the parts, as the widgets draw them, read like `text` rendered in one piece."""
    parts = list(view.query(MarkdownPart))
    width = parts[0].size.width
    assert width > 0 and all(p.size.width == width for p in parts)
    # Sealed parts keep one blank line below them, as Rich puts between blocks.
    shown = "\n\n".join(p.render().plain for p in parts if p.source.strip())
    if BlockRenders.math:  # LaTeX drawn as Unicode, as the app does by default
        text = readable_math(text)
    return shown == render_markdown(text, width).plain


async def test_a_streamed_answer_becomes_few_widgets_that_render_as_the_whole() -> None:
    app = AnswerApp()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.query_one(AnswerView)
        await _stream(view, LONG, seed=1)
        await pilot.pause()
        parts = list(view.query(MarkdownPart))
        assert "".join(p.source for p in parts) == LONG
        # 30 sections of 5 blocks each: a dozen parts, not the ~600 widgets of Textual's Markdown.
        assert 8 <= len(parts) <= 16 and len(list(view.query("*"))) == len(parts)
        assert all(p.has_class("-sealed") for p in parts[:-1])
        assert not parts[-1].has_class("-sealed")
        for p in parts[:-1]:
            # A part never ends inside a list, quote or fence: each holds whole blocks.
            assert p.source.endswith("\n\n") and not p.source.rstrip().endswith("```python")
        assert _shows_as_whole(view, LONG)


async def test_a_partial_line_never_decides_where_a_part_ends() -> None:
    # "1" after a blank line would be a paragraph; it is the start of "10. ten".
    text = "".join(f"{n}. item\n\n" for n in range(1, 10)) + "1"
    app = AnswerApp()
    async with app.run_test() as pilot:
        view = app.query_one(AnswerView)
        for _ in range(BLOCKS_PER_PART):
            await view.append("para\n\n")
        await view.append(text)
        await view.append("0. ten\n")
        await pilot.pause()
        parts = list(view.query(MarkdownPart))
        assert "1. item" in parts[-1].source and parts[-1].source.endswith("10. ten\n")


async def test_a_saved_answer_is_shown_in_parts_and_re_renders_on_resize() -> None:
    app = AnswerApp()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.query_one(AnswerView)
        await view.show(LONG)
        await pilot.pause()
        parts = list(view.query(MarkdownPart))
        assert "".join(p.source for p in parts) == LONG and len(parts) > 1
        wide = parts[0].size.height
        await pilot.resize_terminal(24, 40)
        await wait_until(lambda: parts[0].size.height > wide, pilot)
        assert _shows_as_whole(view, LONG)


async def test_answer_text_can_be_selected() -> None:
    app = AnswerApp()
    async with app.run_test() as pilot:
        view = app.query_one(AnswerView)
        await view.append("Hello **world**, and `code`.")
        await pilot.pause()
        part = view.query_one(MarkdownPart)
        got = part.get_selection(Selection(None, None))
        assert got is not None and got[0].strip() == "Hello world, and code."


LONG_FENCE = (
    "```python\n"
    + "".join(f"def f{i}(x):\n    return x * {i}  # {i}\n" + "\n" * (i % 3) for i in range(60))
    + "```\n"
)


def test_a_long_fence_renders_in_runs_exactly_as_whole() -> None:
    runs = fence_runs(LONG_FENCE)
    assert runs is not None and len(runs) > 3
    assert all(r.startswith("```python\n") and r.endswith("\n```\n") for r in runs)
    whole = render_markdown(LONG_FENCE, 80)
    got = Content("\n").join(BlockRenders().render(LONG_FENCE, 80, True, last_final=True))
    # Every line, blank lines at the cuts included, with the same highlighting.
    assert got.plain == whole.plain and got.spans == whole.spans
    assert fence_runs("```\nshort\n```\n") is None and fence_runs("para\n" * 40) is None


async def test_a_long_fence_streams_into_the_same_screen() -> None:
    text = "Here is the code:\n\n" + LONG_FENCE + "\nThat is all."
    app = AnswerApp()
    async with app.run_test(size=(90, 40)) as pilot:
        view = app.query_one(AnswerView)
        await _stream(view, text, seed=3)
        await pilot.pause()
        assert _shows_as_whole(view, text)


def test_fence_runs_cut_between_statements_so_highlighting_holds() -> None:
    code = "".join(
        f'def f{i}():\n    """Line one\n    line two\n    """\n    return {i}\n\n'
        for i in range(12)
    )
    fence = f"```python\n{code}```\n"
    runs = fence_runs(fence)
    assert runs is not None and len(runs) > 2
    # Each later run starts (after the blank lines it took over) with a new function.
    for run in runs[1:]:
        assert next(line for line in run.split("\n")[1:] if line.strip()).startswith("def ")
    whole = render_markdown(fence, 70)
    got = Content("\n").join(BlockRenders().render(fence, 70, True, last_final=True))
    assert got.plain == whole.plain and got.spans == whole.spans


async def test_what_follows_a_long_fence_in_its_block_adds_nothing() -> None:
    body = "".join(f"line {i}\n" for i in range(25))
    cases = [
        f"```\n{body}```\n \n",
        f"```\n{body}```\n\t\n",
        f"```\n{body}```\n[x]: http://a\n",
        "```a`b is a paragraph\n" + "".join(f"word{i}\n" for i in range(24)),
    ]
    assert fence_runs(cases[-1]) is None  # not a fence at all
    app = AnswerApp()
    async with app.run_test(size=(60, 40)) as pilot:
        view = app.query_one(AnswerView)
        for text in cases:
            await view.show(text + "\nafter")
            await pilot.pause()
            assert _shows_as_whole(view, text + "\nafter"), text[:20]
