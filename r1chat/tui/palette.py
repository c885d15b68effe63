"""The app's actions in the command palette (Ctrl+P), with the keys that also run them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class Command:
    title: str
    help: str
    action: str  # an action string run on the app
    key: str  # as shown to users


COMMANDS: tuple[Command, ...] = (
    Command("Send", "Send the prompt", "send", "Enter"),
    Command("Newline", "Add a line to the prompt", "newline", "Ctrl+J / Shift+Enter"),
    Command("Stop generation", "Stop the reply now and keep what came", "stop", "Esc"),
    Command("New chat", "Start a new conversation", "new_chat", "Ctrl+N"),
    Command(
        "Toggle thinking",
        "Open or fold the thinking of the focused (or last) turn",
        "toggle_thinking",
        "Ctrl+T",
    ),
    Command(
        "Copy answer", "Copy the last answer to the clipboard (OSC 52)", "copy('answer')", "Ctrl+O"
    ),
    Command(
        "Attach a file…",
        "Add a text file to the next question (type its path or pick it in the tree)",
        "attach",
        "Ctrl+F",
    ),
    Command(
        "Samples…",
        "Sample the next replies k times at once and vote over their answers",
        "samples",
        "F12",
    ),
    Command(
        "Regenerate",
        "Sample the last reply again; the earlier ones stay as alternatives",
        "regenerate",
        "Ctrl+R",
    ),
    Command(
        "Previous reply",
        "Show the previous alternative of the last reply",
        "alternative(-1)",
        "Alt+←",
    ),
    Command("Next reply", "Show the next alternative of the last reply", "alternative(1)", "Alt+→"),
    Command(
        "Edit question",
        "Edit the last question (again: the one before); Enter forks the conversation there",
        "edit_question",
        "Ctrl+↑",
    ),
    Command(
        "Previous branch", "Show the other version of an edited question", "branch(-1)", "Alt+↑"
    ),
    Command("Next branch", "Show the other version of an edited question", "branch(1)", "Alt+↓"),
    Command(
        "Copy thinking",
        "Copy the thinking of the focused (or last) turn to the clipboard",
        "copy('thinking')",
        "F9",
    ),
    Command(
        "Copy last code block",
        "Copy the last code block of the last answer",
        "copy('code block')",
        "Ctrl+B",
    ),
    Command(
        "Preset: math", "Step by step, final answer in \\boxed{} (toggle)", "preset('math')", "F2"
    ),
    Command(
        "Preset: code",
        "Think first, then complete code in a fenced block (toggle)",
        "preset('code')",
        "F3",
    ),
    Command(
        "Preset: logic",
        "Check each assumption, state the conclusion (toggle)",
        "preset('logic')",
        "F4",
    ),
    Command(
        "Answer now",
        "End the thinking of the reply running: the answer follows",
        "answer_now",
        "Ctrl+G",
    ),
    Command(
        "Thinking budget",
        "Set the thinking budget of the next questions (0: no thinking)",
        "think_budget",
        "F8",
    ),
    Command(
        "History sidebar",
        "Show or hide the saved conversations; it opens in its search box (type to search,"
        " model:NAME filters, ↓ to the list)",
        "toggle_sidebar",
        "Ctrl+S / F5",
    ),
    Command(
        "Undo delete",
        "Bring back the conversation deleted last (from the trash)",
        "undo_delete",
        "u (in the sidebar's list)",
    ),
    Command(
        "Rename conversation",
        "Rename this conversation (in the sidebar's list: r)",
        "rename_conversation",
        "r",
    ),
    Command(
        "Delete conversation",
        "Move this conversation to the trash, after a confirmation (in the sidebar's list: d)",
        "delete_conversation",
        "d",
    ),
    Command("Follow output", "Scroll to the end and keep following the reply", "follow", "End"),
    Command(
        "Load again",
        "Try loading the model again now (a server that was down)",
        "retry_load",
        "Ctrl+L",
    ),
    Command("Help", "Show the keys", "help", "F1"),
)


class R1ChatCommands(Provider):
    """Every r1chat action, found by fuzzy match on its title."""

    async def discover(self) -> Hits:
        for cmd in COMMANDS:
            yield DiscoveryHit(
                cmd.title, partial(self.app.run_action, cmd.action), help=f"{cmd.help}  [{cmd.key}]"
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd in COMMANDS:
            score = matcher.match(cmd.title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(cmd.title),
                    partial(self.app.run_action, cmd.action),
                    help=f"{cmd.help}  [{cmd.key}]",
                )
