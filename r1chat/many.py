"""k samples of one question on whatever engine runs, and the vote over their answers.

An engine that decodes sequences together (`DecodesTogether`: llama.cpp in one batch, a server
with concurrent requests) streams all k at once; any other engine runs them one at a time. Either
way each sample's events go through its own TurnRecorder, the same one a single reply uses, with
its own ThinkingControl: every sample obeys the budget, think-min, answer now and the loop guard
on its own. A server's sample that came back cut short runs again (r1chat.engines.server_samples):
a SampleRetrying says so, and that sample starts again from nothing, with a fresh control. `ask
-k`, the app's samples (through `Conversation.ask_samples`) and `eval` all run here.

Two votes are taken over the finished samples' `\\boxed{}` answers: the majority
(r1chat.answers.vote) and DeepConf's confidence-weighted one (r1chat.confidence.confident_vote,
over the engine's measure of each sample); `vote_by` says which one is the answer of record.

Stopping early (`early`): as each sample ends, the answers so far are counted; once the leader
cannot be overtaken by the samples still to come ("overtaken"), or Adaptive-Consistency's Beta
rule says it is the more likely answer ("beta", which also stops where "overtaken" would), the
rest are stopped. They end "stopped early", keep their text, and do not vote: with "overtaken" the
majority is then what it would have been had every sample finished (see `SampleRun`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from r1chat.answers import Vote, equivalent, extract, vote, warm_up
from r1chat.confidence import KEEP, ConfidentVote, confident_vote, estimated_saving, why_stop
from r1chat.endings import STOPPED, STOPPED_EARLY, no_answer
from r1chat.engines.base import (
    BatchDone,
    BatchStats,
    DecodesTogether,
    Done,
    Engine,
    Failed,
    ManyEvent,
    Retrying,
    Stats,
    one_at_a_time,
)
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage
from r1chat.reasoning import Ended, Kind, ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.sanitize import sanitize
from r1chat.turn import Delta, TurnEvent, TurnRecorder, TurnResult, TurnStarted

# When the samples still running are stopped: never, once the leader cannot be overtaken, or also
# once Adaptive-Consistency's Beta rule is met (r1chat.confidence.why_stop).
EarlyRule = Literal["off", "overtaken", "beta"]
EARLY_RULES: tuple[EarlyRule, ...] = ("off", "overtaken", "beta")
# Which vote gives the answer of record: the plain majority, or DeepConf's confidence-weighted one.
VoteBy = Literal["majority", "confidence"]
VOTES_BY: tuple[VoteBy, ...] = ("majority", "confidence")


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
            # Every box of the final answer, then math-verify's fall-backs (r1chat.answers).
            boxed=extract(result.answer),
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
            # DeepConf's measures (None where the engine measured none): the lowest group
            # confidence, which the confidence vote weighs by, the mean and the tail.
            "confidence": self.stats.confidence,
            "confidence_mean": self.stats.confidence_mean,
            "confidence_tail": self.stats.confidence_tail,
        }

    @property
    def votes(self) -> bool:
        """Whether its answer counts: not when its request failed or it was stopped early."""
        return self.error is None and self.finish_reason != STOPPED_EARLY


@dataclass(frozen=True, slots=True)
class SampleProgress:
    """New text of sample `index`, with its token counts so far."""

    index: int
    kind: Kind
    text: str
    thinking_tokens: int
    answer_tokens: int


@dataclass(frozen=True)
class EarlyStop:
    """The samples still running were stopped: why, how many (begun or not), and the tokens."""

    why: str  # "the leading answer (5 to 0) cannot be overtaken by the 3 running"
    stopped: int
    tokens_spent: int  # every sample's tokens, the stopped ones' included
    # What the stopped samples would have written besides: an estimate, as no one knows
    # (r1chat.confidence.estimated_saving).
    tokens_saved: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "why": self.why,
            "stopped": self.stopped,
            "tokens_spent": self.tokens_spent,
            "tokens_saved_estimate": self.tokens_saved,
        }

    def words(self) -> str:
        """ "3 stopped early: the leading answer … (1,234 tokens spent, at least 456 saved)".

        The saving is a floor: a sample stopped while running was, by then, often longer than
        every finished one, and what it would still have written is unknown."""
        saved = f", at least {self.tokens_saved:,} saved" if self.tokens_saved else ""
        return (
            f"{self.stopped} stopped early: {self.why} ({self.tokens_spent:,} tokens spent{saved})"
        )


@dataclass(frozen=True)
class Samples:
    samples: list[Sample]
    stats: BatchStats
    vote: Vote  # the majority, always
    question: str = ""
    model: str = ""
    # Samples whose request failed before any of their text came: (index, why).
    failed: tuple[tuple[int, str], ...] = ()
    # The confidence-weighted vote (positions in `samples`, as `vote`'s); None when no sample
    # came. Not `weighted` when some answer had no confidence: then it is the majority.
    confident: ConfidentVote | None = None
    vote_by: VoteBy = "majority"  # which vote gives the answer of record
    early_stop: EarlyStop | None = None  # None: every sample ran to its end

    @property
    def errors(self) -> list[tuple[int, str]]:
        """Every sample that failed, first or midway: (index, why), in index order."""
        midway: list[tuple[int, str]] = [
            (s.index, s.error) for s in self.samples if s.error is not None
        ]
        return sorted([*self.failed, *midway])

    @property
    def by_confidence(self) -> bool:
        """Whether the answer of record is the confidence-weighted vote's: asked for, and every
        answer had a confidence to weigh (else the two votes are one)."""
        c = self.confident
        return self.vote_by == "confidence" and c is not None and c.weighted

    @property
    def boxed(self) -> str | None:
        """The answer of record (None: no sample gave one)."""
        if self.by_confidence:
            assert self.confident is not None
            return self.confident.answer
        return self.vote.answer

    def chosen(self) -> Sample:
        """The sample whose answer won the vote of record (the first of them), else the first
        one that did not fail."""
        members = self.vote.members
        if self.by_confidence:
            assert self.confident is not None
            members = self.confident.members
        if members:
            return self.samples[members[0]]
        return next((s for s in self.samples if s.error is None), self.samples[0])

    @property
    def stopped(self) -> bool:
        """Whether the user stopped them (a sample stopped early is not stopped by the user)."""
        return any(s.finish_reason == STOPPED for s in self.samples)

    @property
    def tokens_spent(self) -> int:
        return sum(s.completion_tokens for s in self.samples)

    @property
    def tokens_saved(self) -> int:
        """About how many tokens stopping early saved (an estimate); 0 when it did not stop."""
        return self.early_stop.tokens_saved if self.early_stop is not None else 0

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
        """ "4, 6 of 8 samples agree"; or why there is no vote. Failed samples and those stopped
        early do not vote: the line says how many failed, what the confidence-weighted vote
        says where confidences were measured, and why the samples were stopped early."""
        v = self.vote
        failed = len(self.errors)
        but = f" ({failed} failed)" if failed else ""
        if v.answer is None:
            line = f"no sample of {v.of} gave a \\boxed{{}} answer{but}"
        else:
            line = f"{v.answer}, {v.count} of {v.of} samples agree{but}"
        c = self.confident
        if c is not None and c.weighted and c.answer is not None:
            share = f"{c.consensus:.0%} of the weight"
            if self.by_confidence:
                same = bool(v.members) and c.members[0] in v.members
                majority = "the majority's too" if same else "the majority's"
                line = f"{c.answer} by confidence ({share}); {majority}: {line}"
            elif v.members and c.members[0] in v.members:
                line += f"; by confidence too ({share})"
            else:
                line += f"; by confidence: {c.answer} ({share})"
        if self.early_stop is not None:
            line += "; " + self.early_stop.words()
        if v.timed_out:
            line += f" ({v.timed_out} comparison{'s' if v.timed_out > 1 else ''} ran out of time)"
        return line

    def votes_json(self) -> dict[str, Any]:
        """The votes and the early stop as `ask -k --json` gives them (sample indexes, not
        positions)."""
        out: dict[str, Any] = {
            "vote": {
                "answer": self.vote.answer,
                "count": self.vote.count,
                "of": self.vote.of,
                "timed_out": self.vote.timed_out,
            },
            "vote_by": "confidence" if self.by_confidence else "majority",
            "confident_vote": None,
            "early_stop": self.early_stop.to_dict() if self.early_stop is not None else None,
        }
        c = self.confident
        if c is not None:
            index = [s.index for s in self.samples]
            out["confident_vote"] = {
                "answer": c.answer,
                "weight": c.weight,
                "consensus": c.consensus,
                "members": [index[p] for p in c.members],
                "kept": [index[p] for p in c.kept],
                "weighted": c.weighted,
            }
        return out


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
class SampleRetrying:
    """Sample `index` runs again from the start (`why`: "the server cancelled it"): what came
    of it so far is gone, and its events start again."""

    index: int
    why: str


@dataclass(frozen=True)
class SamplesDone:
    samples: Samples


SamplesEvent = SamplesStarted | SampleEvent | SampleFailed | SampleRetrying | SamplesDone


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
        self.retried: list[str] = [""] * k  # why it runs again

    def progress(self, p: SampleProgress) -> None:
        self.think[p.index] = p.thinking_tokens
        self.answer[p.index] = p.answer_tokens
        if p.kind == "answer":
            self.tail[p.index] = (self.tail[p.index] + p.text)[-60:]

    def retrying(self, index: int, why: str) -> None:
        """Sample `index` starts again: its figures from nothing."""
        self.think[index] = self.answer[index] = 0
        self.tail[index] = self.failed[index] = self.ended[index] = ""
        self.retried[index] = why

    def lines(self, indent: str = "") -> str:
        out = []
        for i, (t, a) in enumerate(zip(self.think, self.answer, strict=True)):
            if self.failed[i]:
                state = "failed: " + " ".join(sanitize(self.failed[i]).split())[:80]
            elif a:
                state = "answering: " + " ".join(sanitize(self.tail[i]).split())
            elif self.ended[i]:
                state = self.ended[i]
            elif self.retried[i]:
                state = "thinking… (run again)" if t else "run again: " + self.retried[i]
            else:
                state = "thinking…"
            out.append(f"{indent}sample {i + 1:>2}  {t:>6,} thinking tokens  {state}")
        return "\n".join(out)


def controls_for(engine: Engine, reasoning: ReasoningParams | None, k: int) -> list[Any]:
    """One ThinkingControl per sample (none for a model that does not think): each watches its
    own thinking, and answer now reaches every one of them."""
    if not engine.info.thinks:
        return [None] * k
    return [ThinkingControl(reasoning or ReasoningParams()) for _ in range(k)]


def voted(samples: list[Sample]) -> Vote:
    """The vote of the samples that did not fail and were not stopped early: the others
    neither vote nor count."""
    v = vote([s.boxed if s.votes else None for s in samples])
    return replace(v, of=sum(s.votes for s in samples))


def confidently_voted(samples: list[Sample], keep: float = KEEP) -> ConfidentVote:
    """DeepConf's vote of the samples that vote (see `voted`), each weighed by its lowest group
    confidence; the `keep` share most confident of them vote. Positions in `samples`."""
    return confident_vote(
        [s.boxed if s.votes else None for s in samples],
        [s.stats.confidence for s in samples],
        keep=keep,
        same=equivalent,
    )


class _Either(threading.Event):
    """What the engine watches for a stop: set by the early stop (`set`), or by the caller's
    own cancel, which others set and which this cannot be told of: `wait` looks at it every
    POLL_S (the remote engine waits on its cancel while a request is out)."""

    POLL_S = 0.05

    def __init__(self, user: threading.Event | None) -> None:
        super().__init__()
        self._user = user

    def is_set(self) -> bool:
        return super().is_set() or (self._user is not None and self._user.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        if self._user is None:
            return super().wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = (
                self.POLL_S if deadline is None else min(self.POLL_S, deadline - time.monotonic())
            )
            if left <= 0:
                return False
            super().wait(left)
        return True


class _Tally:
    """The finished samples' answers, grouped as the vote groups them: a new answer is compared
    with each group's first one (a comparison can take a while: math-verify), so a sample's end
    costs one comparison per distinct answer, not one per sample."""

    def __init__(self) -> None:
        self.answers: dict[int, str | None] = {}  # by sample index, in the order they ended
        self._heads: list[str] = []
        self._sizes: list[int] = []

    def add(self, i: int, answer: str | None) -> None:
        self.answers[i] = answer
        if answer is None or not answer.strip():
            return
        for g, head in enumerate(self._heads):
            if equivalent(head, answer):
                self._sizes[g] += 1
                return
        self._heads.append(answer)
        self._sizes.append(1)

    def drop(self, i: int) -> None:
        """Sample i's answer no longer counts (it runs again): the groups are made again."""
        if i not in self.answers:
            return
        rest = [(j, a) for j, a in self.answers.items() if j != i]
        self.answers, self._heads, self._sizes = {}, [], []
        for j, a in rest:
            self.add(j, a)

    @property
    def counts(self) -> list[int]:
        return list(self._sizes)


class SampleRun:
    """k replies to `question` after `history`; iterate it for SamplesEvents. `partial()` gives
    what came so far when the stream breaks off.

    `early`, `vote_by` and `keep` may be set until the run is iterated (`Conversation.
    ask_samples` hands the run to its caller first). With `early` on, each sample that ends
    (whatever its finish: its \\boxed{} answer is final) counts for its answer; one that ends
    without an answer counts for none. A sample that failed may still run again, so it is
    counted as one still to come, as are those not begun: the leader is stopped for only when
    no answer they could give would overtake it, and only while some sample is still to come.
    Then the majority of the finished samples is the majority all k would have given, whatever
    the stopped ones would have answered: the leader is strictly ahead, so no tie can form.
    (That holds so long as `equivalent` is transitive; the vote groups in sample order, the
    count here in the order samples end.)
    """

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
        early: EarlyRule = "off",
        vote_by: VoteBy = "majority",
        keep: float = KEEP,
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
        warm_up()  # a grading worker, ready by the time the first sample ends
        self.started = False
        self.failed: dict[int, str] = {}
        self._answer_now = False
        self.early = early
        self.vote_by = vote_by
        self.keep = keep
        self.stopped_early: str | None = None  # why, once the rest were stopped
        self._tally = _Tally()
        self._stop: _Either | None = None

    def answer_now(self) -> None:
        self._answer_now = True
        for c in self.controls:
            if c is not None:
                c.answer_now()

    def _events(self) -> Iterator[ManyEvent]:
        engine = self.engine
        cancel: threading.Event | None = self.cancel
        if self.early != "off":
            cancel = self._stop = _Either(self.cancel)
        if isinstance(engine, DecodesTogether):
            return engine.stream_many(
                self.messages, self.params, self.k, cancel, self.controls, self.ctx_tokens
            )
        return one_at_a_time(engine, self.messages, self.params, self.k, cancel, self.controls)

    def __iter__(self) -> Iterator[SamplesEvent]:
        recorders = self.recorders
        for i, ev in self._events():
            if isinstance(ev, BatchDone):
                self.stats = ev.stats
                continue
            if isinstance(ev, Failed):
                self.failed[i] = ev.message
                self._tally.drop(i)
                yield SampleFailed(i, ev.message)
                continue
            if isinstance(ev, Retrying):
                self._retry(i)
                yield SampleRetrying(i, ev.why)
                continue
            told = recorders[i].feed(ev)
            if isinstance(ev, Done):
                # Before the Done goes on: the engine looks at its cancel once the Dones of a
                # step are taken, and stops the rest then.
                self._ended(i)
            for tev in told:
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

    def _ended(self, i: int) -> None:
        """Sample i ended: count its answer, and stop the rest when the rule says they cannot
        matter (or hardly can: "beta")."""
        stop = self._stop
        if stop is None or i in self.failed:
            return
        result = self.recorders[i].result
        if stop.is_set():
            # Ended after the stop: stopped by it (early, or by the user), or ended by itself in
            # the step the rule was met in, which votes.
            if self.stopped_early is not None and result.finish_reason != STOPPED:
                self._tally.add(i, extract(result.answer))
            return
        self._tally.add(i, extract(result.answer))
        to_come = self.k - len(self._tally.answers)  # failed ones may run again
        if to_come - len(self.failed) <= 0:
            return  # nothing is running or waiting: nothing to stop
        why = why_stop(self._tally.counts, to_come, beta=self.early == "beta")
        if why is not None:
            self.stopped_early = why
            stop.set()

    def _retry(self, i: int) -> None:
        """Sample i from nothing: a new recorder, and a new control (its thinking so far is
        gone, so are the tokens its budget counted), which the engine reads when the retry
        begins; answer now, once asked, holds for it too. Its answer, if any, counts no more."""
        self.failed.pop(i, None)
        self._tally.drop(i)
        old = self.controls[i]
        if old is not None:
            fresh = ThinkingControl(old.params)
            if self._answer_now:
                fresh.answer_now()
            self.controls[i] = fresh
        self.recorders[i] = TurnRecorder(self.question, self.engine.info.name, self.controls[i])

    def partial(self) -> Samples:
        """Every sample that began, as far as it came (unfinished ones marked stopped, or
        "stopped early" when the early stop came first; failed ones marked "error"); failed
        samples and those stopped early do not vote. A sample stopped early before any of its
        text came is left out: there is nothing of it to keep."""
        early = self.stopped_early is not None
        samples = []
        for i, r in enumerate(self.recorders):
            if not r.started:
                continue
            sample = Sample.of(i, r.partial())
            if i in self.failed:
                sample.finish_reason, sample.error = "error", self.failed[i]
            elif early and i not in self._tally.answers:
                if not (sample.thinking or sample.answer):
                    continue
                sample.finish_reason = sample.stats.finish_reason = STOPPED_EARLY
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
            confident=confidently_voted(samples, self.keep) if samples else None,
            vote_by=self.vote_by,
            early_stop=self._early_stop(samples),
        )

    def _early_stop(self, samples: list[Sample]) -> EarlyStop | None:
        """What stopping early did; None when it did not stop or nothing was left to stop (the
        samples still running all ended in the step the rule was met in)."""
        if self.stopped_early is None:
            return None
        ended = self._tally.answers
        stopped = [i for i in range(self.k) if i not in ended and i not in self.failed]
        if not stopped:
            return None
        written = {s.index: s.completion_tokens for s in samples}
        finished = [written[i] for i in ended if i in written]
        # Said again with the counts at the end: samples that ended in the step the rule was
        # met in voted too. It holds still for "overtaken" (a vote more for the runner-up is
        # a sample fewer to come); the Beta rule may no longer, and then it is said as met.
        why = why_stop(self._tally.counts, len(stopped), beta=self.early == "beta")
        return EarlyStop(
            why or self.stopped_early,
            len(stopped),
            self.stats.completion_tokens,
            estimated_saving(finished, [written.get(i, 0) for i in stopped]),
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
    early: EarlyRule = "off",
    vote_by: VoteBy = "majority",
    keep: float = KEEP,
) -> Samples:
    """k samples of the reply to `messages` and their votes, saved nowhere (`eval`, `bench`)."""
    run = SampleRun(
        engine,
        messages[:-1],
        messages[-1].content,
        params,
        k,
        cancel=cancel,
        reasoning=reasoning,
        ctx_tokens=ctx_tokens,
        early=early,
        vote_by=vote_by,
        keep=keep,
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
