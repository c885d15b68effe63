"""The help screen: the keys, from the same table as the command palette."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from r1chat.tui.palette import COMMANDS

EXTRA_KEYS = (
    ("Ctrl+P", "Command palette"),
    ("Ctrl+Q", "Quit"),
    ("click a pane title", "Open or fold that turn's thinking"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(Content("r1chat keys"), id="help-title")
            yield DataTable(show_cursor=False, zebra_stripes=True)
            yield Static(Content("Esc, F1 or q closes this."), id="help-foot")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Does")
        for cmd in COMMANDS:
            table.add_row(cmd.key, cmd.help)
        for key, does in EXTRA_KEYS:
            table.add_row(key, does)
