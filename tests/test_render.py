"""`ask` output with hostile model text: escapes never reach the terminal, markup stays literal.

A ScriptedEngine isolates the renderers from llama.cpp here: real models rarely emit escapes.
"""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console

from r1chat.engines.scripted import ScriptedEngine
from r1chat.render import JsonRenderer, PlainRenderer, Renderer, TerminalRenderer
from r1chat.sampling import SamplingParams
from r1chat.turn import Delta, TurnDone, run_turn

HOSTILE = (
    "I will \x1b]0;pwned\x07 try [link=http://x]tricks[/link]\n</think>\n\n"
    "Answer: [bold red]x[/] \x1b[31mred\x1b[0m \x1b]52;c;ZXZpbA==\x07 done\n\n"
    "```python\nprint('[i]hi[/i]')\n```\n\nEnd."
)


def drive(renderer: Renderer) -> None:
    engine = ScriptedEngine(HOSTILE)
    for ev in run_turn(engine, [], "q", SamplingParams()):
        if isinstance(ev, Delta):
            (renderer.think if ev.kind == "think" else renderer.answer)(ev.text)
        elif isinstance(ev, TurnDone):
            renderer.finish(ev.result)


def test_plain_output_has_no_escapes_and_literal_markup() -> None:
    out = io.StringIO()
    drive(PlainRenderer(out))
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "[bold red]x[/]" in text
    assert "I will" not in text  # thinking is not printed to pipes


def test_terminal_output_strips_escapes_but_keeps_markup_text() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, color_system="truecolor")
    drive(TerminalRenderer(show_think=True, console=console))
    text = buf.getvalue()
    assert "pwned" not in text and "]52;" not in text and "]0;" not in text
    assert "[bold red]x[/]" in text
    assert "[link=http://x]tricks[/link]" in text
    assert "print('[i]hi[/i]')" in text or "[i]hi[/i]" in text


def test_hidden_thinking_is_not_printed() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80)
    drive(TerminalRenderer(show_think=False, console=console))
    assert "I will" not in buf.getvalue()
    assert "Answer:" in buf.getvalue()


def test_json_escapes_control_characters() -> None:
    out = io.StringIO()
    drive(JsonRenderer(out))
    assert "\x1b" not in out.getvalue()
    data = json.loads(out.getvalue())
    assert data["answer"].startswith("Answer: [bold red]x[/]")


def test_terminal_output_keeps_loose_lists_and_fences_whole() -> None:
    # Finished blocks are printed as they complete; a list or fence with blank lines inside is
    # still one block, so its numbering and its code come out once and in order.
    reply = (
        "x\n</think>\n\n1. one\n\n2. two\n\n   more of two\n\n```\ncode\n\nmore code\n```\n\ntail"
    )
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=60)
    renderer = TerminalRenderer(show_think=False, console=console)
    for ev in run_turn(ScriptedEngine(reply), [], "q", SamplingParams()):
        if isinstance(ev, Delta) and ev.kind == "answer":
            renderer.answer(ev.text)
        elif isinstance(ev, TurnDone):
            renderer.finish(ev.result)
    lines = [line.strip() for line in buf.getvalue().splitlines() if line.strip()]
    assert lines == ["1 one", "2 two", "more of two", "code", "more code", "tail"]


def test_terminal_output_is_the_same_however_the_tokens_arrive() -> None:
    import random

    from r1chat.markdown import answer_markdown
    from r1chat.turn import TurnResult

    text = (
        "# Title\n\nFirst paragraph\nstill first.\n\n1. one\n\n2. two\n\n"
        "```python\nx = 1\n\n\ny = 2\n```\n\n> quoted\n\nLast line."
    )

    def printed(chunks: list[str]) -> str:
        buf = io.StringIO()
        renderer = TerminalRenderer(show_think=False, console=Console(file=buf, width=60))
        for chunk in chunks:
            renderer.answer(chunk)
        renderer.finish(TurnResult(question="q", answer=text))
        return buf.getvalue()

    whole = io.StringIO()
    Console(file=whole, width=60).print(answer_markdown(text))
    rng = random.Random(7)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 40)))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert printed(chunks) == whole.getvalue()


MATH = (
    "t\n</think>\n\nSo $x = \\frac{1}{2}$ and\n\n$$\\sqrt{2} \\times \\pi$$\n\nhence $\\boxed{42}$."
)


def render_math(math: bool, json_out: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, color_system=None)
    renderer = JsonRenderer(buf) if json_out else TerminalRenderer(False, console, math=math)
    engine = ScriptedEngine(MATH)
    for ev in run_turn(engine, [], "q", SamplingParams()):
        if isinstance(ev, Delta):
            (renderer.think if ev.kind == "think" else renderer.answer)(ev.text)
        elif isinstance(ev, TurnDone):
            renderer.finish(ev.result)
    return buf.getvalue()


def test_math_reads_as_unicode_on_a_terminal_and_stays_latex_elsewhere() -> None:
    shown = render_math(True)
    assert "x = 1/2" in shown and "√2 × π" in shown and "⟦42⟧" in shown
    assert "\\frac" not in shown
    raw = render_math(False)
    assert "\\frac{1}{2}" in raw and "⟦" not in raw
    answer = json.loads(render_math(True, json_out=True))["answer"]
    assert "$x = \\frac{1}{2}$" in answer and "\\boxed{42}" in answer


def long_fence(lines: int) -> str:
    """A Python fence of `lines` code lines, ~46 characters a line: 800 lines are ~37 KB."""
    statements = [
        "def tilings_{k}(n: int, memo: dict[int, int] | None = None) -> int:",
        '    """Tilings of a 2x{k} board, by the recurrence, memoised."""',
        "    a, b = 1, 2  # the first two widths of the board",
        "    for _ in range(n - 1):",
        "        a, b = b, a + b  # one more column each time",
        "    return a + (memo or {{}}).get(n, 0)  # from the cache",
        "",
    ]
    code = [statements[i % 7].format(k=i // 7) for i in range(lines)]
    return "```python\n" + "\n".join(code) + "\n```\n"


def stream(renderer: TerminalRenderer, text: str) -> None:
    from r1chat.engines.scripted import split_pieces
    from r1chat.turn import TurnResult

    for piece in split_pieces(text):  # ~4 characters a piece, as tokens come
        renderer.answer(piece)
    renderer.finish(TurnResult(question="q", answer=text))


def screen(output: str) -> list[str]:
    """What a terminal shows after `output`: Live's redraws replayed (cursor up, erase line,
    carriage return), styles dropped, lines without their trailing spaces."""
    import re

    rows: list[list[str]] = [[]]
    row = col = 0
    for m in re.finditer(r"\x1b\[([0-9;?]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+", output):
        token = m.group()
        if m.group(2) == "A":
            row = max(0, row - int(m.group(1) or 1))
        elif m.group(2) == "K":
            rows[row] = []
        elif m.group(2) is not None:
            continue  # colours, showing and hiding the cursor
        elif token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            rows.extend([] for _ in range(row + 1 - len(rows)))
        else:
            line = rows[row]
            line.extend(" " for _ in range(col - len(line)))
            line[col : col + len(token)] = token
            col += len(token)
    return ["".join(r).rstrip() for r in rows]


def test_a_long_fence_shows_every_line_once_in_order_on_a_terminal() -> None:
    # Printed in runs above the live view as it streams in: no line lost, none twice.
    fence = long_fence(300)
    text = "Here is the program:\n\n" + fence + "\nRun it with any n."
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, height=30)
    stream(TerminalRenderer(show_think=False, console=console), text)
    shown = [line.strip() for line in screen(buf.getvalue())]
    code = [line.strip() for line in fence.splitlines()[1:-1]]
    at = shown.index(code[0])
    assert shown[at : at + len(code)] == code
    for line in set(code) - {""}:
        assert shown.count(line) == code.count(line), line
    assert shown[0] == "Here is the program:" and "Run it with any n." in shown[at + len(code) :]


def test_a_long_fence_in_runs_prints_as_the_whole_fence_would() -> None:
    # The same lines and colours as the answer printed at once, however the tokens arrive: runs
    # are cut between statements, so the highlighting never sees a cut.
    import random

    from r1chat.markdown import answer_markdown
    from r1chat.turn import TurnResult

    text = "Intro.\n\n" + long_fence(130) + "\n1. after\n\n" + long_fence(45) + "end"
    whole = io.StringIO()
    Console(file=whole, width=90, color_system="truecolor").print(answer_markdown(text))
    rng = random.Random(5)
    for _ in range(4):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 600)))
        buf = io.StringIO()
        console = Console(file=buf, width=90, color_system="truecolor")
        renderer = TerminalRenderer(show_think=False, console=console)
        for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
            renderer.answer(text[a:b])
        renderer.finish(TurnResult(question="q", answer=text))
        assert buf.getvalue() == whole.getvalue()


def test_streaming_a_long_fence_costs_in_proportion_to_its_length(monkeypatch: Any) -> None:
    # Work is counted in characters handed to Rich's Markdown (a stand-in here: Rich takes ~3 s
    # a megabyte) and to the Markdown parser, with a redraw on every token: the most there can be.
    from rich.segment import Segment

    import r1chat.markdown as markdown

    work = [0]

    def counted_lines(console: Console, text: str, *args: Any, **kwargs: Any) -> Any:
        work[0] += len(text)
        return [[Segment(line)] for line in text.split("\n")]

    parse = markdown._PARSER.parse

    def counted_parse(src: str, *args: Any, **kwargs: Any) -> Any:
        work[0] += len(src)
        return parse(src, *args, **kwargs)

    monkeypatch.setattr(markdown, "markdown_lines", counted_lines)
    monkeypatch.setattr(markdown._PARSER, "parse", counted_parse)

    def cost(lines: int) -> int:
        work[0] = 0
        renderer = TerminalRenderer(
            show_think=False, console=Console(file=io.StringIO(), force_terminal=True, width=100)
        )
        renderer.REFRESH_S = renderer.REDRAW_GAP = 0.0
        stream(renderer, "Here is the program:\n\n" + long_fence(lines) + "\nRun it.")
        return work[0]

    short, long = cost(100), cost(400)
    # Linear: 4x the lines, ~4.2x the work. Rendering the unfinished block whole made it ~16x.
    assert long < 5 * short, (short, long)


def test_a_slow_redraw_is_not_repeated_on_every_token(monkeypatch: Any) -> None:
    # A clock that moves 50 ms a token and 0.5 s a redraw: once a redraw took longer than
    # REFRESH_S, each token used to find the next one due at once.
    import types

    import r1chat.markdown as markdown
    import r1chat.render as render

    clock = [0.0]
    redraws = [0]
    lines = markdown.markdown_lines

    def slow_lines(console: Console, text: str, *args: Any, **kwargs: Any) -> Any:
        clock[0] += 0.5
        redraws[0] += 1
        return lines(console, text, *args, **kwargs)

    monkeypatch.setattr(markdown, "markdown_lines", slow_lines)
    monkeypatch.setattr(render, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    renderer = TerminalRenderer(
        show_think=False, console=Console(file=io.StringIO(), force_terminal=True, width=80)
    )
    tokens = [f"word{i} " for i in range(200)]  # one paragraph: nothing is printed before the end
    for token in tokens:
        clock[0] += 0.05
        renderer.answer(token)
    assert redraws[0] <= len(tokens) // 10, redraws[0]
