"""The multi-line input: Enter sends, Ctrl+J (or Shift+Enter where delivered) adds a newline.

Its keys are handled in the order they were typed (r1chat.tui.keys): a burst of text and Enter
sends all of the text.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import TextArea

from r1chat.sanitize import sanitize
from r1chat.tui.keys import OrderedKeys


class PromptInput(OrderedKeys, TextArea):
    """A TextArea whose Enter sends the question (the app's `send` action)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "app.send", "Send"),
        # Ctrl+J arrives as a line feed in every terminal; Shift+Enter only with the kitty
        # keyboard protocol.
        Binding("ctrl+j,shift+enter", "newline", "Newline", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            "",
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            highlight_cursor_line=False,
            compact=True,
            id=id,
            placeholder="Ask something… (Enter sends, Ctrl+J adds a line, "
            "F1 help, Ctrl+P commands)",
        )

    async def _on_paste(self, event: events.Paste) -> None:
        # A paste becomes typed text: no control characters or escape sequences (terminals send
        # pasted newlines as CR). TextArea's own handler, which Textual runs next, inserts it.
        event.text = sanitize(event.text.replace("\r\n", "\n").replace("\r", "\n"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # An empty prompt has no line end to go to: End then reaches the app (follow the reply).
        if action == "cursor_line_end":
            return bool(self.text)
        if action == "copy":  # nothing selected: Ctrl+C reaches the app (stop, or quit)
            return bool(self.selected_text)
        return super().check_action(action, parameters)

    def action_newline(self) -> None:
        self.insert("\n")
