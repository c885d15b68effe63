"""The answer pane: Markdown rendered by Rich into a handful of leaf widgets.

Textual's Markdown widget mounts a widget per block (a list item is three), and every layout pass
visits every widget on the screen: a 4,000-token answer is ~900 widgets, 2 ms each to mount and
~100 ms per layout pass once a few such answers are on screen. Here a run of finished blocks is one
widget, rendered once per width; only the run still streaming is re-rendered as text arrives.
"""

from __future__ import annotations

import io
from itertools import pairwise

from rich.console import Console
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.geometry import Size
from textual.selection import Selection
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget

from r1chat.markdown import block_starts, fence_runs, markdown_lines

# Blocks per sealed part: a 4,000-token answer is a few dozen widgets.
BLOCKS_PER_PART = 12


def content_lines(source: str, width: int, dark: bool = True, math: bool = False) -> list[Content]:
    """`source` as Rich renders it at `width` cells: one Textual Content per line."""
    console = Console(
        width=width,
        file=io.StringIO(),
        color_system="truecolor",
        force_terminal=True,
        legacy_windows=False,
        markup=False,
        emoji=False,
        highlight=False,
    )
    out = []
    for line in markdown_lines(console, source, "monokai" if dark else "default", math=math):
        text = Text(end="")
        for segment in line:
            if not segment.control:
                text.append(segment.text, segment.style)
        out.append(Content.from_rich_text(text, console))
    return out


class BlockRenders:
    """Each block rendered once per width and theme: as text streams in, only the block still
    growing is rendered again (Rich takes ~3 ms a block, more with a highlighted fence)."""

    # LaTeX shown as readable Unicode (the `math` setting; the app sets it once at start). The
    # answer's source, which copy and the history use, is never changed.
    math = True

    def __init__(self) -> None:
        self._key: tuple[int, bool] | None = None
        self._blocks: dict[str, list[Content]] = {}

    def render(self, source: str, width: int, dark: bool, *, last_final: bool) -> list[Content]:
        if (width, dark) != self._key:
            self._key = (width, dark)
            self._blocks = {}
        starts = block_starts(source)
        bounds = [*starts, len(source)]
        out: list[Content] = []
        for n, (a, b) in enumerate(pairwise(bounds)):
            final = last_final or n < len(starts) - 1
            lines = self._block(source[a:b], width, dark, final=final)
            if lines:
                if out:
                    out.append(Content(""))
                out.extend(lines)
        return out

    def _block(
        self, block: str, width: int, dark: bool, *, final: bool, split: bool = True
    ) -> list[Content]:
        lines = self._blocks.get(block)
        if lines is not None:
            return lines
        runs = fence_runs(block) if split else None
        if runs is None:
            lines = content_lines(block, width, dark, BlockRenders.math)
            # A live part's last block is still growing: each version would be kept.
            if final:
                self._blocks[block] = lines
        else:
            # Each run renders as a fence with a padding row above and below: keep the first
            # run's top row and the last run's bottom row only.
            lines = []
            for i, run in enumerate(runs):
                rendered = self._block(
                    run, width, dark, final=final or i < len(runs) - 1, split=False
                )
                lines.extend(rendered[(1 if i else 0) : (None if i == len(runs) - 1 else -1)])
        return lines


class MarkdownPart(Widget):
    """A run of top-level Markdown blocks, as one widget.

    Lines are turned into strips only when they are drawn: Textual's own path renders every line
    of a widget whenever it changes, ~100 ms for a 400-line code block on a slow CPU.
    """

    DEFAULT_CSS = """
    MarkdownPart {
        width: 1fr;
        height: auto;
    }
    MarkdownPart.-sealed {
        margin-bottom: 1;
    }
    """

    ALLOW_SELECT = True

    def __init__(
        self,
        source: str = "",
        *,
        sealed: bool = False,
        final: bool = False,
        renders: BlockRenders | None = None,
    ) -> None:
        super().__init__(classes="-sealed" if sealed else "")
        self.source = source
        self.final = sealed or final  # no more text will come
        self._renders = renders or BlockRenders()
        self._lines: tuple[tuple[int, bool], list[Content]] | None = None
        # Strips of the current lines, drawn so far, for one visual style.
        self._strips: tuple[object, list[Strip | None]] = (None, [])

    def set_source(self, source: str) -> None:
        if source != self.source:
            self.source = source
            self._lines = None
            self.refresh(layout=True)

    def seal(self) -> None:
        self.add_class("-sealed")
        self.final = True
        self._lines = None

    def lines_at(self, width: int) -> list[Content]:
        """The rendered lines at `width` cells."""
        key = (width, self.app.current_theme.dark)
        if self._lines is None or self._lines[0] != key:
            lines = (
                self._renders.render(self.source, width, key[1], last_final=self.final)
                if width > 0
                else []
            )
            self._lines = (key, lines)
            self._strips = (None, [])
        return self._lines[1]

    def render(self) -> Content:
        return Content("\n").join(self.lines_at(self.size.width))

    def render_line(self, y: int) -> Strip:
        if self.text_selection is not None:
            return super().render_line(y)  # the selection highlight spans lines: Textual's path
        width = self.size.width
        lines = self.lines_at(width)
        style = self.visual_style
        if y >= len(lines):
            return Strip.blank(width, style.rich_style)
        if self._strips[0] != style or len(self._strips[1]) != len(lines):
            self._strips = (style, [None] * len(lines))
        strips = self._strips[1]
        strip = strips[y]
        if strip is None:
            strip = strips[y] = Visual.to_strips(self, lines[y], width, 1, style)[0]
        return strip

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        text = "\n".join(line.plain for line in self.lines_at(self.size.width))
        return selection.extract(text), "\n"

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines_at(width))


class AnswerView(Vertical):
    """The answer, streamed in: sealed parts above, the part still growing at the end."""

    DEFAULT_CSS = """
    AnswerView {
        height: auto;
    }
    """

    def __init__(self, *, classes: str = "") -> None:
        super().__init__(classes=f"{classes} -empty")
        self.source = ""
        self._live_start = 0  # where the live part's text begins in `source`
        self._renders = BlockRenders()

    def compose(self) -> ComposeResult:
        yield MarkdownPart(renders=self._renders)

    def _live(self) -> MarkdownPart:
        live = self.children[-1]
        assert isinstance(live, MarkdownPart)
        return live

    async def append(self, text: str) -> None:
        self.source += text
        self.set_class(not self.source.strip(), "-empty")
        live_text = self.source[self._live_start :]
        live = self._live()
        # Only whole lines decide where blocks begin: "1" may yet become "10. item".
        starts = block_starts(live_text[: live_text.rfind("\n") + 1])
        if len(starts) <= BLOCKS_PER_PART:
            live.set_source(live_text)
            return
        # All but the last block are final (a later line can only extend the last one): they
        # become a sealed part, and the last block starts the next live part.
        cut = starts[-1]
        live.set_source(live_text[:cut])
        live.seal()
        self._live_start += cut
        await self.mount(MarkdownPart(self.source[self._live_start :], renders=self._renders))

    def finish(self) -> None:
        """No more text will come: the last part's blocks may be kept like the others."""
        self._live().final = True

    async def show(self, source: str) -> None:
        """Show a whole answer at once (from the history)."""
        await self.remove_children()
        self.source = source
        self.set_class(not source.strip(), "-empty")
        starts = block_starts(source)
        cuts = [0, *starts[BLOCKS_PER_PART::BLOCKS_PER_PART]]
        self._live_start = cuts[-1]
        parts = [
            MarkdownPart(source[a:b], sealed=True, renders=self._renders) for a, b in pairwise(cuts)
        ]
        await self.mount_all(
            [*parts, MarkdownPart(source[self._live_start :], final=True, renders=self._renders)]
        )
