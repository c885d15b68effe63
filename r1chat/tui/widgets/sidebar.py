"""The history sidebar: a search box over a list of conversations, newest first.

It knows nothing of the store: the app hands it rows (`show`) and answers its messages (open,
rename, delete, search). Titles and snippets are user and model text, so they become `Content`,
never markup, and are sanitised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from r1chat.sanitize import sanitize


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


class ConversationList(OptionList):
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
            self.post_message(Sidebar.Rename(cid))

    def action_delete(self) -> None:
        cid = self.highlighted_id()
        if cid is not None:
            self.post_message(Sidebar.Delete(cid))


class Sidebar(Vertical):
    """Docked at the left; hidden until toggled (`-open`, see r1chat.tcss)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", show=False),
    ]

    class Open(Message):
        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class Rename(Open):
        pass

    class Delete(Open):
        pass

    class Search(Message):
        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    class Closed(Message):
        pass

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search history…", id="sidebar-search", compact=True)
        yield ConversationList(id="sidebar-list", compact=True)

    @property
    def search_box(self) -> Input:
        return self.query_one("#sidebar-search", Input)

    @property
    def list(self) -> ConversationList:
        return self.query_one(ConversationList)

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    @property
    def query_text(self) -> str:
        return self.search_box.value.strip()

    def set_open(self, open_: bool) -> None:
        self.set_class(open_, "-open")

    def show(self, rows: list[SidebarRow], current: int | None = None,
             empty: str = "No conversations yet") -> None:
        """Replace the list; keep the current conversation highlighted when it is there."""
        lst = self.list
        lst.clear_options()
        if not rows:
            lst.add_option(Option(Content(empty), disabled=True))
            return
        lst.add_options(Option(row_content(r), id=option_id(r.conversation_id)) for r in rows)
        ids = [r.conversation_id for r in rows]
        lst.highlighted = ids.index(current) if current in ids else 0

    @property
    def ids(self) -> list[int]:
        lst = self.list
        return [int(o.id[1:]) for o in (lst.get_option_at_index(i)
                                         for i in range(lst.option_count)) if o.id]

    @on(Input.Changed, "#sidebar-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Search(event.value.strip()))

    @on(Input.Submitted, "#sidebar-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.list.focus()

    @on(OptionList.OptionSelected, "#sidebar-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id is not None:
            self.post_message(self.Open(int(event.option_id[1:])))

    def action_close(self) -> None:
        self.set_open(False)
        self.post_message(self.Closed())
