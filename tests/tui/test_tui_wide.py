"""Chinese in a real terminal: tmux shows a saved Chinese conversation at 80×24 and 150×45, with
the thinking pane open and with the sidebar beside it; every line fits, nothing is cut off, the
thinking wraps between characters and the table's columns line up.

tmux's capture gives a wide character once (it fills two cells), so a line's width on the screen
is its `cell_len`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.cells import cell_len
from terminal import Terminal
from test_tui_tmux import app_env

from r1chat.history import HistoryStore

# Chinese with short Latin words between spaces, as the model writes: Rich and Textual break
# only at the spaces, which left up to half of a line empty.
THINKING = (
    "我们先从头考虑这个问题。要求用多米诺骨牌铺满一个 2 行 10 列的棋盘，共有多少种不同的方法。"
    "如果第一列放一块竖着的骨牌，剩下的部分就是少 1 列的同样问题；如果前两列放两块横着的骨牌，"
    "剩下的部分就是少 2 列的同样问题。所以方法数满足斐波那契递推，n 列时结果是 f(n)。"
)
TABLE = [
    ("n", "铺法数", "说明"),
    ("1", "1", "只能竖放"),
    ("2", "2", "两竖或两横"),
    ("10", "89", "第十一项"),
]
ANSWER = (
    "## 递推关系\n\n每一种铺法的开头只有两种可能：一块**竖着**的骨牌，或者两块*横着*的骨牌。\n\n"
    + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in TABLE[:1])
    + "\n|---|---|---|\n"
    + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in TABLE[1:])
    + "\n\n所以答案是 $\\boxed{89}$。"
)
QUESTION = "用多米诺骨牌铺满 2×10 的棋盘有多少种方法？"
TITLE = "多米诺骨牌铺满棋盘的方法数，一个很长很长的中文标题"
BAR = "▏"  # the thinking pane's left border
SIDE = "▕"  # the sidebar's right border


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    with HistoryStore.open(home / "history.sqlite3") as store:
        for i in range(3):
            cid = store.new_conversation(f"{TITLE} {i}", "r1-7b")
            store.add_user_message(cid, QUESTION)
            store.add_assistant_message(
                cid, ANSWER, THINKING, {"thinking_tokens": 90}, thinking_ended="model"
            )
    return home


@pytest.fixture(params=[(80, 24), (150, 45)], ids=["80x24", "150x45"])
def term(
    request: pytest.FixtureRequest, home: Path, scripted_model: Path, tmux: str
) -> Iterator[tuple[Terminal, int]]:
    size: tuple[int, int] = request.param
    command = f"{sys.executable} -m r1chat --model {scripted_model} --resume 3"
    term = Terminal(command, app_env(home), size)
    try:
        term.wait_for("·  CPU  ·", 60)
        yield term, size[0]
    finally:
        term.close()


def settled(term: Terminal, want: str) -> list[str]:
    """The screen once it shows `want` and stops changing (the last layout has been drawn)."""
    term.wait_for(want, 30)
    last = ""
    for _ in range(50):
        time.sleep(0.15)
        now = term.screen()
        if now == last and want in now:
            break
        last = now
    return last.splitlines()


def thinking_lines(lines: list[str]) -> list[str]:
    """The thinking pane's text, line by line, as shown right of its border."""
    out = []
    for line in lines:
        left, bar, text = line.rpartition(SIDE)[2].partition(BAR)
        if bar and not left.strip():
            # The answer (side by side, on a wide screen) or the chat's scrollbar may follow.
            out.append(text.strip().split("  ")[0].rstrip("▁▂▃▄▅▆▇█ "))
    return [line for line in out if line]


def check_fits(lines: list[str], width: int) -> None:
    for line in lines:
        assert cell_len(line) <= width, f"wider than the terminal: {line!r}"


def check_thinking(lines: list[str]) -> None:
    # The thinking shows whole, no line cut off at the pane's edge.
    shown = thinking_lines(lines)
    assert " ".join(shown).replace(" ", "") == THINKING.replace(" ", ""), "\n".join(shown)
    # It wraps between characters: every line but the last fills the pane to within a
    # character and the punctuation kept with it.
    widest = max(cell_len(line) for line in shown)
    assert all(cell_len(line) >= widest - 4 for line in shown[:-1]), "\n".join(shown)


def check_table(lines: list[str]) -> None:
    # The table's columns line up: each cell starts at the same screen column in every row.
    starts = []
    for row in TABLE:
        # Right of the sidebar, where there is one: its rows hold digits too.
        line = next(line for line in lines if row[2] in line).rpartition(SIDE)[2]
        at, cols = 0, []
        for cell in row:
            at = line.index(cell, at)
            cols.append(cell_len(line[:at]))
            at += len(cell)
        starts.append(cols)
    assert all(s == starts[0] for s in starts), starts


def test_chinese_wraps_and_lines_up_with_and_without_the_sidebar(
    term: tuple[Terminal, int],
) -> None:
    terminal, width = term
    lines = settled(terminal, "所以答案是")  # a saved reply opens with its thinking folded
    check_fits(lines, width)
    check_table(lines)
    terminal.send("C-t")  # open the thinking pane
    lines = settled(terminal, "▼ Thought")
    check_fits(lines, width)
    check_thinking(lines)

    # The sidebar beside the open pane: everything wraps again, narrower (the thinking kept
    # its old line ends, cut off at the pane's edge, before the fix).
    terminal.send("C-s")
    lines = settled(terminal, "Search history")
    check_fits(lines, width)
    check_thinking(lines)
    # The sidebar's rows keep its border in one column, titles of wide characters included.
    rows = [line for line in lines if SIDE in line]
    assert len(rows) > 10
    assert len({cell_len(line[: line.index(SIDE)]) for line in rows}) == 1, rows
    assert sum(TITLE[:8] in line for line in rows) == 3
    terminal.send("C-t")  # fold it: the whole table is on the screen at 80×24 too
    lines = settled(terminal, "▶ Thought")
    check_fits(lines, width)
    check_table(lines)
