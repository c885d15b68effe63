"""The per-token step every local decode loop takes, one sequence at a time.

A sampled token goes through the same decisions whether the reply is decoded alone or as one
sequence of a batch: the end-of-generation check, its text (UTF-8 decoded incrementally), the
thinking control (budget, think-min, answer now, the loop guard), and the token limit. The loop
around it only samples, decodes what `feed` holds and watches for a stop; so a control written
here reaches every path at once. No llama.cpp here: the vocabulary comes in as lookups, and each
sampled token's confidence (r1chat.confidence) with the token.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass

from r1chat.confidence import TraceConfidence
from r1chat.engines.base import FinishReason, Stats, Token
from r1chat.reasoning import Inject, Steer, ThinkingControl


@dataclass(frozen=True)
class Vocabulary:
    """What the step needs of a tokenizer. `pieces` and `eog` are memo tables read first (a
    dict lookup per token, not a call); `piece` and `is_eog` fill them on a miss."""

    pieces: dict[int, bytes]
    eog: dict[int, bool]
    piece: Callable[[int], bytes]
    is_eog: Callable[[int], bool]
    tokenize: Callable[[str], list[int]]


class TokenStep:
    """One sequence's decisions, token by token.

    `take(token)` returns the Tokens to show for it (none when the sequence ends, several when
    r1chat writes text into the context). Afterwards `finish` says why the sequence ended, or
    `feed` holds the ids to decode before the next sample. `n` counts every token shown, the
    ones r1chat wrote included: together they stay within `limit`.

    `trace` gathers the confidence of every position the model sampled: the end of generation
    and a token the thinking control drops included (the model's distribution there was real),
    what r1chat writes not (it has none).
    """

    __slots__ = (
        "_control",
        "_decode",
        "_end_id",
        "_ignore_eos",
        "_last",
        "_limit",
        "_one",
        "_thinking",
        "_vocab",
        "feed",
        "finish",
        "n",
        "trace",
    )

    def __init__(
        self,
        vocab: Vocabulary,
        limit: int,
        *,
        ignore_eos: bool = False,
        control: ThinkingControl | None = None,
        end_id: int | None = None,
        trace: TraceConfidence | None = None,
    ) -> None:
        self._vocab = vocab
        self.trace = trace
        self._limit = limit
        self._ignore_eos = ignore_eos
        self._control = control
        self._end_id = end_id
        # While the model thinks, every token goes past `control`; after, none does.
        self._thinking = control is not None and end_id is not None
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._one = [0]
        self._last = ""  # the last text shown: where something r1chat writes goes after it
        self.feed: list[int] = self._one
        self.finish: FinishReason | None = None
        self.n = 0
        if limit <= 0:
            self.finish = "length"

    def take(self, tok: int, conf: float | None = None) -> list[Token]:
        """The Tokens to show for sampled `tok`; `conf`: its position's confidence, if known."""
        if conf is not None and self.trace is not None:
            self.trace.add(conf)
        vocab = self._vocab
        # End of generation by token id, memoised: a ctypes call per token costs ~9 us.
        end = vocab.eog.get(tok)
        if end is None:
            end = vocab.is_eog(tok)
        if end and not self._ignore_eos:
            self.finish = "stop"
            return []
        if self._thinking:
            steer = self._steer(tok)
            if steer is not None:
                return self._steered(tok, steer, conf)
        self.n += 1
        piece = vocab.pieces.get(tok)
        if piece is None:
            piece = vocab.piece(tok)
        if self.n >= self._limit:
            self.finish = "length"
        self._one[0] = tok
        self.feed = self._one
        text = self._decode(piece)
        if text:
            self._last = text
        return [Token(tok, text, conf=conf)]

    def note_confidence(self, stats: Stats) -> None:
        """The reply's confidence into `stats` (None where nothing was measured)."""
        trace = self.trace
        if trace is not None and trace.n:
            stats.confidence = trace.lowest
            stats.confidence_mean = trace.mean
            stats.confidence_tail = trace.tail

    def close(self) -> Token | None:
        """What the UTF-8 decoder still holds when the sequence ends (a split character)."""
        tail = self._decode(b"", True)
        return Token(-1, tail) if tail else None

    def _steer(self, tok: int) -> Steer | None:
        control = self._control
        assert control is not None
        if tok == self._end_id:
            steer = control.close_requested()
            if steer is None:
                self._thinking = False  # the model closed its thinking
            return steer
        return control.token(tok)

    def _steered(self, tok: int, steer: Steer, conf: float | None) -> list[Token]:
        if not isinstance(steer, Inject):  # the loop guard stops the reply
            self.finish = "cancelled"
            return []
        vocab = self._vocab
        forced = vocab.tokenize(steer.after(self._last))
        self._thinking = self._end_id not in forced
        fed = forced if steer.drop else [tok, *forced]
        first_forced = 0 if steer.drop else 1
        shown: list[Token] = []
        for i, t in enumerate(fed):
            if self.n >= self._limit:
                break
            self.n += 1
            piece = vocab.pieces.get(t)
            if piece is None:
                piece = vocab.piece(t)
            text = self._decode(piece)
            if text:
                self._last = text
            ours = i >= first_forced
            shown.append(Token(t, text, ours, conf=None if ours else conf))
        if self.n >= self._limit:
            self.finish = "length"
        self.feed = fed[: len(shown)]
        return shown
