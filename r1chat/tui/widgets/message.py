"""One exchange: the question (with its versions and attached files, one line each), the
thinking pane (collapsible) and the Markdown answer."""

from __future__ import annotations

from pathlib import Path

from textual import events
from textual.app import ComposeResult
from textual.containers import Container, Vertical
from textual.content import Content
from textual.geometry import Region
from textual.markup import escape
from textual.strip import Strip
from textual.widgets import Collapsible, Static, TextArea

from r1chat.attachments import split_question
from r1chat.conversation import Reply
from r1chat.endings import finish_note
from r1chat.sanitize import sanitize
from r1chat.tui.text import ended_title
from r1chat.tui.widgets.answer import AnswerView, BlockRenders


class ThinkingText(TextArea):
    """The thinking body: a read-only TextArea, the cheapest widget that wraps (FINDINGS)."""

    def __init__(self) -> None:
        super().__init__(
            "",
            read_only=True,
            soft_wrap=True,
            show_cursor=False,
            highlight_cursor_line=False,
            compact=True,
            classes="thinking-text",
        )
        self._wrapped_for = -1  # the wrap width of the last Resize this widget handled
        self._own_resize = False

    def on_resize(self) -> None:
        # TextArea's own handler has just wrapped the text again at `wrap_width`.
        self._wrapped_for = self.wrap_width
        if self._own_resize:
            self._own_resize = False
            self.refresh(layout=True)  # the height follows the new number of lines

    def render_lines(self, crop: Region) -> list[Strip]:
        # Textual 8.2.8 sometimes gives a widget its new size without a Resize (a scroll and a
        # layout in one refresh: the sidebar opened beside a long reply): the text stayed
        # wrapped for the old width, its line ends cut off. A Resize of our own wraps it again.
        if self.soft_wrap and self.wrap_width > 0 and self.wrap_width != self._wrapped_for:
            self._wrapped_for = self.wrap_width
            self._own_resize = True
            self.post_message(events.Resize(self.size, self.virtual_size, self.container_size))
        return super().render_lines(crop)

    def load_text(self, text: str) -> None:
        super().load_text(text)
        # Textual 8.2.8 keeps drawing the lines it had after load_text on a TextArea that was
        # written to before: the readable math never showed. A refresh draws the new text.
        self.refresh()

    def append(self, text: str) -> None:
        follow = self.scroll_y >= self.max_scroll_y
        self.insert(text, self.document.end, maintain_selection_offset=False)
        if follow:
            self.scroll_end(animate=False, immediate=False)


class ThinkingPane(Collapsible):
    """The collapsible thinking pane; its title is always built from our own strings."""

    user_toggled = False

    def _on_collapsible_title_toggle(self, event: object) -> None:
        # Runs before Collapsible's own handler (which toggles): a fold the user chose outranks
        # the automatic one when the answer starts.
        self.user_toggled = True


class AttachmentLine(Collapsible):
    """A file in the question, as one line (name and size); Enter or a click opens it. Its text
    is put on screen only then: a file may be megabytes."""

    def __init__(self, record: dict[str, object], block: str) -> None:
        name = Path(str(record.get("name", "file"))).name
        tokens, size = record.get("tokens"), record.get("size")
        if isinstance(tokens, int):
            cost = f"{tokens:,} tokens"
        elif isinstance(size, int):
            cost = f"{size:,} bytes"
        else:
            cost = "size unknown"
        super().__init__(
            title=escape(f"📎 {sanitize(name)} · {cost}"), collapsed=True, classes="attachment"
        )
        self.block = block

    def on_collapsible_expanded(self, event: Collapsible.Expanded) -> None:
        event.stop()
        contents = self.query_one(Collapsible.Contents)
        if not contents.children:
            contents.mount(
                TextArea(
                    sanitize(self.block),
                    read_only=True,
                    soft_wrap=True,
                    show_cursor=False,
                    compact=True,
                    classes="attachment-text",
                )
            )

    def on_collapsible_collapsed(self, event: Collapsible.Collapsed) -> None:
        event.stop()


class HeldText(Static):
    """A server's text not known yet to be thinking or answer: its tail, dimmed, under a title
    that says why it waits."""

    # The tail shown: enough to follow it, bounded so that a frame stays cheap and the box
    # short (it shows its last lines, not its first).
    SHOWN = 600

    def __init__(self) -> None:
        super().__init__("", classes="held", markup=False)
        self.text = ""
        self.border_title = Content(
            "thinking or answer? no <think> tag yet: a </think> makes it thinking"
        )

    def add(self, text: str) -> None:
        self.text = (self.text + text)[-self.SHOWN :]
        self.update(Content("\n".join(self.text.splitlines()[-8:])))


class TurnView(Vertical):
    """A question and the model's reply to it, streamed in (or shown from the history).

    The question is kept as the user wrote it and sanitised only where it is drawn.
    """

    def __init__(
        self,
        question: str,
        *,
        folded: bool,
        thinks: bool = True,
        attachments: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(classes="turn")
        self.question = question
        self.attachments = attachments
        self.thinking = ""
        self.answer = ""
        self._folded_at_start = folded
        self._thinks = thinks
        self.set_class(folded, "-folded")
        self.set_class(not thinks, "-no-thinking")

    def compose(self) -> ComposeResult:
        question, blocks = split_question(self.question, self.attachments)
        yield Static(Content(sanitize(question)), classes="question", markup=False)
        versions = Static("", classes="versions", markup=False)
        versions.display = False
        yield versions
        for record, block in zip(self.attachments or [], blocks, strict=False):
            yield AttachmentLine(record, block)
        alternatives = Static("", classes="alternatives", markup=False)
        alternatives.display = False
        yield alternatives
        with Container(classes="turn-body"):
            with ThinkingPane(
                title="Thinking…", collapsed=self._folded_at_start, classes="thinking"
            ) as pane:
                pane.display = self._thinks
                yield ThinkingText()
            yield AnswerView(classes="answer")
        meter = Static("", classes="samples-meter", markup=False)
        meter.display = False
        yield meter

    @property
    def pane(self) -> ThinkingPane:
        return self.query_one(ThinkingPane)

    @property
    def folded(self) -> bool:
        return self.pane.collapsed

    def fold(self, folded: bool) -> None:
        self.pane.collapsed = folded

    @property
    def user_toggled(self) -> bool:
        return self.pane.user_toggled

    def toggle(self) -> None:
        self.pane.user_toggled = True
        self.fold(not self.folded)

    def on_collapsible_collapsed(self, event: Collapsible.Collapsed) -> None:
        event.stop()
        self.add_class("-folded")

    def on_collapsible_expanded(self, event: Collapsible.Expanded) -> None:
        event.stop()
        self.remove_class("-folded")

    def set_alternatives(self, shown: int, count: int) -> None:
        """ "‹ 2/3 ›": the reply shown is the 2nd of 3 sampled for this question."""
        label = self.query_one(".alternatives", Static)
        label.update(Content(f"‹ {shown}/{count} ›  Alt+←/→ switch · Ctrl+R again"))
        label.display = count > 1

    def set_versions(self, shown: int, count: int) -> None:
        """ "‹ 1/2 ›": the question shown is the 1st of 2 versions (it was edited)."""
        label = self.query_one(".versions", Static)
        label.update(Content(f"‹ {shown}/{count} ›  Alt+↑/↓ other versions"))
        label.display = count > 1

    def show_meter(self, text: str) -> None:
        """The live lines of samples decoded together (one per sample)."""
        meter = self.query_one(".samples-meter", Static)
        meter.update(Content(text))
        meter.display = bool(text)

    async def show_samples(self, rows: list[tuple[str, str, str]]) -> None:
        """Each sample's (title, thinking, answer), folded, to open one by one."""
        for title, thinking, answer in rows:
            pane = Collapsible(title=escape(title), collapsed=True, classes="sample")
            await self.mount(pane)
            text = TextArea(
                f"{thinking.strip()}\n\n── answer ──\n{answer.strip()}",
                read_only=True,
                soft_wrap=True,
                show_cursor=False,
                compact=True,
                classes="sample-text",
            )
            await pane.query_one(Collapsible.Contents).mount(text)

    def set_title(self, title: str) -> None:
        self.pane.title = escape(title)

    def append_thinking(self, text: str) -> None:
        self.thinking += text
        if not self.pane.display:  # a model not known to think, thinking: show it
            self.pane.display = True
            self.remove_class("-no-thinking")
        self.query_one(ThinkingText).append(text)

    def show_held(self, text: str) -> None:
        """Text not known yet to be thinking or answer (no `<think>` came before it), shown
        apart and dimmed until it is known: never as answer first and moved later."""
        found = self.query(HeldText)
        box = found.first() if found else None
        if box is None:
            box = HeldText()
            self.mount(box, after=self.query_one(".turn-body"))
        box.add(text)

    async def clear_held(self) -> None:
        await self.query(HeldText).remove()

    async def append_answer(self, text: str) -> None:
        self.answer += text
        await self.query_one(AnswerView).append(text)

    def end_stream(self) -> None:
        self.query_one(AnswerView).finish()
        if not self.thinking.strip():
            self._hide_thinking()
        else:
            self._show_math()

    def _show_math(self) -> None:
        """The finished thinking with its LaTeX readable (the stream shows it as it comes; a
        formula is only whole once it has ended). `self.thinking` stays as written."""
        if BlockRenders.math and ("$" in self.thinking or "\\" in self.thinking):
            # Imported here: its converter takes ~15 ms to build, not worth it at start-up.
            from r1chat.mathtext import readable_math

            shown = readable_math(self.thinking)
            if shown != self.thinking:
                self.query_one(ThinkingText).load_text(shown)

    async def show_saved(self, thinking: str, answer: str, title: str) -> None:
        """Fill the turn at once from the history (already sanitised), not from a stream."""
        self.thinking = thinking
        self.answer = answer
        self.query_one(ThinkingText).load_text(thinking)
        self.set_title(title)
        if not thinking.strip():
            self._hide_thinking()
        else:
            self._show_math()
        await self.query_one(AnswerView).show(answer)

    async def show_reply(self, reply: Reply | None) -> None:
        """Fill the turn with a reply as it was kept (the history's, or an alternative)."""
        if reply is None:
            await self.show_saved("", "", "")
            self.show_note("No reply was saved.")
            return
        answer = sanitize(reply.answer)
        title = ended_title(
            reply.figure("thinking_s"),
            int(reply.figure("thinking_tokens") or 0),
            finish=reply.finish_reason,
            ended=reply.thinking_ended,
            forced=int(reply.figure("forced_tokens") or 0),
        )
        await self.show_saved(sanitize(reply.thinking), answer, title)
        if reply.boxed:
            self.show_boxed(sanitize(reply.boxed))
        completion = reply.figure("completion_tokens")
        note = finish_note(
            reply.finish_reason,
            int(completion) if completion is not None else None,
            reply.thinking_ended,
        )
        if note is not None:
            self.show_note(note)

    def _hide_thinking(self) -> None:
        self.pane.display = False
        self.add_class("-no-thinking")

    def show_boxed(self, boxed: str) -> None:
        box = Static(Content(boxed), classes="boxed", markup=False)
        box.border_title = "answer"
        self.mount(box)

    def show_note(self, text: str, *, error: bool = False, above: bool = False) -> None:
        """A line under the reply (or, `above`, between the question and the reply)."""
        note = Static(Content(text), classes="note -error" if error else "note", markup=False)
        if above:
            self.mount(note, after=self.query_one(".question"))
        else:
            self.mount(note)
