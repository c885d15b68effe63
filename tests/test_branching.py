"""Votes, confidence and early stopping on real llama.cpp, with a model whose answers are random
with known odds (tests/tiny_models.py, `branching`): 4, 5 or 6 with odds 0.6, 0.3 and 0.1 at the
default sampling, thinking surely before 4 and unsurely before 5 and 6.

Everything asserted is computed in advance from those odds and the model's logits: the share of
each answer, every token's confidence, how often the plain majority and DeepConf's vote of 8
samples pick 4, and where a stopping rule stops. The samples are decoded once, 64 at a time in
one batch (the path `ask -k` takes); fixed seeds make the run repeatable, and the bounds are
99.9 % ones, so that the figures would hold for other seeds too.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from tiny_models import (
    BRANCH_QUESTION,
    FLAT_LOGIT,
    PEAK_LOGIT,
    UNSURE_STEPS,
    branch_logits,
    branch_odds,
)

from r1chat.confidence import ConfidenceOptions, confident_vote, token_confidence, why_stop
from r1chat.engines.base import Done, Stats, Token
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.prompts import ChatMessage
from r1chat.reasoning import extract_boxed, split_reasoning
from r1chat.sampling import SamplingParams

QUESTION = [ChatMessage("user", BRANCH_QUESTION)]
# The default sampling (temperature 0.6, top-p 0.95, top-k 40); the longest reply is 20 tokens.
PARAMS = SamplingParams(max_tokens=24)
SEED = 1000
BATCH = 64
SAMPLES = 4 * BATCH
K = 8  # samples per vote
Z = 3.2905267314919255  # two-sided 99.9 % normal quantile


@dataclass
class Drawn:
    text: str = ""
    confs: list[float | None] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    @property
    def answer(self) -> str | None:
        return extract_boxed(split_reasoning(self.text, in_think=True)[1])


def decode(
    engine: LlamaEngine,
    seed: int,
    k: int,
    on_done: Callable[[int, list[Drawn]], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[Drawn]:
    """k samples with seeds seed..seed+k-1 (sample i's is seed + i), decoded together."""
    drawn = [Drawn() for _ in range(k)]
    for i, ev in engine.stream_many(QUESTION, replace(PARAMS, seed=seed), k, cancel):
        if isinstance(ev, Token):
            drawn[i].text += ev.text
            drawn[i].confs.append(ev.conf)
        elif isinstance(ev, Done):
            drawn[i].stats = ev.stats
            if on_done is not None:
                on_done(i, drawn)
    return drawn


@pytest.fixture(scope="module")
def engine(branching_model: Path) -> Iterator[LlamaEngine]:
    # One thread: on a busy 2-core machine two wait on each other at every graph node.
    eng = LlamaEngine(branching_model, LoadOptions(n_ctx=256, n_threads=1))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def drawn(engine: LlamaEngine) -> list[Drawn]:
    """SAMPLES samples, seeds SEED..: group g of K holds the seeds `decode(SEED + K * g, K)`
    gives."""
    out: list[Drawn] = []
    for b in range(SAMPLES // BATCH):
        out += decode(engine, SEED + b * BATCH, BATCH)
    return out


def within(count: float, n: int, mean: float, var: float) -> bool:
    """Whether `count` is within the 99.9 % normal bound of n draws of a variable with `mean`
    and `var`."""
    return abs(count - n * mean) <= Z * math.sqrt(n * var) + 1e-9


def test_answers_come_with_the_known_odds(drawn: list[Drawn]) -> None:
    assert all(d.stats.finish_reason == "stop" for d in drawn)
    counts = Counter(d.answer for d in drawn)
    odds = branch_odds()
    assert set(counts) <= set(odds)
    for digit, p in odds.items():
        assert within(counts[digit], SAMPLES, p, p * (1 - p)), (digit, counts)


def test_each_token_carries_the_confidence_of_its_distribution(drawn: list[Drawn]) -> None:
    """Read off the sampler's top-k candidates, each token's confidence is DeepConf's formula on
    the logits the model was built with: peaked steps, the branch, the flat steps."""
    others = [0.0] * 40
    peaked = token_confidence([PEAK_LOGIT, *others[:39]])
    flat = token_confidence([FLAT_LOGIT] * 3 + others[:37])
    branch = token_confidence([*branch_logits().values(), *others[:37]])
    for d in drawn:
        confs = [c for c in d.confs if c is not None]
        assert len(confs) == len(d.confs)
        assert confs[4] == pytest.approx(branch, abs=1e-3)  # "Two plus two is" <word>
        rest = confs[:4] + confs[5:]
        unsure = sum(c == pytest.approx(flat, abs=1e-3) for c in rest)
        assert unsure == (0 if d.answer == "4" else len(UNSURE_STEPS))
        # The digit's logit is recalled through attention: float16 leaves it at 19.998.
        assert sum(c == pytest.approx(peaked, abs=0.01) for c in rest) == len(rest) - unsure
        # Shorter than the window: one group, the mean (the end of generation's included).
        assert d.stats.confidence == d.stats.confidence_mean == d.stats.confidence_tail
        assert d.stats.confidence == pytest.approx((sum(confs) + peaked) / (len(confs) + 1))


def test_the_sure_answer_is_the_confident_one(drawn: list[Drawn]) -> None:
    sure = [d.stats.confidence or 0 for d in drawn if d.answer == "4"]
    unsure = [d.stats.confidence or 0 for d in drawn if d.answer != "4"]
    assert sure and unsure and min(sure) > max(unsure)


def test_measuring_changes_nothing_that_is_sampled(engine: LlamaEngine) -> None:
    """The stage only reads the candidates: with the same seeds, the same replies without it."""
    measured = decode(engine, SEED, K)
    engine.confidence = None
    try:
        plain = decode(engine, SEED, K)
    finally:
        engine.confidence = ConfidenceOptions()
    assert [d.text for d in plain] == [d.text for d in measured]
    assert all(c is None for d in plain for c in d.confs)
    assert all(d.stats.confidence is None for d in plain)


def test_greedy_decoding_is_measured_too(engine: LlamaEngine, drawn: list[Drawn]) -> None:
    """At temperature 0 the chain is top-k, the stage, then the greedy pick: the most likely
    branch, with the confidence a sampled reply of that branch has."""
    got = Drawn()
    for ev in engine.stream_tokens(engine.prompt_tokens(QUESTION), replace(PARAMS, temperature=0)):
        if isinstance(ev, Token):
            got.text += ev.text
            got.confs.append(ev.conf)
        elif isinstance(ev, Done):
            got.stats = ev.stats
    sure = next(d for d in drawn if d.answer == "4")
    assert (got.text, got.confs) == (sure.text, sure.confs)
    assert got.stats.confidence == sure.stats.confidence


def vote_odds(
    odds: dict[str, float],
    conf: dict[str, float],
    pick: Callable[[tuple[str, ...], list[float]], bool],
) -> float:
    """P(pick(answers, confidences)) over every ordered outcome of K samples."""
    return math.fsum(
        math.prod(odds[a] for a in outcome) * pick(outcome, [conf[a] for a in outcome])
        for outcome in itertools.product(odds, repeat=K)
    )


def majority(answers: tuple[str | None, ...], _confs: list[float]) -> bool:
    return confident_vote(answers, [None] * len(answers)).answer == "4"


def deepconf(keep: float) -> Callable[[tuple[str | None, ...], list[float]], bool]:
    def pick(answers: tuple[str | None, ...], confs: list[float]) -> bool:
        return confident_vote(answers, list(confs), keep=keep).answer == "4"

    return pick


def test_deepconf_picks_the_sure_answer_more_often_than_the_majority(drawn: list[Drawn]) -> None:
    """Over the same samples, in groups of 8: DeepConf-low (keep the top 10 % by confidence,
    weigh by it) against the plain majority, each as often as computed in advance, and the first
    more often than the second; DeepConf-high (keep 90 %) as computed."""
    odds = branch_odds()
    conf: dict[str, float] = {}
    for d in drawn:
        assert d.answer is not None and conf.setdefault(d.answer, d.stats.confidence or 0) == (
            d.stats.confidence
        )
    low, high = deepconf(0.1), deepconf(0.9)
    p_majority, p_low, p_high = (vote_odds(odds, conf, f) for f in (majority, low, high))

    # The gain per group, low minus majority: -1, 0 or 1.
    def gains(g: int) -> Callable[[tuple[str | None, ...], list[float]], bool]:
        return lambda a, c: low(a, c) - majority(a, c) == g

    gain = {g: vote_odds(odds, conf, gains(g)) for g in (-1, 0, 1)}
    mean_gain = gain[1] - gain[-1]
    var_gain = gain[1] + gain[-1] - mean_gain**2
    assert p_majority == pytest.approx(0.811, abs=0.002) and p_low > 0.999  # at exact odds

    votes = [drawn[i : i + K] for i in range(0, SAMPLES, K)]
    n = len(votes)
    picked = Counter[str]()
    total_gain = 0
    for group in votes:
        answers = tuple(d.answer for d in group)
        confs = [d.stats.confidence or 0 for d in group]
        m, lo, hi = majority(answers, confs), low(answers, confs), high(answers, confs)
        picked.update(majority=m, low=lo, high=hi)
        total_gain += lo - m
    for name, p in (("majority", p_majority), ("low", p_low), ("high", p_high)):
        assert within(picked[name], n, p, p * (1 - p)), (name, picked, p)
    assert within(total_gain, n, mean_gain, var_gain), (total_gain, mean_gain)
    assert total_gain > 0


def predicted_stop(group: list[Drawn], beta: bool) -> tuple[int, set[int]] | None:
    """Where a stop rule checked after each Done stops a batch of `group`'s samples: the step
    (samples drawn per sequence) and the samples finished by then; None when it would not stop
    before all had finished. A sample of n tokens ends at step n + 1 (its end of generation);
    those ending at one step come in index order, and all of them before the stop."""
    ends = sorted(range(len(group)), key=lambda i: (group[i].stats.completion_tokens, i))
    counts = Counter[str | None]()
    for done, i in enumerate(ends, 1):
        counts[group[i].answer] += 1
        if why_stop(list(counts.values()), len(group) - done, beta=beta):
            step = group[i].stats.completion_tokens + 1
            finished = {j for j, d in enumerate(group) if d.stats.completion_tokens < step}
            return (step, finished) if len(finished) < len(group) else None
    return None


@pytest.mark.parametrize("beta", [False, True], ids=["cannot-be-overtaken", "beta"])
def test_stopping_where_it_was_computed_to(
    engine: LlamaEngine, drawn: list[Drawn], beta: bool
) -> None:
    """The first group of 8 whose full run says the rule stops early (for the Beta rule, where
    the leader could still be overtaken), run again with the rule stopping the rest through
    `cancel` as each sample's Done comes: it stops at that step, with fewer tokens, and with the
    vote of the full run where the leader could not be overtaken."""
    groups = [drawn[i : i + K] for i in range(0, SAMPLES, K)]
    g, (step, finished) = next(
        (g, stop)
        for g, group in enumerate(groups)
        if (stop := predicted_stop(group, beta)) and not (beta and predicted_stop(group, False))
    )
    full = groups[g]
    cancel = threading.Event()
    counts = Counter[str | None]()
    said: list[str] = []

    def on_done(i: int, got: list[Drawn]) -> None:
        if got[i].stats.finish_reason != "stop":
            return
        counts[got[i].answer] += 1
        running = K - sum(counts.values())
        why = why_stop(list(counts.values()), running, beta=beta)
        if why is not None and not cancel.is_set():
            said.append(why)
            cancel.set()

    got = decode(engine, SEED + K * g, K, on_done, cancel)
    assert len(said) == 1
    for i, d in enumerate(got):
        if i in finished:
            assert (d.stats.finish_reason, d.text) == ("stop", full[i].text)
        else:
            # Stopped at that step, one token a step, with that step's token kept.
            assert d.stats.finish_reason == "cancelled" and d.stats.completion_tokens == step
            assert full[i].text.startswith(d.text)
    kept = tuple(d.answer for d in got if d.stats.finish_reason == "stop")
    voted = confident_vote(kept, [None] * len(kept))
    whole = confident_vote(tuple(d.answer for d in full), [None] * K)
    if beta:
        assert "P = " in said[0] and voted.members == tuple(range(len(kept)))  # unanimous
    else:
        assert "cannot be overtaken" in said[0] and voted.answer == whole.answer
    assert sum(d.stats.completion_tokens for d in got) < sum(
        d.stats.completion_tokens for d in full
    )
