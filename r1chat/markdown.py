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


# Lines of a code fence rendered together: Rich renders a 400-line fence in ~0.5 s, so a long
# fence is rendered in runs of lines (by the TUI and by `ask`), and only the run still growing is
# rendered again.
FENCE_RUN_LINES = 20


def fence_runs(block: str) -> list[str] | None:
    """A long fenced code block cut into fences of 1-2x FENCE_RUN_LINES lines, or None.

    Rich drops a fence's trailing blank lines, never its leading ones, so blank lines at a cut
    start the next run and the runs rendered one after another show every line of the whole.
    Cuts prefer a line at the left margin (a new top-level statement), where a multi-line string
    or comment is least likely to be open, so highlighting rarely changes at a cut.

    Each cut is the first suitable line past its run's start, so lines added to the fence never
    move one: while a fence streams in, every run but the last is final (`ask` prints it once).
    """
    fence = code_fence(block)
    if fence is None:
        return None
    marker, info, code = fence
    body = code.rstrip("\n").split("\n")
    if len(body) <= FENCE_RUN_LINES:
        return None
    runs: list[list[str]] = []
    start = 0
    while len(body) - start > FENCE_RUN_LINES:
        window = range(start + FENCE_RUN_LINES, min(len(body), start + 2 * FENCE_RUN_LINES))
        cut = next((i for i in window if body[i][:1] not in ("", " ", "\t")), None)
        if cut is None and len(body) - start <= 2 * FENCE_RUN_LINES:
            break  # a longer last run rather than a cut inside a statement
        if cut is None:
            cut = next((i for i in range(window.start, len(body)) if body[i].strip()), None)
        if cut is None:
            break  # only blank lines are left
        while cut - 1 > start and not body[cut - 1].strip():
            cut -= 1
        runs.append(body[start:cut])
        start = cut
    runs.append(body[start:])
    return [f"{marker}{info}\n" + "\n".join(run) + f"\n{marker}\n" for run in runs]
