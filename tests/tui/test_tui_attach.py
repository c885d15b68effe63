"""Attaching a file in the app: in a real terminal (tmux), Ctrl+F, a typed path, the token count
before sending, and the file in the saved question; and the folder tree through Pilot."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from pathlib import Path

from terminal import Terminal
from test_tui_tmux import LOADED, SIZE, app_env, saved, wait_until
from textual.content import Content
from textual.widgets import DirectoryTree, TextArea
from tui_support import wait_until as pilot_wait

from r1chat.engines.scripted import ScriptedEngine
from r1chat.tui.app import R1ChatApp
from r1chat.tui.dialogs import FilePickerScreen
from r1chat.tui.widgets.message import AttachmentLine, TurnView


def test_a_file_attached_by_path_goes_with_the_question(
    scripted_model: Path, tmp_path: Path, tmux: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("the secret number is 42\n")
    term = Terminal(f"{sys.executable} -m r1chat --model {scripted_model}", app_env(home), SIZE)
    try:
        term.wait_for(LOADED, 60)
        term.send("C-f")
        term.wait_for("Attach a file", 10)
        term.send(str(notes), "Enter")
        term.wait_for("attached: notes.txt (", 10)
        screen = term.screen()
        assert "tokens)" in screen
        term.send("What is in the file?", "Enter")
        wait_until(lambda: len(saved(home)) == 2, 30, "the reply")
        question = saved(home)[0][1]
        assert question.startswith("What is in the file?\n\n")
        assert f"{notes}:\n```\nthe secret number is 42\n```" in question
        with sqlite3.connect(home / "history.sqlite3") as con:
            files = con.execute("SELECT attachments FROM messages WHERE role='user'").fetchone()[0]
        [record] = json.loads(files)
        assert record["name"] == str(notes) and record["size"] == 24 and record["tokens"] > 5
    finally:
        term.close()


async def test_a_file_picked_in_the_tree_is_attached(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print(1)\n")
    engine = ScriptedEngine("t\n</think>\n\nok")
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("ctrl+f")
        await pilot_wait(lambda: isinstance(app.screen, FilePickerScreen), pilot)
        tree = app.screen.query_one(DirectoryTree)
        tree.path = tmp_path

        def listed() -> object:
            return next((n for n in tree.root.children if str(n.label) == "a.py"), None)

        await pilot_wait(listed, pilot)
        node = listed()
        assert node is not None
        tree.select_node(node)  # type: ignore[arg-type]
        await pilot_wait(lambda: app.prompt.attached, pilot)
        assert app.prompt.attached[0][0].text == "print(1)\n"
        assert "attached: a.py (" in str(app.prompt.border_subtitle)
        app.prompt.insert("Explain")
        await pilot.press("enter")
        await pilot_wait(lambda: engine.requests and not app.chat.busy, pilot)
        assert engine.requests[0][-1].content.endswith("a.py:\n```python\nprint(1)\n```")
        assert app.prompt.attached == () and not app.prompt.border_subtitle
        # On screen the question is the question; the file is one line that opens.
        view = app.query(TurnView).last()
        assert str(view.query_one(".question").render()).strip() == "Explain"
        [line] = view.query(AttachmentLine)
        assert line.collapsed and re.fullmatch(r"📎 a\.py · \d+ tokens", str(line.title))
        line.collapsed = False
        await pilot_wait(lambda: line.query(TextArea), pilot)
        assert "print(1)" in line.query_one(TextArea).text


async def test_a_file_name_is_shown_as_written_never_as_markup(tmp_path: Path) -> None:
    """A file named like Textual markup (an action link that quits) is shown literally, in
    the prompt's border and in the question's file line; nothing it names is run."""
    name = "[@click=app.quit]x[b]y.txt"
    (tmp_path / name).write_text("data\n")
    engine = ScriptedEngine("t\n</think>\n\nok")
    app = R1ChatApp(engine=engine)
    async with app.run_test(size=(130, 40)) as pilot:
        app.prompt.attach(str(tmp_path / name), None)
        await pilot_wait(lambda: app.prompt.attached, pilot)
        subtitle = app.prompt._border_subtitle
        assert subtitle is not None and subtitle.plain == f"attached: {name} (5 bytes)"
        assert not subtitle.spans
        app.prompt.insert("Read it")
        await pilot.press("enter")
        await pilot_wait(lambda: engine.requests and not app.chat.busy, pilot)
        [line] = app.query(TurnView).last().query(AttachmentLine)
        label = line._title.label
        assert isinstance(label, Content) and label.plain.startswith(f"📎 {name} · ")
        assert app.is_running


async def test_a_named_pipe_is_refused_at_once(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer for ever: it is refused before it is opened, with one
    line, and the app goes on (before, the app froze and ignored even Ctrl+Q)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    app = R1ChatApp(engine=ScriptedEngine("t\n</think>\n\nok"))
    async with app.run_test(size=(130, 40)) as pilot:
        app.prompt.attach(str(fifo), None)

        def errors() -> list[str]:
            return [str(n.message) for n in app._notifications if n.severity == "error"]

        await pilot_wait(errors, pilot, timeout=10)
        assert errors() == [f"cannot attach {fifo}: it is a named pipe, not a regular file"]
        assert app.prompt.attached == ()
