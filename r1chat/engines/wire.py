"""What an OpenAI-compatible server sends, checked in one place before anything uses it.

A server is untrusted input like a file: `{"choices": 5}`, a usage count of "abc", NaN, a context
size that is not a number, a UTF-16 surrogate pair split across two events. Every field r1chat
reads from a server is read here; a field of the wrong type is one line (`WireError`, which the
engine words with the server's address), never a traceback, and never a plausible wrong number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from r1chat.confidence import logprob_confidence

# No real count comes near this; a larger one is a server's mistake, not a figure to show.
MAX_COUNT = 10**9


class WireError(ValueError):
    """A field of the wrong type or out of range: what, in a few words."""


def count(value: Any, what: str) -> int | None:
    """A non-negative whole number, or None when the server left it out (null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise WireError(f"{what} is not a number")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise WireError(f"{what} is not a whole number")
    if not 0 <= value <= MAX_COUNT:
        raise WireError(f"{what} is out of range ({value})")
    return value


def model_ids(data: Any) -> list[dict[str, Any]]:
    """The model objects of a /v1/models answer that have a string id."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise WireError("no model list")
    return [
        {**i, "id": text(i["id"])}
        for i in items
        if isinstance(i, dict) and isinstance(i.get("id"), str) and i["id"]
    ]


def props_n_ctx(props: Any) -> int | None:
    """llama-server's /props context size; None when it is not llama-server."""
    if not isinstance(props, dict) or "default_generation_settings" not in props:
        return None
    gen = props["default_generation_settings"]
    if not isinstance(gen, dict):
        raise WireError("/props default_generation_settings is not an object")
    return count(gen.get("n_ctx"), "/props n_ctx") or 0


def props_slots(props: Any) -> int | None:
    """llama-server's /props `total_slots`: how many requests it serves together."""
    if not isinstance(props, dict) or "total_slots" not in props:
        return None
    return count(props.get("total_slots"), "/props total_slots") or None


def props_thinks(props: Any) -> bool:
    """Whether llama-server's chat template writes `<think>` (a reasoning model's template)."""
    template = props.get("chat_template") if isinstance(props, dict) else None
    return isinstance(template, str) and "<think>" in template


@dataclass
class Chunk:
    """One streamed event: pieces of text ("reasoning" | "content", text), finish reasons and
    the usage counts when it carries them."""

    pieces: list[tuple[str, str]] = field(default_factory=list)
    finishes: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    id: str | None = None  # the completion's id (llama-server's control endpoint takes it)
    # DeepConf's confidence of each token that `logprobs.content` covers (r1chat.confidence).
    confidences: list[float] = field(default_factory=list)


def chunk(data: Any) -> Chunk:
    """A `chat.completion.chunk` (or an error event) read field by field."""
    if not isinstance(data, dict):
        raise WireError("an event that is not a JSON object")
    out = Chunk()
    if "error" in data:
        err = data["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        out.error = text(str(msg)) if msg is not None else "no reason given"
        return out
    cid = data.get("id")
    if isinstance(cid, str) and 0 < len(cid) <= 200:
        out.id = cid
    choices = data.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise WireError("choices that are not a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise WireError("a choice that is not an object")
        delta = choice.get("delta")
        if delta is None:
            delta = {}
        if not isinstance(delta, dict):
            raise WireError("a delta that is not an object")
        # Both names at once would be one server repeating itself: read one.
        reasoning = delta.get("reasoning_content")
        if reasoning is None or reasoning == "":
            reasoning = delta.get("reasoning")
        for kind, value in (("reasoning", reasoning), ("content", delta.get("content"))):
            if value is None:
                continue
            if not isinstance(value, str):
                raise WireError(f"{kind} text that is not a string")
            if value:
                out.pieces.append((kind, value))
        out.confidences += _confidences(choice)
        reason = choice.get("finish_reason")
        if reason is not None:
            if not isinstance(reason, str):
                raise WireError("a finish_reason that is not a string")
            out.finishes.append(reason)
    usage = data.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            raise WireError("usage that is not an object")
        out.prompt_tokens = count(usage.get("prompt_tokens"), "usage.prompt_tokens")
        out.completion_tokens = count(usage.get("completion_tokens"), "usage.completion_tokens")
    return out


def _confidences(choice: dict[str, Any]) -> list[float]:
    """The confidence of each token a choice's `logprobs.content` covers (vLLM and llama-server
    put the thinking's tokens there too): minus the mean of its `top_logprobs`."""
    lp = choice.get("logprobs")
    if lp is None:
        return []
    if not isinstance(lp, dict):
        raise WireError("logprobs that are not an object")
    items = lp.get("content") or []
    if not isinstance(items, list):
        raise WireError("logprobs.content that is not a list")
    out: list[float] = []
    for item in items:
        tops = item.get("top_logprobs") if isinstance(item, dict) else None
        if not isinstance(tops, list) or not tops:
            continue
        values: list[float] = []
        for t in tops:
            v = t.get("logprob") if isinstance(t, dict) else None
            if isinstance(v, bool) or not isinstance(v, int | float) or not v <= 1e-3:
                raise WireError("a top_logprobs logprob that is not a log-probability")
            values.append(max(float(v), -9999.0))  # vLLM's own floor for -inf
        out.append(logprob_confidence(sorted(values, reverse=True)))
    return out


_HIGH = range(0xD800, 0xDC00)
_LOW = range(0xDC00, 0xE000)


def text(value: str) -> str:
    """`value` with surrogate pairs joined and lone surrogates (which no file or terminal can
    take) replaced by U+FFFD."""
    if not any(0xD800 <= ord(c) < 0xE000 for c in value):
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Surrogates:
    """Text in pieces whose surrogate pairs may be split between pieces (a JSON producer that
    writes `\\ud83d` in one event and `\\ude00` in the next): a trailing high surrogate waits
    for the next piece."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        piece = self._held + piece
        self._held = ""
        if piece and ord(piece[-1]) in _HIGH:
            self._held, piece = piece[-1], piece[:-1]
        return text(piece)

    def close(self) -> str:
        held, self._held = self._held, ""
        return text(held)
