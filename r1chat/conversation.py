"""A conversation being continued: its earlier exchanges, where it is saved, and the next turn.

`ask` and the TUI both run turns through `Conversation.ask` (one reply) and
`Conversation.ask_samples` (k replies and their vote), the one place that saves: the question
once the engine has accepted it (a question the model never saw is never saved), the replies
when the turn ends, however it ends (finished, stopped, cut off, or abandoned by its reader), so
a crash loses at most the reply in progress. Steering a conversation is decided here too: the
alternatives of the last reply (sampled again), editing an earlier question (a fork) and the
branches that makes.

What is stored is what the user and the model wrote, unsanitised; display code sanitises. So a
conversation continued live and one reloaded from the history send the model the same text.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from r1chat.errors import R1ChatError
from r1chat.history import LEAF, HistoryStore, Message, title_from
from r1chat.many import Sample, SampleRun, Samples, SamplesDone, SamplesEvent, SamplesStarted
from r1chat.prompts import ChatMessage, history_messages
from r1chat.reasoning import ReasoningParams, ThinkingControl, extract_boxed
from r1chat.sampling import SamplingParams
from r1chat.turn import ContextTrimmed, TurnDone, TurnEvent, TurnResult, TurnStarted, run_turn

if TYPE_CHECKING:
    from r1chat.engines.base import Engine

SaveErrorHandler = Callable[[R1ChatError], None]


@dataclass(frozen=True)
class Reply:
    """A reply as the front ends show it, live or from the history (`id`: None when unsaved)."""

    answer: str
    thinking: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = "stop"
    thinking_ended: str | None = None
    id: int | None = None

    @property
    def stopped(self) -> bool:
        return self.finish_reason == "cancelled"

    @property
    def boxed(self) -> str | None:
        return extract_boxed(self.answer)

    def figure(self, key: str) -> float | None:
        """A number from the reply's stats; None when absent or not a number (a hand-made
        history file may hold anything)."""
        value = self.stats.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value if value == value and abs(value) != float("inf") else None

    @classmethod
    def of(cls, result: TurnResult, reply_id: int | None = None) -> Reply:
        return cls(
            result.answer,
            result.thinking,
            result.stats.to_dict(),
            result.finish_reason,
            result.thinking_ended,
            reply_id,
        )

    @classmethod
    def saved(cls, m: Message) -> Reply:
        return cls(m.content, m.thinking, m.stats or {}, m.finish_reason, m.thinking_ended, m.id)


@dataclass(frozen=True)
class Exchange:
    """A question and the reply shown for it (None: never answered); `versions`: (shown, of)
    when the question was edited."""

    question: str
    reply: Reply | None
    attachments: list[dict[str, Any]] | None = None
    versions: tuple[int, int] | None = None


class Conversation:
    """Earlier (question, answer) exchanges and, when `store` is given, where they are saved.

    `on_save_error` hears a failed save and the turn goes on (the TUI shows it); without it the
    error propagates (`ask` exits with it).
    """

    def __init__(
        self,
        store: HistoryStore | None = None,
        conversation_id: int | None = None,
        exchanges: list[tuple[str, str]] | None = None,
        *,
        on_save_error: SaveErrorHandler | None = None,
    ) -> None:
        self.store = store
        self.id = conversation_id
        self.exchanges: list[tuple[str, str]] = list(exchanges or [])
        self.on_save_error = on_save_error
        self._lock = threading.Lock()
        self._question_id: int | None = None  # the question being answered, once saved
        # Exchanges before this one are left out of what the model is sent (too long for its
        # context). It only moves forward, in steps, so that turn after turn share a prefix.
        self.first = 0
        self._again = False  # the next reply is the last one sampled again
        self._retrying: int | None = None  # its saved question
        self._alternative = False  # the reply being saved is another sample of its turn
        self.reply_id: int | None = None  # the last reply saved
        # The next question forks the conversation after this reply (None: at its start).
        self._forking = False
        self._fork_parent: int | None = None
        # The replies of the last question (one, or more once sampled again) and the one shown.
        self.alternatives: list[Reply] = []
        self.shown_alternative = 0

    @classmethod
    def resume(
        cls,
        store: HistoryStore,
        conversation_id: int,
        *,
        on_save_error: SaveErrorHandler | None = None,
    ) -> Conversation:
        """A saved conversation, to be continued (R1ChatError when there is no such one)."""
        chat = cls(
            store, conversation_id, store.turns(conversation_id), on_save_error=on_save_error
        )
        chat._load_alternatives()
        return chat

    @classmethod
    def retry(
        cls,
        store: HistoryStore,
        conversation_id: int,
        *,
        on_save_error: SaveErrorHandler | None = None,
    ) -> tuple[Conversation, str]:
        """The conversation set to sample its last reply again, and the question to ask: the
        new reply joins the earlier ones as an alternative of that turn and becomes the one
        shown (the one the next question builds on)."""
        pairs = store.exchanges(conversation_id)
        if not pairs:
            raise R1ChatError(f"conversation {conversation_id} has no question to retry", 2)
        question = pairs[-1][0]
        earlier = [(q.content, r.content) for q, r in pairs[:-1] if r is not None]
        chat = cls(store, conversation_id, earlier, on_save_error=on_save_error)
        chat._again, chat._retrying = True, question.id
        return chat, question.content

    # --- what is shown ---

    def view(self) -> list[Exchange]:
        """The exchanges of the branch shown, with their replies' thinking and figures, and
        which version each edited question is."""
        if self.store is None or self.id is None:
            return [Exchange(q, Reply(a)) for q, a in self.exchanges]
        versions = self.store.versions_shown(self.id)
        return [
            Exchange(
                q.content,
                Reply.saved(r) if r is not None else None,
                q.attachments,
                versions.get(q.id),
            )
            for q, r in self.store.exchanges(self.id)
        ]

    def versions(self) -> list[tuple[int, int] | None]:
        """For each exchange of the branch shown: (shown, of) when its question was edited."""
        if self.store is None or self.id is None:
            return [None] * len(self.exchanges)
        versions = self.store.versions_shown(self.id)
        return [versions.get(q.id) for q, _ in self.store.exchanges(self.id)]

    def _load_alternatives(self) -> None:
        """Every saved reply to the last question, oldest first, and which one is shown."""
        self.alternatives, self.shown_alternative = [], 0
        if self.store is None or self.id is None:
            return
        pairs = self.store.exchanges(self.id)
        if not pairs:
            return
        qid, shown = pairs[-1][0].id, pairs[-1][1]
        replies = [
            m
            for m in self.store.messages(self.id, all_branches=True)
            if m.role == "assistant" and m.parent_id == qid
        ]
        self.alternatives = [Reply.saved(m) for m in replies]
        if shown is not None and shown in replies:
            self.shown_alternative = replies.index(shown)

    def switch_alternative(self, step: int) -> Reply | None:
        """Show and continue from the previous (-1) or next (+1) reply of the last question;
        None when it has only one."""
        n = len(self.alternatives)
        if n < 2 or not self.exchanges:
            return None
        self.shown_alternative = (self.shown_alternative + step) % n
        reply = self.alternatives[self.shown_alternative]
        self.exchanges[-1] = (self.exchanges[-1][0], reply.answer)
        if reply.id is not None and self.store is not None and self.id is not None:
            self._save(lambda: self._set_leaf(reply.id))  # type: ignore[arg-type]
        return reply

    def switch_branch(self, step: int) -> tuple[int, int] | None:
        """Show another version of the latest edited question on the branch shown, with what
        followed it; returns (shown, of), or None when no question was edited."""
        store, cid = self.store, self.id
        if store is None or cid is None:
            return None
        index, leaves = store.question_versions(cid)
        if not leaves:
            return None
        index = (index + step) % len(leaves)
        store.set_leaf(cid, leaves[index])
        self._reload()
        return index + 1, len(leaves)

    def _reload(self) -> None:
        assert self.store is not None and self.id is not None
        self.exchanges = self.store.turns(self.id)
        self.first = 0
        self._load_alternatives()

    # --- steering ---

    def redo_last(self) -> str:
        """Take back the last exchange so that its reply is sampled again (`ask` it next): the
        new reply joins the earlier ones as an alternative and becomes the one shown."""
        if not self.exchanges:
            raise R1ChatError("there is no reply to sample again yet")
        question, answer = self.exchanges.pop()
        if not self.alternatives:
            self.alternatives = [Reply(answer, id=self.reply_id)]
        qid = self._question_id
        if qid is None and self.store is not None and self.id is not None:
            pairs = self.store.exchanges(self.id)
            qid = pairs[-1][0].id if pairs else None
        self._again, self._retrying = True, qid
        self.first = min(self.first, max(len(self.exchanges) - 1, 0))
        return question

    def fork_at(self, index: int) -> str:
        """Edit the question of exchange `index`: the exchanges from there on leave the
        conversation (they stay saved, on their own branch) and the next question follows the
        reply before it. Returns the question as it was."""
        if not 0 <= index < len(self.exchanges):
            raise R1ChatError("there is no such question to edit")
        parent: int | None = None
        if self.store is not None and self.id is not None:
            pairs = self.store.exchanges(self.id)
            if 0 < index <= len(pairs):
                reply = pairs[index - 1][1]
                parent = reply.id if reply is not None else pairs[index - 1][0].id
        question = self.exchanges[index][0]
        del self.exchanges[index:]
        self.first = min(self.first, max(index - 1, 0))
        self._fork_parent = parent
        self._forking = True
        self._again, self._retrying = False, None
        self.alternatives = []
        return question

    def _set_leaf(self, reply_id: int) -> None:
        assert self.store is not None and self.id is not None
        self.store.set_leaf(self.id, reply_id)

    def history(self) -> list[ChatMessage]:
        """The earlier turns as the model sees them: answers without their thinking."""
        return history_messages(self.exchanges[self.first :])

    def fit(self, engine: Engine, question: str, params: SamplingParams) -> int:
        """Leave out the oldest exchanges when the prompt would not leave the reply room in the
        context; returns how many are left out in all (never the last one: the question
        follows it). A cut goes down to half the room, so the next turns keep the same start
        (and a follow-up reuses the cached prefix) until the room runs out again."""
        n_ctx = engine.info.n_ctx
        if n_ctx <= 0:  # a server that does not say: it will refuse what does not fit
            return self.first
        last = max(len(self.exchanges) - 1, 0)
        if self.first >= last:
            return self.first
        room = n_ctx - min(params.max_tokens, n_ctx // 2)
        history = history_messages(self.exchanges)
        asked = ChatMessage("user", question)
        # Tokens never outnumber UTF-8 bytes (plus a few per message for the template), so
        # bound[f], the bytes of the prompt from exchange f on, shows most prompts fit without
        # tokenizing anything.
        bound = [_bytes(asked)] * (len(self.exchanges) + 1)
        for i in range(len(self.exchanges) - 1, -1, -1):
            bound[i] = bound[i + 1] + _bytes(history[2 * i]) + _bytes(history[2 * i + 1])
        counted: dict[int, float] = {}

        def tokens(first: int) -> float:
            if first not in counted:
                try:
                    counted[first] = engine.count_tokens([*history[2 * first :], asked])
                except R1ChatError:
                    # A long history can be too big to even render: the template's output is
                    # bounded by a few times what the context holds. That prompt does not fit;
                    # a template that fails whatever it is given fails again on the turn itself.
                    if first == last:
                        raise
                    tokens(last)
                    counted[first] = math.inf
            return counted[first]

        def fits(first: int, limit: int) -> bool:
            return bound[first] <= limit or tokens(first) <= limit

        def least(lo: int, limit: int, *, exact: bool = True) -> int:
            """The least `first` from `lo` on whose prompt fits `limit`; `last` when none does
            (not `exact`: more than `lo` once `lo` is known not to fit). Each guess is where
            the tokens counted so far, exchange by exchange, say the limit falls, with at most
            three times the exchanges of the longest prompt known to fit: no prompt much longer
            than one that fits is rendered."""
            good, bad = last, lo - 1  # the answer is in (bad, good]
            while good > lo and bound[good - 1] <= limit:
                good -= 1
            for first, n in counted.items():  # what the other limit's search counted
                if n <= limit and lo <= first < good:
                    good = first
                elif n > limit and bad < first < good:
                    bad = first
            stalls = 0  # steps in a row that did not halve (bad, good]
            while good - bad > 1 and (exact or bad < lo):
                width, at_good, bracketed = good - bad, tokens(good), bad >= lo
                known = bracketed and counted[bad] < math.inf
                if stalls >= 2 or (bracketed and not known):
                    guess, stalls = (bad + good) // 2, 0
                else:
                    per = (
                        (counted[bad] - at_good) / width
                        if known
                        else at_good / (last - good + 2)  # the question: about one exchange
                    )
                    back = math.floor((limit - at_good) / per) if per > 0 else width
                    guess = good - min(back, 2 * (last - good + 1))
                guess = min(max(guess, bad + 1), good - 1)
                if fits(guess, limit):
                    good = guess
                else:
                    bad = guess
                stalls = stalls + 1 if bracketed and good - bad > width // 2 else 0
            return good

        # Most turns fit whole: counted at once, unless its bytes are far past the room.
        if bound[self.first] <= 4 * room and fits(self.first, room):
            return self.first
        if least(self.first, room, exact=False) == self.first:
            return self.first
        self.first = least(self.first + 1, room // 2)
        return self.first

    # --- asking ---

    def ask(
        self,
        engine: Engine,
        question: str,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> Generator[TurnEvent, None, None]:
        """Stream the reply to `question`, saving the question and the reply as they happen;
        `attachments` (name and size of each file in the question) are kept beside it."""
        before = self.first
        if self.fit(engine, question, params) != before:
            yield ContextTrimmed(self.first, engine.info.n_ctx)
        turn = run_turn(engine, self.history(), question, params, cancel, control)
        finished = False
        try:
            for ev in turn:
                if isinstance(ev, TurnStarted):
                    self._started(question, engine.info.name, attachments)
                elif isinstance(ev, TurnDone):
                    finished = True
                    self._end(ev.result)
                yield ev
        except BaseException:
            # The reader went away (a closed pipe, a quitting app) or the engine failed: keep
            # what came. The error that got us here matters more than a failed save.
            if turn.started and not finished:
                with contextlib.suppress(R1ChatError):
                    self._end(turn.partial())
            raise

    def ask_samples(
        self,
        engine: Engine,
        question: str,
        params: SamplingParams,
        k: int,
        *,
        cancel: threading.Event | None = None,
        reasoning: ReasoningParams | None = None,
        attachments: list[dict[str, Any]] | None = None,
        ctx_tokens: int | None = None,
        run: Callable[[SampleRun], None] | None = None,
    ) -> Generator[SamplesEvent | ContextTrimmed, None, None]:
        """Stream k replies to `question` and their vote, saving as `ask` does: the question
        once the engine takes it, every sample that came when they end, however they end; the
        vote's choice is the reply shown and continued, the others its alternatives. `run`
        hears the SampleRun before it starts (answer now reaches its controls)."""
        before = self.first
        if self.fit(engine, question, params) != before:
            yield ContextTrimmed(self.first, engine.info.n_ctx)
        samples = SampleRun(
            engine,
            self.history(),
            question,
            params,
            k,
            cancel=cancel,
            reasoning=reasoning,
            ctx_tokens=ctx_tokens,
        )
        if run is not None:
            run(samples)
        finished = False
        try:
            for ev in samples:
                if isinstance(ev, SamplesStarted):
                    self._started(question, engine.info.name, attachments)
                elif isinstance(ev, SamplesDone):
                    finished = True
                    self._end_samples(ev.samples)
                yield ev
        except BaseException:
            if samples.started and not finished:
                with contextlib.suppress(R1ChatError):
                    self._end_samples(samples.partial())
            raise

    def _started(self, question: str, model: str, attachments: list[dict[str, Any]] | None) -> None:
        if self._again:
            self._question_id, self._retrying, self._again = self._retrying, None, False
            self._alternative = True
        else:
            self._save(lambda: self._save_question(question, model, attachments))

    def _end(self, result: TurnResult) -> None:
        self.exchanges.append((result.question, result.answer))
        self.reply_id = None
        self._save(lambda: self._save_reply(result))
        reply = Reply.of(result, self.reply_id)
        if self._alternative:
            self.alternatives.append(reply)
        else:
            self.alternatives = [reply]
        self.shown_alternative = len(self.alternatives) - 1

    def _end_samples(self, result: Samples) -> None:
        """Keep every sample that came (an empty, stopped one is nothing to keep), in their
        order, so that "‹ 2/4 ›" is sample 2 here and in the history; the chosen one is the one
        shown and continued."""
        kept = [
            s for s in result.samples if s.answer or s.thinking or s.finish_reason != "cancelled"
        ]
        chosen = result.chosen() if result.samples else None
        if chosen is None or chosen not in kept:
            # No vote: the first sample that did not fail is the one shown and continued.
            chosen = next((s for s in kept if s.error is None), kept[0] if kept else None)
        self.exchanges.append((result.question, chosen.answer if chosen else ""))
        self.alternatives = []
        chosen_id = None
        for s in kept:
            self.reply_id = None
            if self._question_id is not None:
                self._save(functools.partial(self._save_sample, s, s is chosen))
            if s is chosen:
                self.shown_alternative, chosen_id = len(self.alternatives), self.reply_id
            stats = {**s.stats.to_dict(), "sample": s.index}
            self.alternatives.append(
                Reply(s.answer, s.thinking, stats, s.finish_reason, s.thinking_ended, self.reply_id)
            )
        self.reply_id = chosen_id

    def _save_sample(self, s: Sample, chosen: bool) -> None:
        assert self.store is not None and self.id is not None
        self.reply_id = self.store.add_assistant_message(
            self.id,
            s.answer,
            s.thinking,
            {**s.stats.to_dict(), "sample": s.index, **({"error": s.error} if s.error else {})},
            s.finish_reason,
            parent_id=self._question_id,
            thinking_ended=s.thinking_ended,
            activate=chosen,
        )

    def _save(self, write: Callable[[], None]) -> None:
        if self.store is None:
            return
        try:
            with self._lock:
                write()
        except R1ChatError as e:
            if self.on_save_error is None:
                raise
            self.on_save_error(e)

    def _save_question(
        self, question: str, model: str, attachments: list[dict[str, Any]] | None = None
    ) -> None:
        assert self.store is not None
        if self.id is None:
            self.id = self.store.new_conversation(title_from(question), model)
        self._alternative = False
        parent = self._fork_parent if self._forking else LEAF
        self._forking = False
        self._question_id = self.store.add_user_message(
            self.id, question, parent_id=parent, attachments=attachments
        )

    def _save_reply(self, result: TurnResult) -> None:
        assert self.store is not None
        if self.id is not None:
            self.reply_id = self.store.add_assistant_message(
                self.id,
                result.answer,
                result.thinking,
                result.stats.to_dict(),
                result.finish_reason,
                parent_id=LEAF if self._question_id is None else self._question_id,
                thinking_ended=result.thinking_ended,
                # A reply sampled again is shown in place of the earlier ones; a first reply
                # follows the usual rule (see HistoryStore.add_assistant_message).
                activate=self._alternative,
            )


def _bytes(message: ChatMessage) -> int:
    """At most the tokens `message` costs in a prompt: its UTF-8 bytes, and a few for the
    template around it."""
    return len(message.content.encode("utf-8", "replace")) + 16


class Chats:
    """The user's conversations: a new one, or a saved one opened to be continued. Front ends
    hold this rather than the store, so what a conversation is stays decided here."""

    def __init__(
        self, store: HistoryStore | None, *, on_save_error: SaveErrorHandler | None = None
    ) -> None:
        self.store = store
        self.on_save_error = on_save_error

    def new(self) -> Conversation:
        return Conversation(self.store, on_save_error=self.on_save_error)

    def open(self, conversation_id: int) -> Conversation:
        """R1ChatError when it cannot be read (or the history is off)."""
        if self.store is None:
            raise R1ChatError("the history is off")
        return Conversation.resume(self.store, conversation_id, on_save_error=self.on_save_error)
