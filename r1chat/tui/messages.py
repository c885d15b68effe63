"""The app's life as messages, posted where things happen (often a worker thread) and handled
where they matter: the model loaded or failed; a question saved; a reply or k samples finished,
or the turn failed.

Tests wait on them through `run_test(message_hook=...)` (tests/tui/tui_support.Events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from r1chat.engines.base import Engine
    from r1chat.errors import R1ChatError
    from r1chat.many import Samples
    from r1chat.turn import ThinkingEnded, TurnResult


class ModelLoaded(Message):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine


class ModelFailed(Message):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class DownloadProgress(Message):
    """A first-use download of the model: bytes so far, and in all when known."""

    def __init__(self, done: int, total: int | None) -> None:
        super().__init__()
        self.done = done
        self.total = total


class LoadNote(Message):
    """One line about how the model is being loaded (what auto-fit chose, say)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class ThinkingOver(Message):
    """The thinking ended (`ended.how`: by the model, or r1chat ended it)."""

    def __init__(self, ended: ThinkingEnded) -> None:
        super().__init__()
        self.ended = ended


class ThinkingLoops(Message):
    """The thinking repeats itself (on_loop = "warn": it goes on)."""


class OlderTurnsLeftOut(Message):
    """The oldest turns are left out of what the model is sent (`note` says so)."""

    def __init__(self, note: str) -> None:
        super().__init__()
        self.note = note


class QuestionAsked(Message):
    """The engine accepted the question, and it is saved (when the history is on)."""

    def __init__(self, prompt_tokens: int | None, conversation_id: int | None) -> None:
        super().__init__()
        self.prompt_tokens = prompt_tokens
        self.conversation_id = conversation_id


class TurnFinished(Message):
    """The reply ended (finished, stopped or cut off) and is saved."""

    def __init__(self, result: TurnResult) -> None:
        super().__init__()
        self.result = result


class TurnFailed(Message):
    """The turn could not run (the prompt did not fit, the engine failed)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class HistoryFailed(Message):
    """Saving to the history failed; the chat goes on unsaved."""

    def __init__(self, error: R1ChatError) -> None:
        super().__init__()
        self.error = error


class Meter(Message):
    """Live figures of the reply in progress, for the status line (a few a second)."""

    def __init__(
        self, tok_s: float | None, ttft_s: float | None, ctx_used: int, thinking: bool = False
    ) -> None:
        super().__init__()
        self.tok_s = tok_s
        self.ttft_s = ttft_s
        self.ctx_used = ctx_used
        self.thinking = thinking  # the speed is the thinking's


class SamplesFinished(Message):
    """The samples of a question ended (finished or stopped), with their vote, and are
    saved."""

    def __init__(self, samples: Samples) -> None:
        super().__init__()
        self.samples = samples
