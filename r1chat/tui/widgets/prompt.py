"""The multi-line input: Enter sends, Ctrl+J (or Shift+Enter where delivered) adds a newline.

Every key is handled in the order it was typed, here, in this widget's own message queue.
Textual runs an app's priority bindings as soon as the app receives a key, and other bindings
once the key has bubbled back up to the app: either can run before keys queued ahead of it reach
the prompt, so a burst of text and Enter (a paste tool, tmux send-keys, a fast typist) sent the
question cut short. So the app's keys are not priority bindings, and the prompt looks up and
runs the binding of each non-printable key itself, when that key's turn comes.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import TextArea


class PromptInput(TextArea):
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

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            active = self.screen.active_bindings.get(event.key)
            if active is not None and active.enabled:
                event.stop()
                event.prevent_default()
                await self.app.run_action(active.binding.action, active.node)
                return
        await super()._on_key(event)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # An empty prompt has no line end to go to: End then reaches the app (follow the reply).
        if action == "cursor_line_end":
            return bool(self.text)
        return super().check_action(action, parameters)

    def action_newline(self) -> None:
        self.insert("\n")
