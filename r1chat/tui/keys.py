"""Every key handled in the order it was typed, by the widget that has the focus by then.

Textual hands a key to the focused widget's own queue and runs bindings when the key has bubbled
back up to the app's queue (priority bindings: before the key is even delivered). Keys of one
burst (a paste tool, tmux send-keys, a fast typist) therefore raced each other: text and Enter
sent a question cut short, Esc, Ctrl+S, Ctrl+N and a question merged two questions. Widgets
that take keys mix in `OrderedKeys`:

- a key that reaches a widget after an earlier key moved the focus goes on to the focused one,
  in order (`focus_now` moves the focus at once; Textual's `focus()` waits a turn);
- a non-printable key runs its binding right here, on this widget's chain up to the app,
  instead of after bubbling through every parent's queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events

if TYPE_CHECKING:
    from textual.widget import Widget

    _Base = Widget
else:
    _Base = object


async def run_binding(widget: Widget, key: str) -> bool:
    """Run the first enabled non-priority binding of `key` from `widget` up to the app (priority
    bindings have had their turn before the key was delivered)."""
    for node in widget.ancestors_with_self:
        for binding in node._bindings.key_to_bindings.get(key, ()):
            if not binding.priority and await widget.app.run_action(binding.action, node):
                return True
    return False


def focus_now(widget: Widget) -> None:
    widget.screen.set_focus(widget)


class OrderedKeys(_Base):
    async def _on_key(self, event: events.Key) -> None:
        focused = self.screen.focused
        if focused is not None and focused is not self:
            event.stop()
            event.prevent_default()
            focused.post_message(events.Key(event.key, event.character))
            return
        if not event.is_printable and await run_binding(self, event.key):
            event.stop()
            event.prevent_default()
        # Otherwise Textual goes on to the widget's own `_on_key` (this one runs first).
