"""The multi-line input: Enter sends, Ctrl+J (or Shift+Enter where delivered) adds a newline."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea


class PromptInput(TextArea):
    """A TextArea whose Enter sends. Priority bindings: TextArea would insert a newline first."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Send", priority=True),
        # Ctrl+J arrives as a line feed in every terminal; Shift+Enter only with the kitty
        # keyboard protocol.
        Binding("ctrl+j,shift+enter", "newline", "Newline", priority=True, show=False),
    ]

    class Submitted(Message):
        def __init__(self, prompt: PromptInput, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         highlight_cursor_line=False, compact=True, id=id,
                         placeholder="Ask something… (Enter sends, Ctrl+J adds a line, "
                                     "F1 help, Ctrl+P commands)")

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")
