"""The conversation on screen: its turns, the reply streaming in, and the conversation behind it.

Data path: `ask(question)` → a thread worker runs `Conversation.ask` (which saves the question
and the reply) and pushes its Deltas into a TurnBuffer → timer events, paced by a FramePacer,
drain the buffer into the turn's TurnView → the worker posts TurnStarted, then TurnFinished or
TurnFailed, which this widget handles first and then bubble up to the app.

The engine is driven by one thread at a time: a turn starts only once the previous turn's thread
has finished with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static

from r1chat.conversation import Conversation
from r1chat.endings import finish_note
from r1chat.engine import Stats
from r1chat.errors import R1ChatError
from r1chat.reasoning import ReasoningParams, ThinkingControl, extract_boxed
from r1chat.sanitize import sanitize
from r1chat.tui import messages
from r1chat.tui.buffer import Chunk, TurnBuffer
from r1chat.tui.pacing import FramePacer
from r1chat.tui.text import saved_thinking_title, thinking_title
from r1chat.tui.widgets.message import TurnView
from r1chat.turn import (
    ContextTrimmed,
    Delta,
    LoopNoticed,
    ThinkingEnded,
    TurnDone,
    TurnResult,
    TurnStarted,
)

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.engine import Engine
    from r1chat.history import HistoryStore, Message
    from r1chat.samples import SampleMeter
    from r1chat.sampling import SamplingParams

WELCOME = (
    "Ask a question below. The model's thinking streams into a pane beside the answer.\n"
    "Enter sends · Ctrl+J adds a line · Esc stops · F2/F3/F4 presets · F1 help · Ctrl+P commands"
)
# A new pane title changes the title's width, which costs a layout pass: a few a second do.
TITLE_INTERVAL_S = 0.25
# How long quitting waits for a reply's thread to stop and save what came.
STOP_WAIT_S = 5.0


@dataclass
class Generation:
    """The turn being generated: where its text goes and how to stop it."""

    view: TurnView
    question: str
    buffer: TurnBuffer
    started_at: float
    cancel: threading.Event = field(default_factory=threading.Event)
    thread_done: threading.Event = field(default_factory=threading.Event)
    control: ThinkingControl = field(default_factory=lambda: ThinkingControl(ReasoningParams()))
    prompt_tokens: int | None = None
    answer_started: bool = False
    thinking_ended: ThinkingEnded | None = None
    title_at: float = 0.0  # perf_counter of the last title update
    meter: SampleMeter | None = None  # samples decoded together: their live figures
    attachments: list[dict[str, object]] | None = None  # files in the question: name, size


class ChatView(VerticalScroll):
    """The scrolling conversation. The app gives it an engine and a store; it does the rest."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        drain_hz: float = 20.0,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.settings = settings
        self.engine: Engine | None = None
        self.store: HistoryStore | None = None
        self.conversation = Conversation()
        self.generation: Generation | None = None
        self._clock = clock
        self._drain_hz = drain_hz
        self._drain_timer: Timer | None = None
        self.pacer = FramePacer(1 / drain_hz)
        # Runs once the turn being stopped has finished (new chat, open another conversation).
        self._after_turn: Callable[[], Awaitable[None]] | None = None
        # The replies sampled for the last question (Ctrl+R), and which one is shown.
        self.alternatives: list[Message] = []
        self.shown_alternative = 0
        self.editing: int | None = None  # the turn whose question is being edited (Ctrl+↑)

    def compose(self) -> ComposeResult:
        yield Static(Content(WELCOME), id="welcome", markup=False)

    def on_mount(self) -> None:
        # No callback: the timer posts events to this widget's queue, so a drain never runs in
        # the middle of a message handler (a turn finishing, say).
        self._drain_timer = self.set_interval(1 / self._drain_hz, name="drain", pause=True)

    @property
    def busy(self) -> bool:
        return self.generation is not None

    @property
    def stopping(self) -> bool:
        return self.generation is not None and self.generation.cancel.is_set()

    # --- a turn ---

    async def ask(
        self,
        question: str,
        params: SamplingParams,
        reasoning: ReasoningParams | None = None,
        samples: int = 1,
        attachments: list[dict[str, object]] | None = None,
    ) -> None:
        """Start the reply to `question` (the caller checked that the engine is free); while a
        question is edited, the conversation forks there. `samples` > 1: that many replies at
        once, and a vote over their answers."""
        self.alternatives = []
        if self.editing is not None:
            index, self.editing = self.editing, None
            self.conversation.fork_at(index)
            for view in list(self.query(TurnView))[index:]:
                await view.remove()
        if samples > 1:
            await self._start_samples(question, params, samples, attachments)
        else:
            await self._start(question, params, reasoning, attachments)

    async def _start_samples(
        self,
        question: str,
        params: SamplingParams,
        k: int,
        attachments: list[dict[str, object]] | None = None,
    ) -> None:
        from r1chat.samples import SampleMeter

        view = await self._mount_turn(question, folded=True)
        gen = Generation(view, question, TurnBuffer(self._clock), self._clock())
        gen.meter = SampleMeter(k)
        gen.attachments = attachments
        view.set_title(f"{k} samples thinking…")
        self.generation = gen
        assert self.engine is not None
        self._generate_samples(self.engine, self.conversation, gen, params, k)
        self._drain()

    @work(thread=True, group="generate")
    def _generate_samples(
        self,
        engine: Engine,
        conversation: Conversation,
        gen: Generation,
        params: SamplingParams,
        k: int,
    ) -> None:
        from r1chat.prompts import ChatMessage
        from r1chat.samples import ask_many

        assert gen.meter is not None
        try:
            messages_ = [*conversation.history(), ChatMessage("user", gen.question)]
            result = ask_many(
                engine, messages_, params, k, cancel=gen.cancel, on_progress=gen.meter.progress
            )
            self.post_message(messages.SamplesFinished(result))
        except BaseException as e:  # shown in the turn; the app goes on
            self.post_message(messages.TurnFailed(e))
        finally:
            gen.thread_done.set()

    async def on_samples_finished(self, event: messages.SamplesFinished) -> None:
        gen = self.generation
        if gen is None:
            return
        event.stop()
        result, view = event.result, gen.view
        chosen = result.chosen()
        view.show_meter("")
        stopped = "cancelled" in (s.finish_reason for s in result.samples)
        await view.show_saved(
            sanitize(chosen.thinking),
            sanitize(chosen.answer),
            f"Sample {chosen.index + 1} of {len(result.samples)}: its thinking · "
            f"{chosen.thinking_tokens:,} tokens",
        )
        view.show_note(sanitize(result.agreement()) + (" (stopped)" if stopped else ""))
        if result.vote.answer is not None:
            view.show_boxed(sanitize(result.vote.answer))
        await view.show_samples(
            [
                (
                    f"sample {s.index + 1}: {sanitize(s.boxed or 'no answer')} · "
                    f"{s.thinking_tokens:,} thinking tokens · {s.finish_reason}",
                    sanitize(s.thinking),
                    sanitize(s.answer),
                )
                for s in result.samples
            ]
        )
        model = self.engine.info.name if self.engine else ""
        self.conversation.save_samples(
            gen.question,
            model,
            result.replies(),
            chosen.index,
            gen.attachments,  # type: ignore[arg-type]
        )
        await self._end(gen)
        stats = Stats(
            completion_tokens=result.stats.completion_tokens,
            ttft_s=result.stats.ttft_s,
            decode_tok_s=result.stats.decode_tok_s,
            total_s=result.stats.total_s,
            prompt_tokens=result.stats.prompt_tokens,
            finish_reason="cancelled" if stopped else "stop",
        )
        done = TurnResult(gen.question, chosen.thinking, chosen.answer, stats)
        self.post_message(messages.TurnFinished(done))

    def begin_edit(self) -> str | None:
        """Pick the question to edit: the last one, then each earlier one on the next call.
        Returns its text, or None when there is none (or a reply runs)."""
        views = list(self.query(TurnView))
        n = min(len(views), len(self.conversation.exchanges))
        if self.generation is not None or n == 0:
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

    async def switch_branch(self, step: int) -> tuple[int, int] | None:
        """Show another version of the latest edited question on the branch shown, with what
        followed it; returns (shown, of), or None when no question was edited."""
        store, cid = self.store, self.conversation.id
        if self.generation is not None or store is None or cid is None:
            return None
        index, leaves = store.question_versions(cid)
        if not leaves:
            return None
        index = (index + step) % len(leaves)
        store.set_leaf(cid, leaves[index])
        await self.show_saved(cid)
        return index + 1, len(leaves)

    async def regenerate(
        self, params: SamplingParams, reasoning: ReasoningParams | None = None
    ) -> bool:
        """Sample the last reply again; the earlier ones stay as alternatives of that turn.
        False when there is nothing to sample again (or a reply runs)."""
        views = self.query(TurnView)
        if self.generation is not None or self.engine is None or not views:
            return False
        if not self.conversation.exchanges:
            return False
        if not self.alternatives:
            self.alternatives = self._saved_alternatives() or [
                self._reply(self.conversation.exchanges[-1][1], views.last().thinking)
            ]
        question = self.conversation.redo_last()
        await views.last().remove()
        await self._start(question, params, reasoning)
        return True

    async def switch_alternative(self, step: int) -> bool:
        """Show the previous (-1) or next (+1) reply of the last question and go on from it."""
        views = self.query(TurnView)
        n = len(self.alternatives)
        if self.generation is not None or n < 2 or not views:
            return False
        index = (self.shown_alternative + step) % n
        reply = self.alternatives[index]
        question = views.last().question
        await views.last().remove()
        view = TurnView(question, folded=True)
        await self.mount(view)
        await self._fill_saved(view, reply)
        self.shown_alternative = index
        view.set_alternatives(index + 1, n)
        self.conversation.choose_reply(reply.content, reply.id if reply.id > 0 else None)
        self.scroll_end(animate=False)
        return True

    def _saved_alternatives(self) -> list[Message]:
        """Every saved reply to the last question, oldest first (a conversation reopened)."""
        store, cid = self.store, self.conversation.id
        if store is None or cid is None or self.conversation.store is None:
            return []
        try:
            pairs = store.exchanges(cid)
            if not pairs:
                return []
            qid, shown = pairs[-1][0].id, pairs[-1][1]
            replies = [
                m
                for m in store.messages(cid, all_branches=True)
                if m.role == "assistant" and m.parent_id == qid
            ]
        except R1ChatError:
            return []
        if shown is not None and shown in replies:
            self.shown_alternative = replies.index(shown)
        return replies

    def _reply(self, answer: str, thinking: str, result: TurnResult | None = None) -> Message:
        """The last reply as an alternative, shaped as the history keeps one (its id: the
        saved reply's, -1 when nothing is saved)."""
        from r1chat.history import Message, now

        return Message(
            id=self.conversation.reply_id or -1,
            conversation_id=self.conversation.id or -1,
            role="assistant",
            content=answer,
            thinking=thinking,
            stats=result.stats.to_dict() if result else None,
            finish_reason=result.finish_reason if result else "stop",
            created=now(),
            thinking_ended=result.thinking_ended if result else None,
        )

    async def _start(
        self,
        question: str,
        params: SamplingParams,
        reasoning: ReasoningParams | None,
        attachments: list[dict[str, object]] | None = None,
    ) -> None:
        view = await self._mount_turn(question, folded=self.settings.thinking == "folded")
        gen = Generation(
            view,
            question,
            TurnBuffer(self._clock),
            self._clock(),
            control=ThinkingControl(reasoning or ReasoningParams()),
            attachments=attachments,
        )
        self.generation = gen
        assert self.engine is not None
        self._generate(self.engine, self.conversation, gen, params)
        self._drain()

    async def _mount_turn(self, question: str, *, folded: bool) -> TurnView:
        """A new turn at the end of the conversation (the caller checked the engine is free)."""
        assert self.engine is not None and self.generation is None
        await self.query("#welcome").remove()
        view = TurnView(question, folded=folded, thinks=self.engine.info.thinks)
        await self.mount(view)  # composed before the first drain reaches it
        self.anchor()
        return view

    def _drain(self) -> None:
        """Start the timer that moves what the worker made onto the screen."""
        self.pacer.reset()
        assert self._drain_timer is not None
        self._drain_timer.resume()

    def answer_now(self) -> bool:
        """End the thinking of the reply running: the answer follows. False when there is
        no thinking to end."""
        gen = self.generation
        if gen is None or gen.answer_started or gen.thinking_ended is not None:
            return False
        gen.control.answer_now()
        return True

    def stop(self) -> None:
        """Stop the reply at the next token; what came is kept (and saved)."""
        if self.generation is not None:
            self.generation.cancel.set()

    async def when_idle(self, then: Callable[[], Awaitable[None]]) -> None:
        """Run `then` now, or stop the reply and run it once the reply is saved."""
        if self.generation is not None:
            self.generation.cancel.set()
            self._after_turn = then
            return
        await then()

    def abandon(self) -> None:
        """The app is closing: stop the reply and wait (briefly) until its thread has saved it."""
        gen = self.generation
        if gen is not None:
            gen.cancel.set()
            gen.thread_done.wait(STOP_WAIT_S)

    @work(thread=True, group="generate")
    def _generate(
        self, engine: Engine, conversation: Conversation, gen: Generation, params: SamplingParams
    ) -> None:
        result: TurnResult | None = None
        try:
            for ev in conversation.ask(
                engine, gen.question, params, gen.cancel, gen.control, gen.attachments
            ):
                if isinstance(ev, Delta):
                    gen.buffer.push(ev)
                elif isinstance(ev, ThinkingEnded):
                    self.post_message(messages.ThinkingOver(ev))
                elif isinstance(ev, LoopNoticed):
                    self.post_message(messages.ThinkingLoops())
                elif isinstance(ev, TurnStarted):
                    self.post_message(messages.TurnStarted(ev.prompt_tokens, conversation.id))
                elif isinstance(ev, TurnDone):
                    result = ev.result
                elif isinstance(ev, ContextTrimmed):
                    self.post_message(messages.ContextTrimmed(ev.note))
            gen.buffer.close()
            assert result is not None
            self.post_message(messages.TurnFinished(result))
        except BaseException as e:  # shown in the turn; the app goes on
            gen.buffer.close()
            self.post_message(messages.TurnFailed(e))
        finally:
            gen.thread_done.set()

    def on_thinking_over(self, event: messages.ThinkingOver) -> None:
        if self.generation is not None:
            self.generation.thinking_ended = event.ended

    def on_thinking_loops(self, event: messages.ThinkingLoops) -> None:
        if self.generation is not None:
            self.generation.view.show_note(
                "The thinking repeats itself (on_loop = warn).", above=True
            )

    def on_context_trimmed(self, event: messages.ContextTrimmed) -> None:
        if self.generation is not None:
            self.generation.view.show_note(event.note, above=True)

    def on_turn_started(self, event: messages.TurnStarted) -> None:
        if self.generation is not None:
            self.generation.prompt_tokens = event.prompt_tokens

    async def on_turn_finished(self, event: messages.TurnFinished) -> None:
        gen = self.generation
        if gen is None:
            return
        chunk = gen.buffer.take()
        await self._absorb(gen, chunk)
        self._record(gen, chunk, event.result)
        await self._end(gen)

    async def on_turn_failed(self, event: messages.TurnFailed) -> None:
        gen = self.generation
        if gen is None:
            return
        chunk = gen.buffer.take()
        await self._absorb(gen, chunk)
        error = event.error
        what = (
            str(error) if isinstance(error, R1ChatError) else (f"{type(error).__name__}: {error}")
        )
        gen.view.end_stream()
        gen.view.show_note(f"Error: {sanitize(what)}", error=True)
        gen.view.set_title(self._title(gen, chunk, self._clock(), stopped=True))
        await self._end(gen)

    async def _end(self, gen: Generation) -> None:
        # The thread posts its last message just before it ends; wait for it, so the next turn
        # never drives the engine while this one's thread still holds it.
        gen.thread_done.wait(STOP_WAIT_S)
        self.generation = None
        if self._drain_timer is not None:
            self._drain_timer.pause()
        if self._after_turn is not None:
            then, self._after_turn = self._after_turn, None
            await then()

    # --- streaming into the view ---

    async def on_timer(self, event: events.Timer) -> None:
        gen = self.generation
        if event.timer is not self._drain_timer or gen is None:
            return
        if gen.meter is not None:
            gen.view.show_meter(gen.meter.lines())
            return
        if self.pacer.ready():
            await self._absorb(gen, gen.buffer.take())

    async def _absorb(self, gen: Generation, chunk: Chunk) -> None:
        view = gen.view
        if chunk.think:
            view.append_thinking(chunk.think)
        if chunk.answer:
            if not gen.answer_started:
                gen.answer_started = True
                if self.settings.thinking == "auto" and not view.user_toggled:
                    view.fold(True)
            await view.append_answer(chunk.answer)
        tick = time.perf_counter()
        now = self._clock()
        if tick - gen.title_at >= TITLE_INTERVAL_S:
            gen.title_at = tick
            view.set_title(self._title(gen, chunk, now))
        n = chunk.think_tokens + chunk.answer_tokens
        tok_s = ttft = None
        if chunk.first_at is not None:
            ttft = chunk.first_at - gen.started_at
            if n > 1 and now > chunk.first_at:
                tok_s = (n - 1) / (now - chunk.first_at)
        thinking = not gen.answer_started and gen.thinking_ended is None
        self.post_message(messages.Meter(tok_s, ttft, (gen.prompt_tokens or 0) + n, thinking))

    def _title(self, gen: Generation, chunk: Chunk, now: float, *, stopped: bool = False) -> str:
        ended = gen.thinking_ended
        if ended is None and not gen.answer_started and not stopped:
            budget = gen.control.params.budget
            return thinking_title(
                "thinking", now - gen.started_at, chunk.think_tokens, budget=budget
            )
        think_end = chunk.answer_at if chunk.answer_at is not None else now
        return thinking_title(
            "stopped" if stopped else "done",
            think_end - gen.started_at,
            chunk.think_tokens,
            ended=ended.how if ended else None,
        )

    def _record(self, gen: Generation, chunk: Chunk, result: TurnResult) -> None:
        view = gen.view
        stats = result.stats
        stopped = result.finish_reason == "cancelled"
        view.end_stream()
        chunk.think_tokens = stats.thinking_tokens
        view.set_title(
            self._title(gen, chunk, self._clock(), stopped=stopped and not gen.answer_started)
        )
        if result.boxed:
            view.show_boxed(sanitize(result.boxed))
        note = finish_note(result.finish_reason, stats.completion_tokens, result.thinking_ended)
        if note is not None:
            view.show_note(note)
        if self.alternatives:  # a reply sampled again: one more alternative, shown
            self.alternatives.append(self._reply(result.answer, result.thinking, result))
            self.shown_alternative = len(self.alternatives) - 1
            view.set_alternatives(len(self.alternatives), len(self.alternatives))

    # --- conversations ---

    def _save_failed(self, error: R1ChatError) -> None:
        self.post_message(messages.HistoryFailed(error))  # from the worker thread

    async def clear(self) -> None:
        """A new, empty conversation."""
        self.alternatives = []
        self.conversation = Conversation(self.store, on_save_error=self._save_failed)
        await self.query(TurnView).remove()

    async def show_saved(self, cid: int) -> int:
        """Show a saved conversation (thinking folded) and continue it; returns the context
        its last turn used. R1ChatError when it cannot be read."""
        store = self.store
        assert store is not None
        pairs = store.exchanges(cid)
        conversation = Conversation.resume(store, cid, on_save_error=self._save_failed)
        await self.query("TurnView, #welcome").remove()
        self.conversation = conversation
        self.alternatives = []
        views = [TurnView(q.content, folded=True) for q, _ in pairs]
        await self.mount_all(views)
        for view, (_, reply) in zip(views, pairs, strict=True):
            await self._fill_saved(view, reply)
        if views:
            self.alternatives = self._saved_alternatives()
            views[-1].set_alternatives(self.shown_alternative + 1, len(self.alternatives))
        self.scroll_end(animate=False)
        self.anchor()
        last = pairs[-1][1].stats if pairs and pairs[-1][1] and pairs[-1][1].stats else {}
        return int(last.get("prompt_tokens", 0)) + int(last.get("completion_tokens", 0))

    async def _fill_saved(self, view: TurnView, reply: Message | None) -> None:
        if reply is None:
            await view.show_saved("", "", "")
            view.show_note("No reply was saved.")
            return
        stats = reply.stats or {}
        answer = sanitize(reply.content)
        title = saved_thinking_title(
            reply.stopped and not answer.strip(),
            int(stats.get("thinking_tokens", 0)),
            reply.thinking_ended,
        )
        await view.show_saved(sanitize(reply.thinking), answer, title)
        boxed = extract_boxed(reply.content)
        if boxed:
            view.show_boxed(sanitize(boxed))
        note = finish_note(
            reply.finish_reason, stats.get("completion_tokens"), reply.thinking_ended
        )
        if note is not None:
            view.show_note(note)

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
