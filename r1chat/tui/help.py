"""The help screen: the keys, from the same table as the command palette; each description
wraps to the screen's width and the list scrolls (at 80×24 it did neither)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from r1chat.tui.palette import COMMANDS

EXTRA_KEYS = (
    ("Ctrl+P", "Command palette"),
    ("Ctrl+Q", "Quit"),
    ("click a pane title", "Open or fold that turn's thinking"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "dismiss", "Close"),
        Binding("down,j", "scroll(1)", "Down", show=False),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("pagedown,space", "scroll(10)", "Page down", show=False),
        Binding("pageup", "scroll(-10)", "Page up", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(Content("r1chat keys"), id="help-title")
            with VerticalScroll(id="help-keys"):
                for key, does in [*((c.key, c.help) for c in COMMANDS), *EXTRA_KEYS]:
                    with Horizontal(classes="help-row"):
                        yield Static(Content(key), classes="help-key")
                        yield Static(Content(does), classes="help-does")
            yield Static(Content("↑/↓ scroll · Esc, F1 or q closes this."), id="help-foot")

    def action_scroll(self, lines: int) -> None:
        self.query_one("#help-keys", VerticalScroll).scroll_relative(y=lines, animate=False)
