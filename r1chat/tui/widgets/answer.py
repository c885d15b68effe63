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
from textual.widget import Widget

from r1chat.markdown import answer_markdown, block_starts

# Blocks per sealed part: a 4,000-token answer is a few dozen widgets.
BLOCKS_PER_PART = 12


def render_markdown(source: str, width: int, dark: bool = True) -> Content:
    """`source` as Rich renders it at `width` cells, as Content (so it can be selected)."""
    console = Console(width=width, file=io.StringIO(), color_system="truecolor",
                      force_terminal=True, legacy_windows=False, markup=False, emoji=False,
                      highlight=False)
    md = answer_markdown(source, code_theme="monokai" if dark else "default")
    lines = console.render_lines(md, console.options.update_width(width), pad=False)
    texts = []
    for line in lines:
        text = Text(end="")
        for segment in line:
            if not segment.control:
                text.append(segment.text, segment.style)
        texts.append(text)
    # Parts sit one blank line apart, as Rich puts blocks: drop the blank lines Rich sometimes
    # adds before a block at the very start or after the last.
    while texts and not texts[-1].plain:
        texts.pop()
    while texts and not texts[0].plain:
        texts.pop(0)
    return Content.from_rich_text(Text("\n", end="").join(texts), console)


class BlockRenders:
    """Each block rendered once per width and theme: as text streams in, only the block still
    growing is rendered again (Rich takes ~3 ms a block, more with a highlighted fence)."""

    def __init__(self) -> None:
        self._key: tuple[int, bool] | None = None
        self._blocks: dict[str, Content] = {}

    def render(self, source: str, width: int, dark: bool, *, last_final: bool) -> Content:
        if (width, dark) != self._key:
            self._key = (width, dark)
            self._blocks = {}
        starts = block_starts(source)
        bounds = [*starts, len(source)]
        out: list[Content] = []
        for n, (a, b) in enumerate(pairwise(bounds)):
            block = source[a:b]
            content = self._blocks.get(block)
            if content is None:
                content = render_markdown(block, width, dark)
                # A live part's last block is still growing: each version would be kept.
                if last_final or n < len(starts) - 1:
                    self._blocks[block] = content
            if content.plain:
                out.append(content)
        return Content("\n\n").join(out)


class MarkdownPart(Widget):
    """A run of top-level Markdown blocks, as one widget."""

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

    def __init__(self, source: str = "", *, sealed: bool = False, final: bool = False,
                 renders: BlockRenders | None = None) -> None:
        super().__init__(classes="-sealed" if sealed else "")
        self.source = source
        self.final = sealed or final  # no more text will come
        self._renders = renders or BlockRenders()
        self._cache: tuple[tuple[int, bool], Content, int] | None = None

    def set_source(self, source: str) -> None:
        if source != self.source:
            self.source = source
            self._cache = None
            self.refresh(layout=True)

    def seal(self) -> None:
        self.add_class("-sealed")
        self.final = True
        self._cache = None

    def _rendered(self, width: int) -> tuple[Content, int]:
        key = (width, self.app.current_theme.dark)
        if self._cache is None or self._cache[0] != key:
            content = self._renders.render(
                self.source, width, key[1], last_final=self.final
            ) if width > 0 else Content("")
            lines = content.plain.count("\n") + 1 if content.plain else 0
            self._cache = (key, content, lines)
        return self._cache[1], self._cache[2]

    def render(self) -> Content:
        return self._rendered(self.size.width)[0]

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._rendered(width)[1]


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
        live_text = self.source[self._live_start:]
        live = self._live()
        # Only whole lines decide where blocks begin: "1" may yet become "10. item".
        starts = block_starts(live_text[:live_text.rfind("\n") + 1])
        if len(starts) <= BLOCKS_PER_PART:
            live.set_source(live_text)
            return
        # All but the last block are final (a later line can only extend the last one): they
        # become a sealed part, and the last block starts the next live part.
        cut = starts[-1]
        live.set_source(live_text[:cut])
        live.seal()
        self._live_start += cut
        await self.mount(MarkdownPart(self.source[self._live_start:], renders=self._renders))

    async def show(self, source: str) -> None:
        """Show a whole answer at once (from the history)."""
        await self.remove_children()
        self.source = source
        self.set_class(not source.strip(), "-empty")
        starts = block_starts(source)
        cuts = [0, *starts[BLOCKS_PER_PART::BLOCKS_PER_PART]]
        self._live_start = cuts[-1]
        parts = [MarkdownPart(source[a:b], sealed=True, renders=self._renders)
                 for a, b in pairwise(cuts)]
        await self.mount_all([*parts, MarkdownPart(source[self._live_start:], final=True,
                                                   renders=self._renders)])
