"""`ask` output with hostile model text: escapes never reach the terminal, markup stays literal.

A ScriptedEngine isolates the renderers from llama.cpp here: real models rarely emit escapes.
"""

from __future__ import annotations

import io
import json

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
