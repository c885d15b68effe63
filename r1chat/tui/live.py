"""A reply being generated in the app: the worker that runs it, the hand-over of its text, and
what its turn shows while it streams and when it ends.

Data path: the worker thread runs `Conversation.ask` (one reply) or `Conversation.ask_samples`
(k replies and a vote), which decide what is sent and save it; Deltas go into a TurnBuffer, the
rest of the turn's life is posted as messages (r1chat.tui.messages) to the ChatView that started
it. The ChatView's timer hands the buffer to `absorb` a few dozen times a second, paced by a
FramePacer; its message handlers call `finish`, `finish_samples` or `fail`. Nothing here decides
what the conversation is: that is Conversation's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

from r1chat.endings import UNDECIDED_NOTE, finish_note
from r1chat.errors import R1ChatError
from r1chat.many import (
    SampleEvent,
    SampleFailed,
    SampleMeter,
    SampleRetrying,
    SampleRun,
    SamplesDone,
    SamplesStarted,
    progress,
)
from r1chat.reasoning import ReasoningParams, ThinkingControl
from r1chat.sanitize import sanitize
from r1chat.tui import messages
from r1chat.tui.buffer import Chunk, TurnBuffer
from r1chat.tui.text import ended_title, thinking_title
from r1chat.turn import (
    ContextTrimmed,
    Delta,
    Held,
    HeldDecided,
    LoopNoticed,
    ThinkingEnded,
    TurnDone,
    TurnResult,
    TurnStarted,
)

if TYPE_CHECKING:
    from r1chat.conversation import Conversation
    from r1chat.engines.base import Engine
    from r1chat.many import EarlyRule, Samples
    from r1chat.sampling import SamplingParams
    from r1chat.tui.widgets.message import TurnView

# A new pane title changes the title's width, which costs a layout pass: a few a second do.
TITLE_INTERVAL_S = 0.25

Post = Callable[[Message], bool]


@dataclass
class LiveTurn:
    """The turn being generated: where its text goes, how to steer and stop it."""

    view: TurnView
    question: str
    buffer: TurnBuffer
    started_at: float
    k: int = 1  # replies sampled at once
    # Samples: stop those still running once the leading answer cannot be overtaken, which
    # leaves the vote as all k would have given it (r1chat.many.SampleRun), for fewer tokens.
    early: EarlyRule = "overtaken"
    reasoning: ReasoningParams = field(default_factory=ReasoningParams)
    attachments: list[dict[str, Any]] | None = None
    auto_fold: bool = True  # fold the thinking when the answer starts (unless the user chose)
    cancel: threading.Event = field(default_factory=threading.Event)
    thread_done: threading.Event = field(default_factory=threading.Event)
    prompt_tokens: int | None = None
    answer_started: bool = False
    thinking_ended: ThinkingEnded | None = None
    title_at: float = 0.0  # perf_counter of the last title update
    meter: SampleMeter | None = None  # samples: their live figures
    control: ThinkingControl | None = None
    samples: SampleRun | None = None

    def __post_init__(self) -> None:
        if self.k > 1:
            self.meter = SampleMeter(self.k)
        else:
            self.control = ThinkingControl(self.reasoning)

    # --- the worker (a thread) ---

    def work(
        self,
        post: Post,
        engine: Engine,
        conversation: Conversation,
        params: SamplingParams,
        ctx_tokens: int | None = None,
    ) -> None:
        """Run the reply to its end, however it ends; then `thread_done` is set."""
        try:
            if self.meter is not None:
                self._samples(post, engine, conversation, params, ctx_tokens)
            else:
                self._one(post, engine, conversation, params)
        except BaseException as e:  # shown in the turn; the app goes on
            self.buffer.close()
            post(messages.TurnFailed(e))
        finally:
            self.thread_done.set()

    def _one(
        self, post: Post, engine: Engine, conversation: Conversation, params: SamplingParams
    ) -> None:
        result: TurnResult | None = None
        for ev in conversation.ask(
            engine, self.question, params, self.cancel, self.control, self.attachments
        ):
            if isinstance(ev, Delta):
                self.buffer.push(ev)
            elif isinstance(ev, Held):
                self.buffer.hold(ev.text)
            elif isinstance(ev, HeldDecided):
                self.buffer.decide()
            elif isinstance(ev, TurnDone):
                result = ev.result
            else:
                self._told(post, ev, conversation)
        self.buffer.close()
        assert result is not None
        post(messages.TurnFinished(result))

    def _samples(
        self,
        post: Post,
        engine: Engine,
        conversation: Conversation,
        params: SamplingParams,
        ctx_tokens: int | None,
    ) -> None:
        assert self.meter is not None
        meter = self.meter

        def keep(run: SampleRun) -> None:
            run.early = self.early
            self.samples = run

        for ev in conversation.ask_samples(
            engine,
            self.question,
            params,
            self.k,
            cancel=self.cancel,
            reasoning=self.reasoning,
            attachments=self.attachments,
            ctx_tokens=ctx_tokens,
            run=keep,
        ):
            if isinstance(ev, SampleEvent):
                progress(ev, meter.progress)
                if isinstance(ev.event, ThinkingEnded) and ev.event.how != "model":
                    meter.ended[ev.index] = ev.event.how
            elif isinstance(ev, SamplesDone):
                post(messages.SamplesFinished(ev.samples))
            elif isinstance(ev, SamplesStarted):
                post(messages.QuestionAsked(ev.prompt_tokens, conversation.id))
            elif isinstance(ev, SampleFailed):
                meter.failed[ev.index] = ev.message
            elif isinstance(ev, SampleRetrying):
                meter.retrying(ev.index, ev.why)
            else:
                post(messages.OlderTurnsLeftOut(ev.note))

    def _told(self, post: Post, ev: object, conversation: Conversation) -> None:
        if isinstance(ev, ThinkingEnded):
            post(messages.ThinkingOver(ev))
        elif isinstance(ev, LoopNoticed):
            post(messages.ThinkingLoops())
        elif isinstance(ev, TurnStarted):
            post(messages.QuestionAsked(ev.prompt_tokens, conversation.id))
        elif isinstance(ev, ContextTrimmed):
            post(messages.OlderTurnsLeftOut(ev.note))

    # --- steering (the UI thread) ---

    def answer_now(self) -> bool:
        """End the thinking now: the answer follows. False when nothing is thinking."""
        if self.samples is not None:
            self.samples.answer_now()
            return True
        if self.control is None or self.answer_started or self.thinking_ended is not None:
            return False
        self.control.answer_now()
        return True

    # --- the view (the UI thread) ---

    async def absorb(self, chunk: Chunk, now: float) -> messages.Meter | None:
        """Show what came since the last frame; the status line's figures."""
        view = self.view
        if self.meter is not None:
            view.show_meter(self.meter.lines())
            return None
        if chunk.held:
            view.show_held(chunk.held)
        if chunk.decided:
            await view.clear_held()
        if chunk.think:
            view.append_thinking(chunk.think)
        if chunk.answer:
            if not self.answer_started:
                self.answer_started = True
                if self.auto_fold and not view.user_toggled:
                    view.fold(True)
            await view.append_answer(chunk.answer)
        tick = time.perf_counter()
        if tick - self.title_at >= TITLE_INTERVAL_S:
            self.title_at = tick
            view.set_title(self.title(chunk, now))
        n = chunk.think_tokens + chunk.answer_tokens
        tok_s = ttft = None
        if chunk.first_at is not None:
            ttft = chunk.first_at - self.started_at
            if n > 1 and now > chunk.first_at:
                tok_s = (n - 1) / (now - chunk.first_at)
        thinking = not self.answer_started and self.thinking_ended is None
        return messages.Meter(tok_s, ttft, (self.prompt_tokens or 0) + n, thinking)

    def title(self, chunk: Chunk, now: float) -> str:
        """While it streams: live until the thinking ends, then how long it took."""
        ended = self.thinking_ended
        if ended is None and not self.answer_started:
            return thinking_title(
                now - self.started_at, chunk.think_tokens, budget=self.reasoning.budget
            )
        think_end = chunk.answer_at if chunk.answer_at is not None else now
        return ended_title(
            think_end - self.started_at,
            chunk.think_tokens,
            ended=ended.how if ended else "model",
            forced=chunk.forced_tokens,
        )

    def finish(self, chunk: Chunk, result: TurnResult, now: float) -> None:
        """The reply ended (finished, stopped or cut off): its final title, box and note."""
        view = self.view
        stats = result.stats
        view.end_stream()
        think_end = chunk.answer_at if chunk.answer_at is not None else now
        view.set_title(
            ended_title(
                think_end - self.started_at,
                stats.thinking_tokens,
                finish=result.finish_reason,
                ended=result.thinking_ended,
                forced=stats.forced_tokens,
            )
        )
        if result.boxed:
            view.show_boxed(sanitize(result.boxed))
        note = finish_note(result.finish_reason, stats.completion_tokens, result.thinking_ended)
        if note is not None:
            view.show_note(note)
        if stats.undecided:
            view.show_note(UNDECIDED_NOTE[0].upper() + UNDECIDED_NOTE[1:] + ".")

    def fail(self, chunk: Chunk, error: BaseException, now: float) -> None:
        what = str(error) if isinstance(error, R1ChatError) else f"{type(error).__name__}: {error}"
        self.view.end_stream()
        self.view.show_note(f"Error: {sanitize(what)}", error=True)
        ended = self.thinking_ended.how if self.thinking_ended else None
        self.view.set_title(
            ended_title(now - self.started_at, chunk.think_tokens, finish="cancelled", ended=ended)
        )

    async def finish_samples(self, result: Samples) -> None:
        """The samples ended: the chosen one shown, the vote, and each sample to open."""
        view = self.view
        view.show_meter("")
        if not result.samples:
            view.set_title("Stopped before any sample began")
            view.show_note("Stopped: no sample began.")
            return
        chosen = result.chosen()
        await view.show_saved(
            sanitize(chosen.thinking),
            sanitize(chosen.answer),
            f"Sample {chosen.index + 1} of {len(result.samples)}: its thinking · "
            f"{chosen.thinking_tokens:,} tokens",
        )
        view.show_note(sanitize(result.agreement()) + (" (stopped)" if result.stopped else ""))
        if result.boxed is not None:
            view.show_boxed(sanitize(result.boxed))
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
