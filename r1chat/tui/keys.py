"""Every key handled in the order it was typed, by the widget that has the focus by then.

Textual hands a key to the focused widget's own queue and runs bindings when the key has bubbled
back up to the app's queue (priority bindings: before the key is even delivered). Keys of one
burst (a paste tool, tmux send-keys, a fast typist) therefore raced each other: text and Enter
sent a question cut short, Esc, Ctrl+S, Ctrl+N and a question merged two questions. Widgets
that take keys mix in `OrderedKeys`:

- a key that reaches a widget after an earlier key moved the focus goes on to the focused one,
  in order (`focus_now` moves the focus at once; Textual's `focus()` waits a turn);
- a key that reaches a widget after an earlier key opened a dialog (F8, F12, Ctrl+F, d…) goes
  on to the dialog, which hands the keys to its field in order once the field has the focus; a
  key the app sends straight to the field meanwhile waits behind them; and a key that reaches a
  dialog's field after an earlier key closed the dialog goes back to the screen below;
- a non-printable key runs its binding right here, on this widget's chain up to the app,
  instead of after bubbling through every parent's queue; a printable one only when the widget
  itself binds it (elsewhere a letter is text).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events

if TYPE_CHECKING:
    from textual.widget import Widget

    _Base = Widget
else:
    _Base = object


async def run_binding(widget: Widget, key: str, *, own: bool = False) -> bool:
    """Run the first enabled non-priority binding of `key` from `widget` up to the app (priority
    bindings have had their turn before the key was delivered); `own`: the widget's alone."""
    for node in [widget] if own else widget.ancestors_with_self:
        for binding in node._bindings.key_to_bindings.get(key, ()):
            if not binding.priority and await widget.app.run_action(binding.action, node):
                return True
    return False


def focus_now(widget: Widget) -> None:
    widget.screen.set_focus(widget)


def deliver(widget: Widget, key: str, character: str | None) -> events.Key:
    """Hand `key` to `widget` as the app hands it a typed key: marked as forwarded, so that,
    unhandled, it bubbles to the app's bindings once instead of being taken for a new key."""
    event = events.Key(key, character)
    widget._forward_event(event)
    return event


class TakesPendingKeys:
    """A screen (a dialog) that takes the keys handed on to it and gives them to its focused
    widget in the order they came, keys typed straight to that widget meanwhile included
    (r1chat.tui.dialogs.Dialog)."""

    def take(self, key: str, character: str | None) -> None:
        raise NotImplementedError

    def waiting(self, event: events.Key) -> bool:
        """Whether `event`, come to the focused widget, must wait behind keys handed on."""
        raise NotImplementedError


class OrderedKeys(_Base):
    async def _on_key(self, event: events.Key) -> None:
        top = self.app.screen
        if top is not self.screen or (isinstance(top, TakesPendingKeys) and top.waiting(event)):
            event.stop()
            event.prevent_default()
            if isinstance(top, TakesPendingKeys):
                # At once, not as a message: a key the app sends straight to the dialog's field
                # must find every earlier one already in line.
                top.take(event.key, event.character)
            elif top.focused is not None:
                deliver(top.focused, event.key, event.character)
            return
        focused = self.screen.focused
        if focused is not None and focused is not self:
            event.stop()
            event.prevent_default()
            deliver(focused, event.key, event.character)
            return
        # A letter is text where it is typed, but the widget's own key where it binds one (the
        # sidebar list's r and d): run now, so a dialog it opens takes the keys after it.
        if await run_binding(self, event.key, own=event.is_printable):
            event.stop()
            event.prevent_default()
        # Otherwise Textual goes on to the widget's own `_on_key` (this one runs first).
