"""The history sidebar: a search box over the saved conversations, newest first, where they can
be opened, renamed and deleted (to the trash: undone with u in the list, or the notification's
Undo).

It opens with the focus in the search box, so typed text searches: the list's one-letter keys
(r renames, d deletes, u undoes a delete) work only once the list itself has the focus (↓,
Enter or Tab from the search), and a line under the list says which keys do what where the
focus is. `model:NAME` in
the search keeps the conversations of models whose name holds NAME.

It is the one part of the TUI that talks to the history store: it reads and edits it itself; the
app hears which conversation to open (`Open`, with `moved` when a search hit on another branch
made that branch the one shown) and which was deleted (`Deleted`); it asks the app only which
conversation has a reply running (`busy`), which cannot be deleted. A dialog opens in the same
handler as the key that asked for it, so the keys typed after it go into it. Titles and snippets are
user and model text, so they become `Content`, never markup, and are sanitised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from r1chat.errors import R1ChatError
from r1chat.history import TRASH_DAYS
from r1chat.sanitize import sanitize
from r1chat.tui.dialogs import ConfirmScreen, Entered, TextPromptScreen
from r1chat.tui.keys import OrderedKeys, focus_now

if TYPE_CHECKING:
    from r1chat.history import ConversationSummary, HistoryStore

T = TypeVar("T")
LIST_LIMIT = 500
SEARCH_LIMIT = 100


@dataclass(frozen=True)
class SidebarRow:
    """One conversation as the sidebar shows it: its title, and under it what it is (when,
    which model, how big) or, for a search hit, the text that matched."""

    conversation_id: int
    title: str
    detail: str = ""


def option_id(conv_id: int) -> str:
    return f"c{conv_id}"


def row_content(row: SidebarRow) -> Content:
    title = Content(sanitize(row.title).replace("\n", " "))
    if not row.detail:
        return title
    detail = sanitize(row.detail).replace("\n", " ")
    return Content.assemble(title, "\n", (detail, "dim"))


def summary_line(c: ConversationSummary) -> str:
    """ "Dec 06 14:02 · r1-7b · 4 msgs · 1,204 tok": which of thirty "What is 2+2?" it is."""
    try:
        when = datetime.fromisoformat(c.updated).astimezone().strftime("%b %d %H:%M")
    except ValueError:
        when = c.updated
    return f"{when} · {c.model or '?'} · {c.messages} msgs · {c.tokens:,} tok"


def parse_query(text: str) -> tuple[str, str | None]:
    """(the words to search, the model filter) of what was typed: `model:NAME` filters."""
    words, model = [], None
    for word in text.split():
        if word.lower().startswith("model:") and len(word) > len("model:"):
            model = word[len("model:") :]
        else:
            words.append(word)
    return " ".join(words), model


HINTS = {
    "search": "type to search · model:NAME filters · ↓ the list · Esc closes",
    "list": "Enter opens · r renames · d deletes · u undoes · ↑ search · Esc closes",
}


class ConversationList(OrderedKeys, OptionList):
    """The list itself: Enter opens, r renames, d or Delete deletes the highlighted one (after
    asking); these keys are its own, so they act only while it has the focus."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
        Binding("u", "app.undo_delete", "Undo delete"),
    ]

    def action_cursor_up(self) -> None:
        # Up from the first row goes back to the search box.
        if self.highlighted in (None, 0) and isinstance(self.parent, Sidebar):
            focus_now(self.parent.search_box)
            return
        super().action_cursor_up()

    def highlighted_id(self) -> int | None:
        option = self.highlighted_option
        if option is None or option.id is None:
            return None
        return int(option.id[1:])

    def action_rename(self) -> None:
        cid = self.highlighted_id()
        if cid is not None and isinstance(self.parent, Sidebar):
            self.parent.ask_rename(cid)

    def action_delete(self) -> None:
        cid = self.highlighted_id()
        if cid is not None and isinstance(self.parent, Sidebar):
            self.parent.ask_delete(cid)


class SearchBox(OrderedKeys, Input):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("down", "to_list", "List", show=False)]

    def action_to_list(self) -> None:
        if isinstance(self.parent, Sidebar):
            focus_now(self.parent.conversations)


class Sidebar(Vertical):
    """Docked at the left; hidden until toggled (`-open`, see r1chat.tcss)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Closed by the app's own toggle, which gives the prompt the focus at once.
        Binding("escape", "app.toggle_sidebar", "Close", show=False),
    ]

    class Open(Message):
        """Open this conversation (and continue it)."""

        def __init__(self, conversation_id: int, moved: bool = False) -> None:
            super().__init__()
            self.conversation_id = conversation_id
            self.moved = moved  # a search hit made another branch the one shown

    class Deleted(Open):
        """This conversation went to the trash (`title`: what it was called)."""

        def __init__(self, conversation_id: int, title: str) -> None:
            super().__init__(conversation_id)
            self.title = title

    def __init__(self, store: HistoryStore | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.current: int | None = None  # the conversation on screen, kept highlighted
        self.search_box = SearchBox(
            placeholder="Search history…", id="sidebar-search", compact=True
        )
        self.conversations = ConversationList(id="sidebar-list", compact=True)
        self.hint = Static(Content(HINTS["search"]), id="sidebar-hint", markup=False)
        self._hits: dict[int, int] = {}  # conversation -> the message its search hit is in
        self.last_deleted: int | None = None  # what Undo brings back
        self.busy: Callable[[], int | None] = lambda: None  # the conversation with a reply running

    def compose(self) -> ComposeResult:
        yield self.search_box
        yield self.conversations
        yield self.hint

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        where = "list" if event.widget is self.conversations else "search"
        self.hint.update(Content(HINTS[where]))

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    @property
    def query_text(self) -> str:
        return self.search_box.value.strip()

    def set_open(self, open_: bool) -> None:
        self.set_class(open_, "-open")

    def reveal(self, current: int | None) -> None:
        """Open with the search box focused: typing searches, never acts on the list."""
        self.set_open(True)
        self.reload(current)
        focus_now(self.search_box)

    def _store_call(self, fn: Callable[[], T]) -> T | None:
        """Run a store call; a failure is shown and the app goes on (None comes back)."""
        try:
            return fn()
        except R1ChatError as e:
            self.app.notify(f"History: {sanitize(str(e))}", severity="error", markup=False)
            return None

    def reload(self, current: int | None = None) -> None:
        """Show the conversations again (or the search hits), `current` highlighted."""
        self.current = current
        store = self.store
        if store is None:
            self.show([], empty="History is off")
            return
        query, model = parse_query(self.query_text)
        if not query:
            convs = (
                self._store_call(lambda: store.list_conversations(LIST_LIMIT, model=model)) or []
            )
            self.show(
                [SidebarRow(c.id, c.title, summary_line(c)) for c in convs],
                empty="No matches" if model else "No conversations yet",
            )
            return
        hits = (
            self._store_call(lambda: store.search(query, SEARCH_LIMIT, mark=("", ""), model=model))
            or []
        )
        rows: list[SidebarRow] = []
        seen: set[int] = set()
        self._hits = {}
        for hit in hits:
            if hit.conversation_id not in seen:
                seen.add(hit.conversation_id)
                self._hits[hit.conversation_id] = hit.message_id
                rows.append(SidebarRow(hit.conversation_id, hit.title, hit.snippet))
        self.show(rows, empty="No matches")

    def show(self, rows: list[SidebarRow], empty: str = "No conversations yet") -> None:
        """Replace the list; keep the current conversation highlighted when it is there."""
        lst = self.conversations
        lst.clear_options()
        if not rows:
            lst.add_option(Option(Content(empty), disabled=True))
            return
        lst.add_options(Option(row_content(r), id=option_id(r.conversation_id)) for r in rows)
        ids = [r.conversation_id for r in rows]
        lst.highlighted = ids.index(self.current) if self.current in ids else 0

    # --- renaming and deleting, after asking ---

    def _saved(self, cid: int | None) -> int | None:
        if cid is None:
            self.app.notify("Nothing saved in this chat yet.")
        return cid

    def ask_rename(self, cid: int | None) -> None:
        if (cid := self._saved(cid)) is None:
            return
        store = self.store
        conv = self._store_call(lambda: store.get_conversation(cid)) if store else None
        if store is None or conv is None:
            return

        def done(title: Entered[str] | None) -> None:
            if title is not None and title.value.strip():
                self._store_call(lambda: store.rename(cid, title.value))
                self.reload(self.current)

        self.app.push_screen(
            TextPromptScreen("Rename the conversation:", sanitize(conv.title)), done
        )

    def ask_delete(self, cid: int | None) -> None:
        """Ask, then move the conversation to the trash (not while a reply runs in it)."""
        if (cid := self._saved(cid)) is None:
            return
        if cid == self.busy():
            self.app.notify("Still answering in that conversation: Esc stops it.")
            return
        store = self.store
        conv = self._store_call(lambda: store.get_conversation(cid)) if store else None
        if store is None or conv is None:
            return

        def done(yes: bool | None) -> None:
            if yes and self._store_call(lambda: store.delete(cid)) is None:
                self.last_deleted = cid
                self.post_message(self.Deleted(cid, conv.title))
                self.reload(None if cid == self.current else self.current)

        title = sanitize(conv.title)
        self.app.push_screen(
            ConfirmScreen(
                f"Delete “{title}” ({conv.messages} messages)? It goes to the trash: u in this"
                f" list brings it back, or `r1chat history restore {cid}` within {TRASH_DAYS}"
                " days."
            ),
            done,
        )

    def undo_delete(self) -> int | None:
        """Bring back the conversation deleted last; its id, or None when there is none."""
        cid, self.last_deleted = self.last_deleted, None
        store = self.store
        if cid is None or store is None:
            self.app.notify("Nothing to bring back.")
            return None
        self._store_call(lambda: store.restore(cid))
        self.reload(self.current)
        self.app.notify("Brought it back from the trash.")
        return cid

    # --- events ---

    @on(Input.Changed, "#sidebar-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.reload(self.current)

    @on(Input.Submitted, "#sidebar-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        focus_now(self.conversations)

    @on(OptionList.OptionSelected, "#sidebar-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id is None:
            return
        cid = int(event.option_id[1:])
        hit = self._hits.get(cid) if self.query_text else None
        store = self.store
        moved = False
        if hit is not None and store is not None:
            # A hit on another branch: show that branch (its newest message becomes the leaf).
            moved = bool(self._store_call(lambda: store.show_branch_of(cid, hit)))
        self.post_message(self.Open(cid, moved))
