"""The history sidebar: a search box over the saved conversations, newest first, where they can
be opened, renamed and deleted.

It is the one part of the TUI that talks to the history store: it reads and edits it itself; the
app hears which conversation to open (`Open`, with `moved` when a search hit on another branch
made that branch the one shown), which one the user wants deleted (`DeleteAsked`: the app knows
whether a reply is running in it) and which was deleted (`Deleted`). Titles and snippets are
user and model text, so they become `Content`, never markup, and are sanitised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from r1chat.errors import R1ChatError
from r1chat.sanitize import sanitize
from r1chat.tui.dialogs import ConfirmScreen, Entered, TextPromptScreen
from r1chat.tui.keys import OrderedKeys, focus_now

if TYPE_CHECKING:
    from r1chat.history import HistoryStore

T = TypeVar("T")
LIST_LIMIT = 500
SEARCH_LIMIT = 100


@dataclass(frozen=True)
class SidebarRow:
    """One conversation as the sidebar shows it; `snippet` is set for search results."""

    conversation_id: int
    title: str
    snippet: str = ""


def option_id(conv_id: int) -> str:
    return f"c{conv_id}"


def row_content(row: SidebarRow) -> Content:
    title = Content(sanitize(row.title).replace("\n", " "))
    if not row.snippet:
        return title
    snippet = sanitize(row.snippet).replace("\n", " ")
    return Content.assemble(title, "\n", (snippet, "dim"))


class ConversationList(OrderedKeys, OptionList):
    """The list itself: Enter opens, r renames, d or Delete deletes the highlighted one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
    ]

    def highlighted_id(self) -> int | None:
        option = self.highlighted_option
        if option is None or option.id is None:
            return None
        return int(option.id[1:])

    def action_rename(self) -> None:
        cid = self.highlighted_id()
        if cid is not None:
            self.post_message(Sidebar.RenameAsked(cid))

    def action_delete(self) -> None:
        cid = self.highlighted_id()
        if cid is not None:
            self.post_message(Sidebar.DeleteAsked(cid))


class SearchBox(OrderedKeys, Input):
    pass


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
        """This conversation is gone from the history."""

    class RenameAsked(Open):
        pass

    class DeleteAsked(Open):
        """The user asked to delete it; `ask_delete` asks them to confirm."""

    def __init__(self, store: HistoryStore | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.current: int | None = None  # the conversation on screen, kept highlighted
        self.search_box = SearchBox(
            placeholder="Search history…", id="sidebar-search", compact=True
        )
        self.conversations = ConversationList(id="sidebar-list", compact=True)
        self._hits: dict[int, int] = {}  # conversation -> the message its search hit is in

    def compose(self) -> ComposeResult:
        yield self.search_box
        yield self.conversations

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    @property
    def query_text(self) -> str:
        return self.search_box.value.strip()

    def set_open(self, open_: bool) -> None:
        self.set_class(open_, "-open")

    def reveal(self, current: int | None, *, search: bool = False) -> None:
        """Open with the conversations (or, `search`, the search box) focused."""
        self.set_open(True)
        self.reload(current)
        focus_now(self.search_box if search else self.conversations)

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
        query = self.query_text
        if not query:
            convs = self._store_call(lambda: store.list_conversations(LIST_LIMIT)) or []
            self.show([SidebarRow(c.id, c.title) for c in convs])
            return
        hits = self._store_call(lambda: store.search(query, SEARCH_LIMIT, mark=("", ""))) or []
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

    def delete_asked(self, cid: int | None) -> None:
        """The user asked to delete this conversation (the one on screen, say)."""
        if (cid := self._saved(cid)) is not None:
            self.post_message(self.DeleteAsked(cid))

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

    def ask_delete(self, cid: int) -> None:
        store = self.store
        conv = self._store_call(lambda: store.get_conversation(cid)) if store else None
        if store is None or conv is None:
            return

        def done(yes: bool | None) -> None:
            if yes and self._store_call(lambda: store.delete(cid)) is None:
                self.post_message(self.Deleted(cid))
                self.reload(None if cid == self.current else self.current)

        title = sanitize(conv.title)
        self.app.push_screen(
            ConfirmScreen(f"Delete “{title}” ({conv.messages} messages)? This cannot be undone."),
            done,
        )

    # --- events ---

    @on(RenameAsked)
    def _rename_asked(self, event: RenameAsked) -> None:
        event.stop()
        self.ask_rename(event.conversation_id)

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
