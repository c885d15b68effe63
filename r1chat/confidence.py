"""How sure the model was of a reply, and when k samples have said enough.

Majority voting (self-consistency) counts every sample alike. DeepConf (Fu, Wang, Tian, Zhao 2025,
arXiv:2508.15260) weighs them by the model's own confidence, read off the next-token
distributions while it writes: a reply written from peaked distributions is more often right than
one written from flat ones, and the least confident stretch of a reply says more than its average.

* Token confidence `C_i = -(1/k) * sum_j log P_i(j)` over the k most likely candidates at
  position i (k = 20, as DeepConf's code asks vLLM for `logprobs=20`): large when one candidate
  holds nearly all the mass.
* Group confidence: the mean of `C_i` over a sliding window of 2,048 tokens, stride 1; a reply's
  confidence is its lowest group confidence (one group, its mean, when it is shorter than that).
* Offline vote: keep the `keep` fraction of replies with the highest confidence, and weigh each
  kept reply's answer by its confidence.

Stopping early saves the tokens of the samples still running once their answers cannot matter:
the leader cannot be overtaken, or (Adaptive-Consistency, Aggarwal et al., EMNLP 2023,
arXiv:2305.11860) the odds that the leader really is the more likely answer pass 95 %.

Pure: numbers in, numbers out. The engines feed it (r1chat.engines.llama reads the candidates
its sampler already holds; a server sends `top_logprobs`).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# DeepConf's defaults (facebookresearch/deepconf): confidence over the top 20 candidates, groups
# of 2,048 tokens.
TOP = 20
WINDOW = 2048
# The share of replies kept by confidence before the weighted vote: DeepConf-high (90 %), the
# conservative setting; DeepConf-low (10 %) filters harder and is better only with many samples.
KEEP = 0.9
# Adaptive-Consistency's default: stop once P(leader is the more likely answer) >= 0.95.
BETA_THRESHOLD = 0.95


@dataclass(frozen=True)
class ConfidenceOptions:
    """What a decoder measures: the candidates each token's confidence is the mean over, and the
    window of the group confidence."""

    top: int = TOP
    window: int = WINDOW

    def __post_init__(self) -> None:
        if self.top < 1 or self.window < 1:
            raise ValueError("top and window must be at least 1")


def token_confidence(logits: Sequence[float], top: int = TOP, *, descending: bool = False) -> float:
    """DeepConf's token confidence from the raw logits of the candidates a sampler holds.

    The log-probabilities are normalised over the candidates given, not the whole vocabulary (a
    sampler after a top-k cut holds 40 of 152k): each log P is too high by the log of the mass the
    candidates hold, so the confidence comes out lower than DeepConf's by `-log(mass)`: 0.01 when
    the 40 candidates hold 99 % of the mass, 0.1 at 90 %. Reasoning models put nearly all the
    mass in their top 40, and every reply is measured the same way, which is what a vote between
    replies needs. `descending`: the logits are already sorted, largest first (llama.cpp's top-k
    leaves them so), which saves a sort.
    """
    n = len(logits)
    if n == 0:
        raise ValueError("no candidates")
    ranked = logits if descending else sorted(logits, reverse=True)
    high = ranked[0]
    log_z = high + math.log(sum(math.exp(x - high) for x in ranked))
    m = min(top, n)
    return log_z - math.fsum(ranked[:m]) / m


def logprob_confidence(logprobs: Sequence[float], top: int = TOP) -> float:
    """Token confidence from a server's `top_logprobs` (natural logs, most likely first)."""
    vals = logprobs[:top]
    if not vals:
        raise ValueError("no log-probabilities")
    return -math.fsum(vals) / len(vals)


class TraceConfidence:
    """A reply's confidence, token by token: the running minimum of the sliding-window mean
    (stride 1), the mean and the tail (the mean of the last `window` tokens). O(1) per token."""

    __slots__ = ("_last", "_lowest", "_sum", "_total", "n", "window")

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.n = 0
        self._last: deque[float] = deque()
        self._sum = 0.0  # of the last `window` confidences
        self._total = 0.0
        self._lowest = math.inf  # over the full windows so far

    def add(self, conf: float) -> None:
        self.n += 1
        self._total += conf
        self._sum += conf
        last = self._last
        last.append(conf)
        if len(last) > self.window:
            self._sum -= last.popleft()
        if len(last) == self.window:
            group = self._sum / self.window
            if group < self._lowest:
                self._lowest = group

    @property
    def lowest(self) -> float | None:
        """The lowest group confidence (DeepConf's C_least); a reply shorter than the window is
        one group, its mean. None before any token."""
        if self.n < self.window:
            return self.mean
        return self._lowest

    @property
    def mean(self) -> float | None:
        return self._total / self.n if self.n else None

    @property
    def tail(self) -> float | None:
        """The mean over the last `window` tokens (DeepConf's tail confidence)."""
        return self._sum / len(self._last) if self._last else None


def lowest_group(confidences: Sequence[float], window: int = WINDOW) -> float | None:
    """The lowest group confidence of a whole reply's token confidences."""
    trace = TraceConfidence(window)
    for c in confidences:
        trace.add(c)
    return trace.lowest


# --- voting -------------------------------------------------------------------------------------


def groups(
    answers: Sequence[str | None], same: Callable[[str, str], bool] = operator.eq
) -> list[list[int]]:
    """Indices of the answers grouped by `same`, in order of their first member; None and blank
    answers join no group. Each answer joins the first group whose first member it is the same
    as (r1chat.answers.vote's rule, so a weighted vote and the plain one group alike)."""
    out: list[list[int]] = []
    heads: list[str] = []
    for i, answer in enumerate(answers):
        if answer is None or not answer.strip():
            continue
        for group, head in zip(out, heads, strict=True):
            if same(head, answer):
                group.append(i)
                break
        else:
            out.append([i])
            heads.append(answer)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """`numpy.percentile(values, q)` with its default linear interpolation (DeepConf's own)."""
    v = sorted(values)
    if not v:
        raise ValueError("no values")
    pos = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def kept_by_confidence(confidences: Sequence[float], keep: float = KEEP) -> list[int]:
    """Indices of the most confident `keep` share (DeepConf: at least the percentile 100*(1-keep)
    of them; equal ones at the line are all kept)."""
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1]")
    if not confidences:
        return []
    line = percentile(confidences, 100.0 * (1.0 - keep))
    return [i for i, c in enumerate(confidences) if c >= line]


@dataclass(frozen=True)
class ConfidentVote:
    """The outcome of a confidence-weighted vote."""

    answer: str | None  # the winning answer as its first kept member wrote it; None: no answer
    weight: float  # the winner's summed confidence (its count when not weighted)
    total: float  # every kept answer's weight together
    members: tuple[int, ...]  # indices of the kept samples that gave the winning answer
    kept: tuple[int, ...]  # indices of the samples that voted (answered and were kept)
    weighted: bool  # False: some answered sample had no confidence, so it is a plain majority

    @property
    def consensus(self) -> float:
        """DeepConf's beta: the winner's share of the weight (the paper stops sampling at 0.95)."""
        return self.weight / self.total if self.total else 0.0


def confident_vote(
    answers: Sequence[str | None],
    confidences: Sequence[float | None],
    *,
    keep: float = KEEP,
    same: Callable[[str, str], bool] = operator.eq,
) -> ConfidentVote:
    """DeepConf's offline vote: of the samples with an answer, keep the most confident `keep`
    share and weigh each one's answer by its confidence; the heaviest group wins (ties go to the
    group whose first member came first).

    A sample without a confidence (a server that sent no log-probabilities) cannot be weighed
    against the others: then every answered sample counts 1, none is filtered, and `weighted`
    is False.
    """
    if len(answers) != len(confidences):
        raise ValueError("one confidence per answer")
    answered = [i for i, a in enumerate(answers) if a is not None and a.strip()]
    scores = [confidences[i] for i in answered]
    weighted = all(c is not None for c in scores)
    if weighted and answered:
        kept = [answered[j] for j in kept_by_confidence([c or 0.0 for c in scores], keep)]
    else:
        kept = answered
    weight = {i: (confidences[i] or 0.0) if weighted else 1.0 for i in kept}
    voting = [a if i in weight else None for i, a in enumerate(answers)]
    grouped = groups(voting, same)
    total = math.fsum(weight.values())
    if not grouped:
        return ConfidentVote(None, 0.0, total, (), tuple(kept), weighted)
    sums = [math.fsum(weight[i] for i in g) for g in grouped]
    best = max(range(len(grouped)), key=sums.__getitem__)  # the first of equals
    win = grouped[best]
    return ConfidentVote(answers[win[0]], sums[best], total, tuple(win), tuple(kept), weighted)


# --- stopping early -----------------------------------------------------------------------------


def cannot_be_overtaken(totals: Sequence[float], still_to_come: float) -> bool:
    """Whether the leading group's total is out of reach: it beats the runner-up even if every
    sample still running joins the runner-up. `totals`: each answer group's votes (a count, or
    summed weights); `still_to_come`: the most the running samples can add (their number, or
    number times the largest weight one can carry). Strictly ahead: a tie could still go either
    way."""
    if not totals:
        return False
    ranked = sorted(totals, reverse=True)
    runner_up = ranked[1] if len(ranked) > 1 else 0.0
    return ranked[0] > runner_up + still_to_come


def beta_probability(a: int, b: int) -> float:
    """P(the leader's answer is the more likely one) after `a` votes for it and `b` for the
    runner-up, under a uniform prior: P(X > 1/2) for X ~ Beta(a + 1, b + 1). For whole counts
    that is P(Binomial(a + b + 1, 1/2) <= a), exactly (Adaptive-Consistency integrates it
    numerically)."""
    if a < 0 or b < 0:
        raise ValueError("counts cannot be negative")
    n = a + b + 1
    return math.fsum(math.comb(n, i) for i in range(a + 1)) / 2**n


def beta_rule_met(counts: Sequence[int], threshold: float = BETA_THRESHOLD) -> bool:
    """Adaptive-Consistency's Beta stopping rule on each answer group's count: 4 unanimous votes
    stop it (P = 0.969), so do 6 to 1 and 8 to 2; 3 unanimous do not (0.9375)."""
    if not counts:
        return False
    ranked = sorted(counts, reverse=True)
    b = ranked[1] if len(ranked) > 1 else 0
    return beta_probability(ranked[0], b) >= threshold


def why_stop(counts: Sequence[int], running: int, *, beta: bool = False) -> str | None:
    """Why the running samples can stop now, in a few words, or None. `counts`: each answer
    group's votes among the finished samples, leader first or not; `running`: samples still
    decoding. Without `beta`, only when the leader cannot be overtaken (the vote's outcome is
    then what it would be had they all finished); with it, also once Adaptive-Consistency's
    rule is met (the outcome is then very likely the same)."""
    if running <= 0 or not counts:
        return None
    ranked = sorted(counts, reverse=True)
    lead = ranked[0]
    second = ranked[1] if len(ranked) > 1 else 0
    if cannot_be_overtaken(ranked, running):
        return (
            f"the leading answer ({lead} to {second}) cannot be overtaken by the {running} running"
        )
    if beta and beta_rule_met(ranked):
        p = beta_probability(lead, second)
        return f"the leading answer ({lead} to {second}) is the more likely one with P = {p:.3f}"
    return None


def estimated_saving(finished: Sequence[int], stopped: Sequence[int]) -> int:
    """A floor on the tokens stopping saved: each stopped sample is taken to run to the finished
    ones' mean length, of which it had written `stopped[i]` (a sample not begun: 0). One stopped
    past that mean counts nothing, though it would have written more: what a stopped sample would
    really have written is unknown."""
    if not finished:
        return 0
    mean = math.fsum(finished) / len(finished)
    return round(math.fsum(max(0.0, mean - n) for n in stopped))
