"""The answer's Markdown, as Rich renders it for `ask` and the TUI, and where its blocks begin.

Model text is untrusted: it reaches Rich only as Markdown source (never console markup), with
links shown as text, not as OSC 8 hyperlinks.
"""

from __future__ import annotations

from typing import ClassVar

from markdown_it import MarkdownIt
from rich.console import Console, JustifyMethod
from rich.markdown import Heading, Markdown
from rich.segment import Segment, Segments

from r1chat import widewrap

# Every path that renders an answer comes through here: Chinese wraps between characters.
widewrap.install()


class _LeftHeading(Heading):
    # Rich centres h1; in a chat column a centred heading reads as a banner, not a section.
    LEVEL_ALIGN: ClassVar[dict[str, JustifyMethod]] = {f"h{n}": "left" for n in range(1, 7)}


class AnswerMarkdown(Markdown):
    elements: ClassVar = {**Markdown.elements, "heading_open": _LeftHeading}


def answer_markdown(text: str, code_theme: str = "monokai") -> AnswerMarkdown:
    return AnswerMarkdown(text, code_theme=code_theme, hyperlinks=False)


def markdown_lines(
    console: Console, text: str, code_theme: str = "monokai", *, math: bool = False
) -> list[list[Segment]]:
    """`text` as Markdown lines at the console's width, without the blank lines Rich sometimes
    puts before the first block (a loose list) or after the last: pieces rendered apart then sit
    exactly one blank line apart, as Rich puts blocks rendered together. `math`: LaTeX shown as
    readable Unicode (r1chat.mathtext); the text itself stays as written."""
    if math:
        from r1chat.mathtext import readable_math

        text = readable_math(text)
    lines = console.render_lines(answer_markdown(text, code_theme), console.options, pad=False)
    while lines and not "".join(seg.text for seg in lines[-1]):
        lines.pop()
    while lines and not "".join(seg.text for seg in lines[0]):
        lines.pop(0)
    return lines


def markdown_segments(console: Console, text: str, *, math: bool = False) -> Segments:
    """`markdown_lines` as one renderable to print: the lines, each ending in a newline."""
    lines = markdown_lines(console, text, math=math)
    return Segments([seg for line in lines for seg in (*line, Segment.line())])


# The parser Rich's Markdown uses, so blocks split here are the blocks Rich would render.
_PARSER = MarkdownIt().enable("strikethrough").enable("table")


def block_starts(text: str) -> list[int]:
    """Offsets in `text` where each top-level Markdown block begins.

    A list, a block quote or a fence is one block however many blank lines it holds, so text cut
    at these offsets renders the same piece by piece as whole.
    """
    line_starts = [0]
    pos = text.find("\n")
    while pos >= 0:
        line_starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    starts = []
    for token in _PARSER.parse(text):
        if token.level == 0 and token.nesting >= 0 and token.map is not None:
            starts.append(line_starts[token.map[0]])
    return starts


def code_fence(block: str) -> tuple[str, str, str] | None:
    """(marker, info, code) when `block` is a fenced code block at the left margin, else None.

    Asks the parser, not the first characters: "```a`b" starts a paragraph, not a fence.
    """
    if block[:1] not in ("`", "~"):
        return None  # no parse needed: called for every block as text streams in
    tokens = _PARSER.parse(block)
    if not tokens or tokens[0].type != "fence":
        return None
    token = tokens[0]
    return token.markup, token.info, token.content
