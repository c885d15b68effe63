"""k samples of one question on whatever engine runs, and the vote over their answers.

An engine that decodes sequences together (`DecodesTogether`: llama.cpp in one batch, a server
with concurrent requests) streams all k at once; any other engine runs them one at a time. Either
way each sample's events go through its own TurnRecorder, the same one a single reply uses, with
its own ThinkingControl: every sample obeys the budget, think-min, answer now and the loop guard
on its own. `ask -k`, the app's samples (through `Conversation.ask_samples`) and `eval` all run
here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from r1chat.answers import Vote, vote
from r1chat.endings import no_answer
from r1chat.engines.base import (
    BatchDone,
    BatchStats,
    DecodesTogether,
    Engine,
    Failed,
    ManyEvent,
    Stats,
    one_at_a_time,
)
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage
from r1chat.reasoning import Ended, Kind, ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.sanitize import sanitize
from r1chat.turn import Delta, TurnEvent, TurnRecorder, TurnResult, TurnStarted


@dataclass
class Sample:
    """One of the k replies."""

    index: int
    seed: int
    thinking: str
    answer: str
    boxed: str | None
    finish_reason: str
    thinking_tokens: int
    answer_tokens: int
    thinking_ended: Ended | None = None
    stats: Stats = field(default_factory=Stats, repr=False)
    forced_tokens: int = 0  # what r1chat wrote into it (a budget's closing text)
    error: str | None = None  # why its request failed ("error" is then its finish reason)

    @property
    def completion_tokens(self) -> int:
        return self.thinking_tokens + self.answer_tokens + self.forced_tokens

    @classmethod
    def of(cls, index: int, result: TurnResult) -> Sample:
        return cls(
            index=index,
            seed=result.stats.seed,
            thinking=result.thinking,
            answer=result.answer,
            boxed=result.boxed,
            finish_reason=result.finish_reason,
            thinking_tokens=result.stats.thinking_tokens,
            answer_tokens=result.stats.answer_tokens,
            thinking_ended=result.thinking_ended,
            stats=result.stats,
            forced_tokens=result.stats.forced_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "thinking": self.thinking,
            "answer": self.answer,
            "boxed": self.boxed,
            "finish_reason": self.finish_reason,
            "thinking_ended": self.thinking_ended,
            "thinking_tokens": self.thinking_tokens,
            "answer_tokens": self.answer_tokens,
            "forced_tokens": self.forced_tokens,
            "completion_tokens": self.completion_tokens,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class SampleProgress:
    """New text of sample `index`, with its token counts so far."""

    index: int
    kind: Kind
    text: str
    thinking_tokens: int
    answer_tokens: int


@dataclass(frozen=True)
class Samples:
    samples: list[Sample]
    stats: BatchStats
    vote: Vote
    question: str = ""
    model: str = ""
    # Samples whose request failed before any of their text came: (index, why).
    failed: tuple[tuple[int, str], ...] = ()

    @property
    def errors(self) -> list[tuple[int, str]]:
        """Every sample that failed, first or midway: (index, why), in index order."""
        midway: list[tuple[int, str]] = [
            (s.index, s.error) for s in self.samples if s.error is not None
        ]
        return sorted([*self.failed, *midway])

    def chosen(self) -> Sample:
        """The sample whose answer won the vote (the first of them), else the first one."""
        if self.vote.members:
            return self.samples[self.vote.members[0]]
        return next((s for s in self.samples if s.error is None), self.samples[0])

    @property
    def stopped(self) -> bool:
        return any(s.finish_reason == "cancelled" for s in self.samples)

    @property
    def all_failed(self) -> bool:
        """Every sample's request failed: what came of them is kept, but it is no answer."""
        return bool(self.errors) and all(s.error is not None for s in self.samples)

    def no_answer(self) -> str | None:
        """Why no sample has an answer, in one line; None when one has. A failed sample's
        text is no answer."""
        if self.all_failed:
            return f"no answer: every sample failed ({self.errors[0][1]})"
        if any(s.answer.strip() for s in self.samples if s.error is None):
            return None
        if not self.samples:
            return "no answer: stopped before any sample began"
        reasons = Counter(no_answer("", s.finish_reason, s.thinking_ended) for s in self.samples)
        why, n = reasons.most_common(1)[0]
        return f"{why} (in {n} of {len(self.samples)} samples)".replace(
            "no answer: ", "no sample answered: ", 1
        )

    def agreement(self) -> str:
        """ "4, 6 of 8 samples agree"; or why there is no vote. Failed samples do not vote,
        and the line says how many failed."""
        v = self.vote
        failed = len(self.errors)
        but = f" ({failed} failed)" if failed else ""
        if v.answer is None:
            return f"no sample of {v.of} gave a \\boxed{{}} answer{but}"
        return f"{v.answer}, {v.count} of {v.of} samples agree{but}"


@dataclass(frozen=True)
class SamplesStarted:
    """The engine accepted the prompt: from here on the question counts as asked."""

    prompt_tokens: int | None


@dataclass(frozen=True)
class SampleEvent:
    """What happened in sample `index` (its TurnEvents, as a single reply has them)."""

    index: int
    event: TurnEvent


@dataclass(frozen=True)
class SampleFailed:
    """Sample `index`'s request failed; the others go on."""

    index: int
    message: str


@dataclass(frozen=True)
class SamplesDone:
    samples: Samples


SamplesEvent = SamplesStarted | SampleEvent | SampleFailed | SamplesDone


class SampleMeter:
    """What each sample has done so far, as one line per sample, for `ask -k` and the app.

    Written by the decoding thread (plain assignments), read a few times a second.
    """

    def __init__(self, k: int) -> None:
        self.think = [0] * k
        self.answer = [0] * k
        self.tail = [""] * k
        self.ended: list[str] = [""] * k
        self.failed: list[str] = [""] * k

    def progress(self, p: SampleProgress) -> None:
        self.think[p.index] = p.thinking_tokens
        self.answer[p.index] = p.answer_tokens
        if p.kind == "answer":
            self.tail[p.index] = (self.tail[p.index] + p.text)[-60:]

    def lines(self, indent: str = "") -> str:
        out = []
        for i, (t, a) in enumerate(zip(self.think, self.answer, strict=True)):
            if self.failed[i]:
                state = "failed: " + " ".join(sanitize(self.failed[i]).split())[:80]
            elif a:
                state = "answering: " + " ".join(sanitize(self.tail[i]).split())
            else:
                state = "thinking…" if not self.ended[i] else self.ended[i]
            out.append(f"{indent}sample {i + 1:>2}  {t:>6,} thinking tokens  {state}")
        return "\n".join(out)


def controls_for(engine: Engine, reasoning: ReasoningParams | None, k: int) -> list[Any]:
    """One ThinkingControl per sample (none for a model that does not think): each watches its
    own thinking, and answer now reaches every one of them."""
    if not engine.info.thinks:
        return [None] * k
    return [ThinkingControl(reasoning or ReasoningParams()) for _ in range(k)]


def voted(samples: list[Sample]) -> Vote:
    """The vote of the samples that did not fail: a failed one neither votes nor counts."""
    v = vote([s.boxed if s.error is None else None for s in samples])
    return replace(v, of=sum(s.error is None for s in samples))


class SampleRun:
    """k replies to `question` after `history`; iterate it for SamplesEvents. `partial()` gives
    what came so far when the stream breaks off."""

    def __init__(
        self,
        engine: Engine,
        history: list[ChatMessage],
        question: str,
        params: SamplingParams,
        k: int,
        *,
        cancel: threading.Event | None = None,
        reasoning: ReasoningParams | None = None,
        controls: list[ThinkingControl | None] | None = None,
        ctx_tokens: int | None = None,
    ) -> None:
        self.engine = engine
        self.messages = [*history, ChatMessage("user", question)]
        self.question = question
        self.params = params
        self.k = k
        self.cancel = cancel
        self.controls = controls if controls is not None else controls_for(engine, reasoning, k)
        self.ctx_tokens = ctx_tokens
        name = engine.info.name
        self.recorders = [TurnRecorder(question, name, c) for c in self.controls]
        self.stats = BatchStats(k=k)
        self.started = False
        self.failed: dict[int, str] = {}

    def answer_now(self) -> None:
        for c in self.controls:
            if c is not None:
                c.answer_now()

    def _events(self) -> Iterator[ManyEvent]:
        engine = self.engine
        if isinstance(engine, DecodesTogether):
            return engine.stream_many(
                self.messages, self.params, self.k, self.cancel, self.controls, self.ctx_tokens
            )
        return one_at_a_time(engine, self.messages, self.params, self.k, self.cancel, self.controls)

    def __iter__(self) -> Iterator[SamplesEvent]:
        recorders = self.recorders
        for i, ev in self._events():
            if isinstance(ev, BatchDone):
                self.stats = ev.stats
                continue
            if isinstance(ev, Failed):
                self.failed[i] = ev.message
                yield SampleFailed(i, ev.message)
                continue
            for tev in recorders[i].feed(ev):
                if isinstance(tev, TurnStarted):
                    if self.started:
                        continue
                    self.started = True
                    yield SamplesStarted(tev.prompt_tokens)
                    continue
                yield SampleEvent(i, tev)
        if self.failed and not any(r.started for r in self.recorders):
            # Not one sample began (a server that is down): that is the run's error.
            raise R1ChatError(self.failed[min(self.failed)])
        yield SamplesDone(self.partial())

    def partial(self) -> Samples:
        """Every sample that began, as far as it came (unfinished ones marked stopped, failed
        ones marked "error"); failed samples do not vote."""
        samples = []
        for i, r in enumerate(self.recorders):
            if not r.started:
                continue
            sample = Sample.of(i, r.partial())
            if i in self.failed:
                sample.finish_reason, sample.error = "error", self.failed[i]
            samples.append(sample)
        self.stats.completion_tokens = sum(s.completion_tokens for s in samples)
        began = {s.index for s in samples}
        return Samples(
            samples,
            self.stats,
            voted(samples),
            self.question,
            self.engine.info.name,
            tuple((i, m) for i, m in sorted(self.failed.items()) if i not in began),
        )


def ask_many(
    engine: Engine,
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    *,
    cancel: threading.Event | None = None,
    on_progress: Callable[[SampleProgress], None] | None = None,
    reasoning: ReasoningParams | None = None,
    ctx_tokens: int | None = None,
) -> Samples:
    """k samples of the reply to `messages` and their vote, saved nowhere (`eval`, `bench`)."""
    run = SampleRun(
        engine,
        messages[:-1],
        messages[-1].content,
        params,
        k,
        cancel=cancel,
        reasoning=reasoning,
        ctx_tokens=ctx_tokens,
    )
    for ev in run:
        if isinstance(ev, SamplesDone):
            return ev.samples
        if on_progress is not None and isinstance(ev, SampleEvent):
            progress(ev, on_progress)
    raise AssertionError("a sample run ends with SamplesDone")


def progress(ev: SampleEvent, on_progress: Callable[[SampleProgress], None]) -> None:
    """Pass a sample's new text on as SampleProgress."""
    d = ev.event
    if isinstance(d, Delta):
        on_progress(SampleProgress(ev.index, d.kind, d.text, d.think_tokens, d.answer_tokens))
