"""A conversation being continued: its earlier exchanges, where it is saved, and the next turn.

`ask` and the TUI both run turns through `Conversation.ask`, which is the one place that saves:
the question once the engine has accepted it (a question the model never saw is never saved),
the reply when the turn ends, however it ends (finished, stopped, cut off, or abandoned by its
reader), so a crash loses at most the reply in progress.

What is stored is what the user and the model wrote, unsanitised; display code sanitises. So a
conversation continued live and one reloaded from the history send the model the same text.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from r1chat.errors import R1ChatError
from r1chat.history import LEAF, title_from
from r1chat.prompts import ChatMessage, history_messages
from r1chat.reasoning import ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.turn import ContextTrimmed, TurnDone, TurnEvent, TurnResult, TurnStarted, run_turn

if TYPE_CHECKING:
    from r1chat.engine import Engine
    from r1chat.history import HistoryStore

SaveErrorHandler = Callable[[R1ChatError], None]


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
        self._retrying: int | None = None  # the saved question whose reply is sampled again
        self._alternative = False  # the reply being saved is another sample of its turn
        self.reply_id: int | None = None  # the last reply saved
        # The next question forks the conversation after this reply (None: at its start).
        self._forking = False
        self._fork_parent: int | None = None

    @classmethod
    def resume(
        cls,
        store: HistoryStore,
        conversation_id: int,
        *,
        on_save_error: SaveErrorHandler | None = None,
    ) -> Conversation:
        """A saved conversation, to be continued (R1ChatError when there is no such one)."""
        return cls(
            store, conversation_id, store.turns(conversation_id), on_save_error=on_save_error
        )

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
        chat._retrying = question.id
        return chat, question.content

    def save_samples(
        self,
        question: str,
        model: str,
        replies: list[tuple[str, str, dict[str, Any], str]],
        chosen: int,
        attachments: list[dict[str, Any]] | None = None,
    ) -> None:
        """Keep a question answered by several samples at once: each (answer, thinking, stats,
        finish reason) a reply to it, the `chosen` one shown and continued; the others are
        its alternatives."""
        self.exchanges.append((question, replies[chosen][0]))
        if self.store is None:
            return

        def write() -> None:
            assert self.store is not None
            self._save_question(question, model, attachments)
            order = [i for i in range(len(replies)) if i != chosen] + [chosen]
            for i in order:
                answer, thinking, stats, finish = replies[i]
                rid = self.store.add_assistant_message(
                    self.id,  # type: ignore[arg-type]
                    answer,
                    thinking,
                    stats,
                    finish,
                    parent_id=self._question_id,
                    activate=i == chosen,
                )
                if i == chosen:
                    self.reply_id = rid

        self._save(write)

    def redo_last(self) -> str:
        """Take back the last exchange so that its reply is sampled again (`ask` it next): the
        new reply joins the earlier ones as an alternative and becomes the one shown."""
        if not self.exchanges:
            raise R1ChatError("there is no reply to sample again yet")
        question, _ = self.exchanges.pop()
        qid = self._question_id
        if qid is None and self.store is not None and self.id is not None:
            pairs = self.store.exchanges(self.id)
            qid = pairs[-1][0].id if pairs else None
        self._retrying = qid
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
        self._retrying = None
        return question

    def choose_reply(self, answer: str, reply_id: int | None) -> None:
        """Show and continue from another reply of the last question (an alternative)."""
        if self.exchanges:
            self.exchanges[-1] = (self.exchanges[-1][0], answer)
        if reply_id is not None and self.store is not None and self.id is not None:
            self._save(lambda: self._set_leaf(reply_id))

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
        room = n_ctx - min(params.max_tokens, n_ctx // 2)

        def size(first: int) -> int:
            messages = [*history_messages(self.exchanges[first:]), ChatMessage("user", question)]
            # Tokens never outnumber UTF-8 bytes (plus a few per message for the template):
            # most turns are known to fit without tokenizing anything.
            cheap = sum(len(m.content.encode("utf-8")) + 16 for m in messages)
            return cheap if cheap <= room else engine.count_tokens(messages)

        last = max(len(self.exchanges) - 1, 0)
        if self.first >= last or size(self.first) <= room:
            return self.first
        lo, hi = self.first + 1, last  # the least `first` that fits in half the room
        while lo < hi:
            mid = (lo + hi) // 2
            if size(mid) <= room // 2:
                hi = mid
            else:
                lo = mid + 1
        self.first = lo
        return self.first

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
                if isinstance(ev, TurnStarted) and self._retrying is not None:
                    self._question_id, self._retrying = self._retrying, None
                    self._alternative = True
                elif isinstance(ev, TurnStarted):
                    self._save(lambda: self._save_question(question, engine.info.name, attachments))
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

    def _end(self, result: TurnResult) -> None:
        self.exchanges.append((result.question, result.answer))
        self._save(lambda: self._save_reply(result))

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
