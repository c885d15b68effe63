"""The multi-line input: Enter sends, Ctrl+J (or Shift+Enter where delivered) adds a newline.

It holds what is being composed: the text, the preset it goes with (F2-F4) and the attached
files (Ctrl+F); `take` turns them into the question. Its keys are handled in the order they were
typed (r1chat.tui.keys): a burst of text and Enter sends all of the text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import events, work
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widgets import TextArea

from r1chat.attachments import Attachment, read_attachment, with_attachments
from r1chat.errors import R1ChatError
from r1chat.prompts import apply_preset
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

    def load_text(self, text: str) -> None:
        super().load_text(text)
        self.refresh()  # Textual 8.2.8 may keep drawing the old text (see ThinkingText)

    def action_newline(self) -> None:
        self.insert("\n")

    preset: str | None = None
    # Each file going with the next question: how it is shown, its cost in tokens if counted.
    attached: tuple[tuple[Attachment, str, int | None], ...] = ()

    def take(self) -> tuple[str, list[dict[str, object]] | None]:
        """The question composed (preset and files applied) and its files' records; the
        prompt is left empty, the preset stays."""
        files = [a for a, _, _ in self.attached]
        records = [a.record(tokens) for a, _, tokens in self.attached]
        question = with_attachments(apply_preset(self.text.strip(), self.preset), files)
        self.clear()
        self.attach_shown(())
        self.show_mode()
        return question, records or None

    def toggle_preset(self, name: str) -> str | None:
        self.preset = None if self.preset == name else name
        self.show_mode()
        return self.preset

    def show_mode(self, *, editing: bool = False) -> None:
        """The border's title: an edit in progress, or the preset the next question goes with."""
        if editing:
            self.border_title = "editing: Enter forks the conversation here · Esc cancels"
        else:
            self.border_title = Content(f"preset: {self.preset}") if self.preset else None

    @work(thread=True, group="attach")
    def attach(self, path: str, count: Callable[[str], int] | None) -> None:
        """Read a file to go with the next question, off the UI thread (a large one takes
        seconds to read and count), and show it with what it costs in tokens."""
        app = self.app
        try:
            attachment = read_attachment(path)
            tokens = count(attachment.text) if count else None
        except R1ChatError as e:
            app.call_from_thread(app.notify, sanitize(str(e)), severity="error", markup=False)
            return
        size = f"{tokens:,} tokens" if tokens is not None else f"{attachment.size:,} bytes"
        label = f"{sanitize(Path(attachment.name).name)} ({size})"
        app.call_from_thread(
            lambda: self.attach_shown((*self.attached, (attachment, label, tokens)))
        )

    def attach_shown(self, files: tuple[tuple[Attachment, str, int | None], ...]) -> None:
        """The files going with the next question, each with its label (already sanitised)."""
        self.attached = files
        labels = [label for _, label, _ in files]
        self.border_subtitle = Content("attached: " + ", ".join(labels)) if labels else None
