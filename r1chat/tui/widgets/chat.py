"""The conversation on screen: its turns, and the reply streaming in (r1chat.tui.live).

The conversation itself (what the model is sent, what is saved, alternatives and branches) is a
`Conversation`; this widget shows it and hands each question to a LiveTurn, whose worker thread
runs it. The engine is driven by one thread at a time: a turn starts only once the previous
turn's thread has finished with it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static

from r1chat.conversation import Chats
from r1chat.errors import R1ChatError
from r1chat.reasoning import ReasoningParams
from r1chat.sanitize import sanitize
from r1chat.tui import messages
from r1chat.tui.buffer import TurnBuffer
from r1chat.tui.live import LiveTurn
from r1chat.tui.pacing import FramePacer
from r1chat.tui.widgets.message import TurnView

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.engines.base import Engine
    from r1chat.sampling import SamplingParams

WELCOME = (
    "Ask a question below. The model's thinking streams into a pane beside the answer.\n"
    "Enter sends · Ctrl+J adds a line · Esc stops · F2/F3/F4 presets · F1 help · Ctrl+P commands"
)
# How long quitting waits for a reply's thread to stop and save what came.
STOP_WAIT_S = 5.0


class ChatView(VerticalScroll):
    """The scrolling conversation. The app gives it an engine and the conversations."""

    def __init__(
        self,
        settings: Settings,
        chats: Chats,
        *,
        clock: Callable[[], float] = time.monotonic,
        drain_hz: float = 20.0,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.settings = settings
        self.engine: Engine | None = None
        self.chats = chats
        chats.on_save_error = self._save_failed
        self.conversation = chats.new()
        self.live: LiveTurn | None = None
        self._clock = clock
        self._drain_hz = drain_hz
        self._drain_timer: Timer | None = None
        self.pacer = FramePacer(1 / drain_hz)
        # Runs once the turn being stopped has finished (new chat, open another conversation).
        self._after_turn: Callable[[], Awaitable[None]] | None = None
        self.editing: int | None = None  # the turn whose question is being edited (Ctrl+↑)

    def compose(self) -> ComposeResult:
        yield Static(Content(WELCOME), id="welcome", markup=False)

    def on_mount(self) -> None:
        # No callback: the timer posts events to this widget's queue, so a drain never runs in
        # the middle of a message handler (a turn finishing, say).
        self._drain_timer = self.set_interval(1 / self._drain_hz, name="drain", pause=True)

    @property
    def busy(self) -> bool:
        return self.live is not None

    @property
    def stopping(self) -> bool:
        return self.live is not None and self.live.cancel.is_set()

    # --- a turn ---

    async def ask(
        self,
        question: str,
        params: SamplingParams,
        reasoning: ReasoningParams | None = None,
        samples: int = 1,
        attachments: list[dict[str, Any]] | None = None,
    ) -> None:
        """Start the reply to `question` (the caller checked that the engine is free); while a
        question is edited, the conversation forks there. `samples` > 1: that many replies at
        once, and a vote over their answers."""
        if self.editing is not None:
            index, self.editing = self.editing, None
            self.conversation.fork_at(index)
            for view in list(self.query(TurnView))[index:]:
                await view.remove()
        await self._start(question, params, reasoning, samples, attachments)

    async def regenerate(
        self, params: SamplingParams, reasoning: ReasoningParams | None = None
    ) -> bool:
        """Sample the last reply again; the earlier ones stay as alternatives of that turn.
        False (and says why) when there is nothing to sample again, or a reply runs."""
        views = self.query(TurnView)
        if self.live is not None:
            self.notify("Wait for the reply to finish (or Esc) first.")
            return False
        if not views or not self.conversation.exchanges:
            self.notify("There is no reply to sample again yet.")
            return False
        question = self.conversation.redo_last()
        await views.last().remove()
        await self._start(question, params, reasoning)
        return True

    async def _start(
        self,
        question: str,
        params: SamplingParams,
        reasoning: ReasoningParams | None,
        samples: int = 1,
        attachments: list[dict[str, Any]] | None = None,
    ) -> None:
        assert self.engine is not None and self.live is None
        await self.query("#welcome").remove()
        folded = samples > 1 or self.settings.thinking == "folded"
        view = TurnView(
            question, folded=folded, thinks=self.engine.info.thinks, attachments=attachments
        )
        await self.mount(view)  # composed before the first drain reaches it
        self.anchor()
        live = LiveTurn(
            view,
            question,
            TurnBuffer(self._clock),
            self._clock(),
            k=samples,
            reasoning=reasoning or ReasoningParams(),
            attachments=attachments,
            auto_fold=self.settings.thinking == "auto",
        )
        if samples > 1:
            view.set_title(f"{samples} samples thinking…")
        self.live = live
        engine, conversation, ctx = self.engine, self.conversation, self.settings.ctx
        self.run_worker(
            lambda: live.work(self.post_message, engine, conversation, params, ctx),
            thread=True,
            group="generate",
        )
        self.pacer.reset()
        assert self._drain_timer is not None
        self._drain_timer.resume()

    def answer_now(self) -> bool:
        """End the thinking of the reply running. False (and says so) when nothing thinks."""
        if self.live is not None and self.live.answer_now():
            return True
        self.notify("Nothing is thinking right now.")
        return False

    def stop(self) -> None:
        """Stop the reply at the next token; what came is kept (and saved)."""
        if self.live is not None:
            self.live.cancel.set()

    async def when_idle(self, then: Callable[[], Awaitable[None]]) -> None:
        """Run `then` now, or stop the reply and run it once the reply is saved."""
        if self.live is not None:
            self.live.cancel.set()
            self._after_turn = then
            return
        await then()

    def abandon(self) -> None:
        """The app is closing: stop the reply and wait (briefly) until its thread has saved it."""
        live = self.live
        if live is not None:
            live.cancel.set()
            live.thread_done.wait(STOP_WAIT_S)

    # --- the turn's life, from its worker ---

    def on_thinking_over(self, event: messages.ThinkingOver) -> None:
        if self.live is not None:
            self.live.thinking_ended = event.ended

    def on_thinking_loops(self, event: messages.ThinkingLoops) -> None:
        if self.live is not None:
            self.live.view.show_note("The thinking repeats itself (on_loop = warn).", above=True)

    def on_older_turns_left_out(self, event: messages.OlderTurnsLeftOut) -> None:
        if self.live is not None:
            self.live.view.show_note(event.note, above=True)

    def on_question_asked(self, event: messages.QuestionAsked) -> None:
        if self.live is not None:
            self.live.prompt_tokens = event.prompt_tokens

    async def on_turn_finished(self, event: messages.TurnFinished) -> None:
        live = self.live
        if live is not None:
            chunk = live.buffer.take()
            await live.absorb(chunk, self._clock())
            live.finish(chunk, event.result, self._clock())
            self._label_alternatives(live.view)
            self._label_versions()
            await self._end(live)

    async def on_samples_finished(self, event: messages.SamplesFinished) -> None:
        live = self.live
        if live is not None:
            await live.finish_samples(event.samples)
            self._label_alternatives(live.view)
            await self._end(live)

    async def on_turn_failed(self, event: messages.TurnFailed) -> None:
        live = self.live
        if live is not None:
            chunk = live.buffer.take()
            await live.absorb(chunk, self._clock())
            live.fail(chunk, event.error, self._clock())
            await self._end(live)

    async def _end(self, live: LiveTurn) -> None:
        # The thread posts its last message just before it ends; wait for it, so the next turn
        # never drives the engine while this one's thread still holds it.
        live.thread_done.wait(STOP_WAIT_S)
        self.live = None
        if self._drain_timer is not None:
            self._drain_timer.pause()
        if self._after_turn is not None:
            then, self._after_turn = self._after_turn, None
            await then()

    async def on_timer(self, event: events.Timer) -> None:
        live = self.live
        if event.timer is not self._drain_timer or live is None:
            return
        if live.meter is not None or self.pacer.ready():
            meter = await live.absorb(live.buffer.take(), self._clock())
            if meter is not None:
                self.post_message(meter)

    # --- the conversation shown ---

    def _save_failed(self, error: R1ChatError) -> None:
        self.post_message(messages.HistoryFailed(error))  # from the worker thread

    def _label_versions(self) -> None:
        """An edited question (a fork) shows which of its versions it is."""
        versions = self.conversation.versions()
        for view, shown in zip(self.query(TurnView), versions, strict=False):
            if shown is not None:
                view.set_versions(*shown)

    def _label_alternatives(self, view: TurnView) -> None:
        c = self.conversation
        view.set_alternatives(c.shown_alternative + 1, len(c.alternatives))

    async def clear(self) -> None:
        """A new, empty conversation."""
        self.conversation = self.chats.new()
        await self.query(TurnView).remove()

    async def show_saved(self, cid: int) -> int:
        """Show a saved conversation (thinking folded) and continue it; returns the context
        its last turn used. R1ChatError when it cannot be read."""
        self.conversation = self.chats.open(cid)
        return await self.redraw()

    async def redraw(self) -> int:
        """Show the conversation's branch anew; the context its last turn used."""
        exchanges = self.conversation.view()
        await self.query("TurnView, #welcome").remove()
        views = [TurnView(e.question, folded=True, attachments=e.attachments) for e in exchanges]
        await self.mount_all(views)
        for view, e in zip(views, exchanges, strict=True):
            await view.show_reply(e.reply)
            if e.versions is not None:
                view.set_versions(*e.versions)
        if views:
            self._label_alternatives(views[-1])
        self.scroll_end(animate=False)
        self.anchor()
        last = exchanges[-1].reply.stats if exchanges and exchanges[-1].reply else {}
        used = [last.get("prompt_tokens", 0), last.get("completion_tokens", 0)]
        return sum(n for n in used if isinstance(n, int))

    async def switch_branch(self, step: int) -> tuple[int, int] | None:
        """Show another version of the latest edited question; (shown, of), or None."""
        if self.live is not None:
            return None
        try:
            shown = self.conversation.switch_branch(step)
            if shown is not None:
                await self.redraw()
        except R1ChatError as e:
            self.notify(f"History: {sanitize(str(e))}", severity="error", markup=False)
            return None
        if shown is None:
            self.notify("No question here was edited: Ctrl+↑ edits one.")
        else:
            self.notify(f"Branch {shown[0]} of {shown[1]}.")
        return shown

    async def switch_alternative(self, step: int) -> bool:
        """Show the previous (-1) or next (+1) reply of the last question and go on from it."""
        views = self.query(TurnView)
        if self.live is not None or not views:
            return False
        reply = self.conversation.switch_alternative(step)
        if reply is None:
            self.notify("The last question has one reply: Ctrl+R samples another.")
            return False
        last = views.last()
        await last.remove()
        view = TurnView(last.question, folded=True, attachments=last.attachments)
        await self.mount(view)
        await view.show_reply(reply)
        self._label_alternatives(view)
        self.scroll_end(animate=False)
        return True

    def begin_edit(self) -> str | None:
        """Pick the question to edit: the last one, then each earlier one on the next call.
        Returns its text, or None when there is none (or a reply runs)."""
        views = list(self.query(TurnView))
        n = min(len(views), len(self.conversation.exchanges))
        if self.live is not None or n == 0:
            self.notify("No question to edit (or a reply is running).")
            return None
        index = n - 1 if self.editing is None else max(self.editing - 1, 0)
        self.cancel_edit()
        self.editing = index
        views[index].add_class("-editing")
        views[index].scroll_visible(animate=False)
        return self.conversation.exchanges[index][0]

    def cancel_edit(self) -> None:
        for view in self.query(".-editing"):
            view.remove_class("-editing")
        self.editing = None

    # --- what the app's actions need ---

    def target_turn(self, focused: object) -> TurnView | None:
        """The turn holding `focused`, or else the last one."""
        node = focused
        while node is not None:
            if isinstance(node, TurnView):
                return node
            node = getattr(node, "parent", None)
        views = self.query(TurnView)
        return views.last() if views else None

    def last_answer(self) -> str | None:
        views = self.query(TurnView)
        return views.last().answer if views else None

    def last_thinking(self) -> str | None:
        """The thinking of the focused turn, else of the last one."""
        view = self.target_turn(self.app.focused)
        return view.thinking if view is not None else None
