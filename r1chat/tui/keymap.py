"""The app's keys: what each does is in the command palette's table (palette.py), which F1 and
the README show; here is which key runs which action.

Not priority bindings: the prompt runs them in the order keys were typed (keys.py).
"""

from __future__ import annotations

from textual.binding import Binding, BindingType

KEYS: list[BindingType] = [
    Binding("escape", "stop", "Stop"),
    # Ctrl+C stops a reply; otherwise, pressed twice, it quits (the prompt's copy comes
    # first when text is selected).
    Binding("ctrl+c", "interrupt", "Stop", show=False),
    Binding("ctrl+n", "new_chat", "New chat"),
    Binding("ctrl+t", "toggle_thinking", "Thinking"),
    Binding("ctrl+o", "copy('answer')", "Copy"),
    Binding("ctrl+b", "copy('code block')", "Copy code"),
    Binding("f9", "copy('thinking')", "Copy thinking", show=False),
    Binding("f2", "preset('math')", "Math"),
    Binding("f3", "preset('code')", "Code"),
    Binding("f4", "preset('logic')", "Logic"),
    Binding("ctrl+g", "answer_now", "Answer now"),
    Binding("ctrl+r", "regenerate", "Again", show=False),
    Binding("ctrl+up", "edit_question", "Edit question", show=False),
    Binding("escape", "cancel_edit", "Cancel edit", show=False),
    Binding("alt+up", "branch(-1)", "Previous branch", show=False),
    Binding("alt+down", "branch(1)", "Next branch", show=False),
    Binding("alt+left", "alternative(-1)", "Previous reply", show=False),
    Binding("alt+right", "alternative(1)", "Next reply", show=False),
    Binding("f8", "think_budget", "Budget", show=False),
    Binding("f12", "samples", "Samples", show=False),
    Binding("ctrl+f", "attach", "Attach", show=False),
    Binding("f1", "help", "Help"),
    Binding("ctrl+l", "retry_load", "Load again", show=False),
    # The prompt's End (line end) comes first while it holds text (PromptInput.check_action).
    Binding("end", "follow", "Follow", show=False),
    # Not in the footer (it is full at 120 columns); F1 and Ctrl+P list it.
    Binding("ctrl+s,f5", "toggle_sidebar", "History", show=False),
]
# Actions that open a dialog or act on the conversation list: the main screen only.
MAIN_SCREEN_ONLY = frozenset(
    {
        "toggle_sidebar",
        "undo_delete",
        "rename_conversation",
        "delete_conversation",
        "think_budget",
        "samples",
        "attach",
        "help",
    }
)
