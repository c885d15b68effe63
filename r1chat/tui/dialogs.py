"""Small modal dialogs: a yes/no confirmation, a one-line text prompt (renaming, a budget, the
number of samples) and a file picker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from r1chat.attachments import MAX_BYTES
from r1chat.errors import R1ChatError
from r1chat.tui.keys import OrderedKeys, TakesPendingKeys, deliver

T = TypeVar("T")


@dataclass(frozen=True)
class Entered(Generic[T]):
    """What a prompt dialog gave back, checked (None is a value too: "no budget")."""

    value: T


class Dialog(TakesPendingKeys, ModalScreen[T]):
    """A modal dialog whose keys arrive in the order typed: keys typed before its field had
    the focus (handed on by the widget below) go to the field first, in order, and keys typed
    straight to the field meanwhile wait behind them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[tuple[str, str | None]] = []
        self._handed: set[events.Key] = set()  # handed to the field, not yet arrived there

    def take(self, key: str, character: str | None) -> None:
        self._pending.append((key, character))
        self._hand_on()

    def waiting(self, event: events.Key) -> bool:
        if event in self._handed:
            self._handed.discard(event)
            return False
        return bool(self._pending or self._handed)

    def on_screen_resume(self) -> None:
        # After Textual's own handler has given the field the focus.
        self.call_after_refresh(self._hand_on)

    def _hand_on(self) -> None:
        if self.focused is not None and self._pending:
            # Made by the app, as a typed key is: one made here would stop bubbling at this
            # screen (its sender) and never reach the app, which runs the dialog's bindings (y).
            self.app.call_next(self._deliver)

    def _deliver(self) -> None:
        focused = self.focused
        if focused is None:
            return
        pending, self._pending = self._pending, []
        for key, character in pending:
            self._handed.add(deliver(focused, key, character))


class DialogInput(OrderedKeys, Input):
    pass


class DialogButton(OrderedKeys, Button):
    pass


class ConfirmScreen(Dialog[bool]):
    """Dismissed with True only by the confirm button (or y); Esc, n and Cancel say no."""

    AUTO_FOCUS = "#cancel"  # the safe choice: Enter right away cancels

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "Cancel"),
        Binding("y", "answer(True)", "Yes"),
    ]

    def __init__(self, question: str, confirm: str = "Delete") -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.question), classes="dialog-text", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield DialogButton(Content(self.confirm), variant="error", id="confirm")
                yield DialogButton(Content("Cancel"), id="cancel")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextPromptScreen(Dialog[Entered[Any] | None]):
    """Asks for one line of text; Enter gives it back through `check` (which turns it into a
    value, or raises R1ChatError: the dialog stays and shows why), Esc gives None."""

    AUTO_FOCUS = "#dialog-input"

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, label: str, value: str = "", check: Callable[[str], Any] | None = None
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.label = label
        self.value = value
        self.check = check or (lambda text: text)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.label), classes="dialog-text", markup=False)
            yield DialogInput(self.value, id="dialog-input")
            error = Static("", classes="dialog-error", markup=False)
            error.display = False
            yield error

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            value = self.check(event.value)
        except R1ChatError as e:
            error = self.query_one(".dialog-error", Static)
            error.update(Content(str(e)))
            error.display = True
            return
        self.dismiss(Entered(value))

    def action_cancel(self) -> None:
        self.dismiss(None)


class FilePickerScreen(Dialog[str | None]):
    """Pick a file to attach: type its path (Enter), or walk the folder tree and select one."""

    AUTO_FOCUS = "#file-path"

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, root: str = ".") -> None:
        super().__init__(classes="dialog-screen")
        self.root = root

    def compose(self) -> ComposeResult:
        from textual.widgets import DirectoryTree

        with Vertical(classes="dialog file-picker"):
            yield Static(
                Content(
                    "Attach a file: type its path and Enter, or pick it below (Tab)."
                    f" Text files up to {MAX_BYTES // 1024} KiB."
                ),
                classes="dialog-text",
                markup=False,
            )
            yield DialogInput(placeholder="path/to/file", id="file-path")
            yield DirectoryTree(self.root, id="file-tree")

    @on(Input.Submitted, "#file-path")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())

    def on_directory_tree_file_selected(self, event: object) -> None:
        path = getattr(event, "path", None)
        if path is not None:
            self.dismiss(str(path))

    def action_cancel(self) -> None:
        self.dismiss(None)
