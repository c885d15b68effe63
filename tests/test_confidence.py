"""DeepConf's confidences and vote, and the stopping rules (r1chat.confidence), against the
figures of the research notes' reference implementation (research/grading/tools/stopping_ref.py:
its printed tables, copied here) and against the formulas written out plainly."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from r1chat.confidence import (
    ConfidenceOptions,
    TraceConfidence,
    beta_probability,
    beta_rule_met,
    cannot_be_overtaken,
    confident_vote,
    estimated_saving,
    groups,
    kept_by_confidence,
    logprob_confidence,
    lowest_group,
    percentile,
    token_confidence,
    why_stop,
)

# stopping_ref.py's table: for each runner-up count b, the least leader count a that stops
# Adaptive-Consistency's Beta rule at 0.95, and P there.
BETA_TABLE = [
    (0, 4, 0.9688),
    (1, 6, 0.9648),
    (2, 8, 0.9673),
    (3, 9, 0.9539),
    (4, 11, 0.9616),
    (5, 12, 0.9519),
    (6, 14, 0.9608),
    (7, 15, 0.9534),
]


@pytest.mark.parametrize(("b", "a", "p"), BETA_TABLE)
def test_the_beta_rule_stops_where_the_reference_does(b: int, a: int, p: float) -> None:
    assert beta_probability(a, b) == pytest.approx(p, abs=5e-5)
    assert beta_rule_met([a, b]) and not beta_rule_met([a - 1, b])


def test_three_unanimous_votes_do_not_stop_the_beta_rule() -> None:
    assert beta_probability(3, 0) == 0.9375 and not beta_rule_met([3])
    assert beta_rule_met([4]) and beta_rule_met([4, 0, 0])


@pytest.mark.parametrize(("a", "b"), [(0, 0), (1, 0), (3, 2), (6, 1), (9, 4), (20, 17)])
def test_the_closed_form_is_the_beta_integral(a: int, b: int) -> None:
    # P(X > 1/2) for X ~ Beta(a + 1, b + 1), by Simpson's rule, as Adaptive-Consistency
    # integrates it.
    n = 2000
    xs = [i / n for i in range(n + 1)]
    f = [x**a * (1 - x) ** b for x in xs]

    def simpson(lo: int, hi: int) -> float:
        h = 1 / n
        inner = sum((4 if (i - lo) % 2 else 2) * f[i] for i in range(lo + 1, hi))
        return h / 3 * (f[lo] + inner + f[hi])

    assert beta_probability(a, b) == pytest.approx(simpson(n // 2, n) / simpson(0, n), abs=1e-9)


def test_the_reference_toy_trace() -> None:
    # stopping_ref.py: "DeepConf toy trace: lowest group 0.9609 ... tail 0.9609".
    confs = [1.0] * 3000 + [0.2] * 100 + [1.0] * 100
    trace = TraceConfidence()
    for c in confs:
        trace.add(c)
    assert round(trace.lowest or 0, 4) == 0.9609 and round(trace.tail or 0, 4) == 0.9609
    assert trace.mean == pytest.approx(3120 / 3200)


def plain_groups(confs: list[float], window: int) -> list[float]:
    """Every window's mean, written out: one group (the mean) when the trace is shorter."""
    if len(confs) < window:
        return [sum(confs) / len(confs)]
    return [sum(confs[i : i + window]) / window for i in range(len(confs) - window + 1)]


@pytest.mark.parametrize("window", [1, 3, 16, 50])
def test_the_running_trace_is_the_plain_definition(window: int) -> None:
    rng = random.Random(window)
    for length in (1, window - 1, window, window + 1, 200):
        if length < 1:
            continue
        confs = [rng.uniform(0, 20) for _ in range(length)]
        trace = TraceConfidence(window)
        for c in confs:
            trace.add(c)
        assert trace.lowest == pytest.approx(min(plain_groups(confs, window)))
        assert trace.mean == pytest.approx(sum(confs) / length)
        assert trace.tail == pytest.approx(sum(confs[-window:]) / len(confs[-window:]))
        assert lowest_group(confs, window) == trace.lowest


def test_an_empty_trace_has_no_confidence() -> None:
    trace = TraceConfidence(4)
    assert (trace.lowest, trace.mean, trace.tail) == (None, None, None)
    with pytest.raises(ValueError):
        TraceConfidence(0)
    with pytest.raises(ValueError):
        ConfidenceOptions(top=0)


def log_softmax(logits: list[float]) -> list[float]:
    z = math.log(sum(math.exp(x) for x in logits))
    return [x - z for x in logits]


def test_token_confidence_is_the_mean_negative_logprob_of_the_top_candidates() -> None:
    rng = random.Random(7)
    for _ in range(20):
        logits = [rng.gauss(0, 3) for _ in range(40)]
        logprobs = sorted(log_softmax(logits), reverse=True)
        want = -sum(logprobs[:20]) / 20
        assert token_confidence(logits) == pytest.approx(want)
        # What a server sends (top_logprobs, most likely first) gives the same.
        assert logprob_confidence(logprobs) == pytest.approx(want)
        ranked = sorted(logits, reverse=True)
        assert token_confidence(ranked, descending=True) == pytest.approx(want)
        assert token_confidence(logits, top=5) == pytest.approx(-sum(logprobs[:5]) / 5)


def test_a_peaked_distribution_is_more_confident_than_a_flat_one() -> None:
    # The branching test model's two kinds of step: one candidate at 20, the rest at 0; three
    # at 12.
    peaked = token_confidence([20.0] + [0.0] * 39)
    flat = token_confidence([12.0] * 3 + [0.0] * 37)
    assert peaked == pytest.approx(19.0, abs=1e-6) and flat == pytest.approx(11.2986, abs=1e-4)
    # Fewer candidates than the top asked for: the mean is over those there are.
    assert token_confidence([0.0, 0.0]) == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        token_confidence([])


def test_percentile_is_numpys() -> None:
    rng = random.Random(3)
    for n in (1, 2, 7, 8, 33):
        values = [rng.uniform(-5, 5) for _ in range(n)]
        for q in (0, 10, 37.5, 50, 90, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_keeping_the_most_confident_share() -> None:
    scores = [float(x) for x in range(1, 11)]
    # DeepConf-low keeps the top 10 %: confidence >= the 90th percentile (9.1).
    assert kept_by_confidence(scores, 0.1) == [9]
    # DeepConf-high drops the bottom 10 %: >= the 10th percentile (1.9).
    assert kept_by_confidence(scores, 0.9) == list(range(1, 10))
    assert kept_by_confidence(scores, 1.0) == list(range(10))
    # Equal ones at the line are all kept.
    assert kept_by_confidence([5.0, 5.0, 5.0, 1.0], 0.1) == [0, 1, 2]
    with pytest.raises(ValueError):
        kept_by_confidence(scores, 0)


def test_the_reference_weighted_vote() -> None:
    # stopping_ref.py: weighted vote: ('109', {'109': 17.0, '103': 8.0}).
    v = confident_vote(["109", "103", "103"], [17.0, 4.0, 4.0], keep=1.0)
    assert (v.answer, v.weight, v.total, v.members) == ("109", 17.0, 25.0, (0,))
    assert v.weighted and v.consensus == pytest.approx(0.68)
    # The plain majority of the same answers is the other one.
    assert confident_vote(["109", "103", "103"], [None] * 3).answer == "103"


def test_filtering_drops_the_unsure_before_weighing() -> None:
    answers = ["5", "5", "5", "5", "4", "4"]
    confs = [10.0, 10.0, 10.0, 10.0, 18.0, 18.0]
    # Weighed alone, the four unsure ones still carry it: 40 against 36.
    assert confident_vote(answers, confs, keep=1.0).weight == 40.0
    v = confident_vote(answers, confs, keep=0.1)
    assert (v.answer, v.kept, v.members, v.weight) == ("4", (4, 5), (4, 5), 36.0)


def test_votes_without_confidence_are_a_plain_majority() -> None:
    # A server that sent no log-probabilities for one sample: nothing can be weighed.
    v = confident_vote(["4", "5", "5", None], [20.0, None, 1.0, None], keep=0.1)
    assert (v.answer, v.weight, v.weighted, v.kept) == ("5", 2.0, False, (0, 1, 2))


def test_what_does_not_vote() -> None:
    v = confident_vote([None, " ", ""], [1.0, 2.0, 3.0])
    assert (v.answer, v.members, v.kept, v.total) == (None, (), (), 0.0)
    # A tie goes to the group whose first member came first.
    assert confident_vote(["6", "4", "4", "6"], [1.0] * 4, keep=1.0).answer == "6"
    with pytest.raises(ValueError):
        confident_vote(["4"], [])


def test_groups_follow_the_answers_rule() -> None:
    def same(a: str, b: str) -> bool:
        return a.replace(" ", "") == b.replace(" ", "")

    assert groups(["1/2", "0.5", "1 / 2", None, "0.5"], same) == [[0, 2], [1, 4]]
    v = confident_vote(["1/2", "0.5", "1 / 2"], [1.0, 5.0, 1.0], keep=1.0, same=same)
    assert (v.answer, v.members) == ("0.5", (1,))


def test_cannot_be_overtaken() -> None:
    assert cannot_be_overtaken([5], 4) and not cannot_be_overtaken([4], 4)  # 4-4 is a tie
    assert cannot_be_overtaken([1, 5], 3) and not cannot_be_overtaken([5, 1], 4)
    assert cannot_be_overtaken([3, 1, 1], 0) and not cannot_be_overtaken([], 0)
    # Weighted: each running sample carries at most 19.
    assert cannot_be_overtaken([60.0, 15.0], 2 * 19.0) and not cannot_be_overtaken([50.0, 15.0], 38)


def test_why_stop_says_which_rule() -> None:
    assert why_stop([5, 0], 3) == "the leading answer (5 to 0) cannot be overtaken by the 3 running"
    assert why_stop([4], 4) is None
    assert why_stop([4], 4, beta=True) == (
        "the leading answer (4 to 0) is the more likely one with P = 0.969"
    )
    assert why_stop([5], 0) is None  # nothing left to stop
    assert why_stop([], 3, beta=True) is None


def test_estimated_saving() -> None:
    assert estimated_saving([100, 200], [20, 180]) == 130 + 0
    assert estimated_saving([], [5]) == 0
