"""Stopping the samples still running once the vote is settled (r1chat.many.SampleRun's `early`).

First with scripted engines, where the order the samples end in is chosen: what is stopped, what
votes, what a failed or retried sample counts for, a stop of the user's, an engine that runs one
sample at a time. Then on real llama.cpp with the `branching` model (tests/tiny_models.py), whose
answers are 4, 5 or 6 with odds 0.6, 0.3 and 0.1 and whose "4" replies are the shorter ones:
in a batch of 8 the 4s end first, together, so the rule stops the rest exactly when 5 to 7 of the
8 are 4s ("overtaken"), or 4 to 7 ("beta"). That, the vote's outcome, the tokens spent and how
often each happens are known in advance from the odds and the replies' lengths, and asserted
(frequencies within 99.9 % bounds), through `ask_many` and through `ask -k` on the command line.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import run_cli
from tiny_models import BRANCH_QUESTION, branch_odds

from r1chat.commands.ask_many import StopEarly, VoteWith
from r1chat.confidence import confident_vote, estimated_saving
from r1chat.endings import STOPPED_EARLY
from r1chat.engines.base import (
    BatchDone,
    BatchStats,
    Done,
    Event,
    Failed,
    FinishReason,
    ManyEvent,
    Retrying,
    Started,
    Stats,
    Token,
)
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.engines.scripted import ScriptedEngine
from r1chat.history import HistoryStore
from r1chat.many import EARLY_RULES, VOTES_BY, EarlyRule, SampleRun, Samples, SamplesDone, ask_many
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ThinkingControl
from r1chat.sampling import SamplingParams

QUESTION = [ChatMessage("user", "2+2?")]


def reply(answer: str, words: int) -> str:
    """A reply that thinks `words` words (its length), then boxes `answer`."""
    return "hm " * words + f"\n</think>\n\n$\\boxed{{{answer}}}$"


def scripted(*replies: str) -> ScriptedEngine:
    """Sample i replies `replies[i]` (a batch asks for them in order); shorter ones end first."""
    it = iter(replies)
    return ScriptedEngine(lambda _m: next(it))


def test_the_command_line_s_choices_are_the_rules() -> None:
    assert tuple(StopEarly) == EARLY_RULES and tuple(VoteWith) == VOTES_BY


def test_the_rest_stop_once_the_leader_cannot_be_overtaken() -> None:
    """Three short 4s of five: the two long 5s cannot change the vote, so they stop; they keep
    their text, do not vote, and are not the user's stop. Without the rule they run to the end
    and the majority is the same."""
    replies = (reply("4", 1), reply("4.0", 2), reply("4", 2), reply("5", 9), reply("5", 12))
    whole = ask_many(scripted(*replies), QUESTION, SamplingParams(seed=1), 5)
    got = ask_many(scripted(*replies), QUESTION, SamplingParams(seed=1), 5, early="overtaken")
    assert whole.early_stop is None and whole.vote.count == 3 and whole.vote.of == 5
    assert [s.finish_reason for s in got.samples] == ["stop"] * 3 + [STOPPED_EARLY] * 2
    assert all(s.stats.finish_reason == STOPPED_EARLY for s in got.samples[3:])
    assert all(s.thinking and s.boxed is None for s in got.samples[3:])
    assert (
        (got.vote.answer, got.vote.count, got.vote.of)
        == ("4", 3, 3)
        == (
            whole.vote.answer,
            3,
            3,
        )
    )
    assert not got.stopped and got.no_answer() is None
    early = got.early_stop
    assert early is not None and early.stopped == 2
    assert early.why == "the leading answer (3 to 0) cannot be overtaken by the 2 running"
    assert early.tokens_spent == got.tokens_spent == got.stats.completion_tokens
    assert got.tokens_spent < whole.tokens_spent
    finished = [s.completion_tokens for s in got.samples[:3]]
    stopped = [s.completion_tokens for s in got.samples[3:]]
    assert got.tokens_saved == early.tokens_saved == estimated_saving(finished, stopped)
    saved = f", at least {early.tokens_saved:,} saved" if early.tokens_saved else ""
    assert got.agreement() == (
        "4, 3 of 3 samples agree; 2 stopped early: the leading answer (3 to 0) cannot be"
        f" overtaken by the 2 running ({early.tokens_spent:,} tokens spent{saved})"
    )
    assert got.votes_json()["early_stop"] == {
        "why": early.why,
        "stopped": 2,
        "tokens_spent": early.tokens_spent,
        "tokens_saved_estimate": early.tokens_saved,
    }


@pytest.mark.parametrize(
    "answers",
    [
        # 4, 5, 4 ended: 2 to 1 with one to come, which could tie it.
        ["4", "5", "4", "5"],
        # Two samples: the first alone can always be tied.
        ["4", "5"],
        # No answer yet is no leader.
        ["", "", "4"],
    ],
)
def test_a_leader_that_could_still_be_caught_lets_them_all_run(answers: list[str]) -> None:
    replies = [
        reply(a, n) if a else "hm " * n + "\n</think>\n\nNo idea." for n, a in enumerate(answers, 1)
    ]
    for rule in ("overtaken", "beta"):
        got = ask_many(
            scripted(*replies), QUESTION, SamplingParams(seed=1), len(answers), early=rule
        )
        assert got.early_stop is None
        assert all(s.finish_reason == "stop" for s in got.samples)
        assert got.vote.of == len(answers)


def test_beta_stops_sooner_and_says_how_sure_it_is() -> None:
    """Four 4s with four to come could still be tied, but P(4 is the likelier answer) = 0.969."""
    replies = [reply("4", 2)] * 4 + [reply("5", 9)] * 4
    overtaken = ask_many(scripted(*replies), QUESTION, SamplingParams(seed=1), 8, early="overtaken")
    beta = ask_many(scripted(*replies), QUESTION, SamplingParams(seed=1), 8, early="beta")
    assert overtaken.early_stop is None and overtaken.vote.answer == "4"
    assert beta.early_stop is not None and beta.early_stop.stopped == 4
    assert beta.early_stop.why == (
        "the leading answer (4 to 0) is the more likely one with P = 0.969"
    )
    assert (beta.vote.answer, beta.vote.count, beta.vote.of) == ("4", 4, 4)


class OneAtATime:
    """The scripted engine without `stream_many`: r1chat runs its samples one after another."""

    def __init__(self, inner: ScriptedEngine) -> None:
        self.inner = inner
        self.info = inner.info

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.inner.count_tokens(messages)

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        return self.inner.stream(messages, params, cancel, control)

    def close(self) -> None:
        pass


def test_one_at_a_time_the_samples_not_begun_are_not_run() -> None:
    inner = ScriptedEngine(reply("4", 4))
    got = ask_many(OneAtATime(inner), QUESTION, SamplingParams(seed=1), 5, early="overtaken")
    assert len(inner.requests) == 3 and [s.index for s in got.samples] == [0, 1, 2]
    early = got.early_stop
    assert early is not None and early.stopped == 2
    # Not begun, each would have written as much as a finished one (they are all alike here).
    assert early.tokens_saved == 2 * got.samples[0].completion_tokens
    assert got.agreement().startswith("4, 3 of 3 samples agree; 2 stopped early: ")


@dataclass
class Ends:
    """Sample `index` writes `text` and ends (`finish`) at step `step`."""

    index: int
    step: int
    text: str = ""
    finish: FinishReason = "stop"


class Steps(ScriptedEngine):
    """Plays a batch step by step: in each step the samples that end send their text and Done
    (in index order), then the `Failed` and `Retrying` events given for that step (a retried
    sample starts again: give it a later end); every other sample writes one word. Once
    `cancel` is set after a step, the unfinished ones end "cancelled", as llama.cpp's batch
    does. `user` is set after step `user_at`."""

    def __init__(
        self,
        k: int,
        ends: Sequence[Ends],
        extra: dict[int, list[tuple[int, Failed | Retrying]]] | None = None,
        user: threading.Event | None = None,
        user_at: int | None = None,
    ) -> None:
        super().__init__("", thinks=False)
        self.k, self.ends, self.extra = k, list(ends), extra or {}
        self.user, self.user_at = user, user_at

    def stream_many(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        k: int,
        cancel: threading.Event | None = None,
        controls: Sequence[ThinkingControl | None] | None = None,
        ctx_tokens: int | None = None,
    ) -> Iterator[ManyEvent]:
        assert k == self.k
        for i in range(k):
            yield i, Started(3)
        written = [0] * k
        live = set(range(k))
        last = max(e.step for e in self.ends)
        for step in range(1, last + 1):
            ending = {e.index: e for e in self.ends if e.step == step}
            for i in sorted(live):
                if i in ending:
                    continue
                written[i] += 1
                yield i, Token(1, "so ")
            for i, e in sorted(ending.items()):
                live.discard(i)
                written[i] += 1
                yield i, Token(1, e.text)
                yield i, Done(Stats(finish_reason=e.finish, completion_tokens=written[i]))
            for i, ev in self.extra.get(step, []):
                yield i, ev
                if isinstance(ev, Failed):
                    live.discard(i)
                else:  # it runs again, from its start
                    live.add(i)
                    yield i, Started(3)
            if self.user is not None and step == self.user_at:
                self.user.set()
            if cancel is not None and cancel.is_set():
                break
        for i in sorted(live):
            yield i, Done(Stats(finish_reason="cancelled", completion_tokens=written[i]))
        yield -1, BatchDone(BatchStats(k=k))


def run_steps(
    engine: Steps, rule: EarlyRule = "overtaken", cancel: threading.Event | None = None
) -> Samples:
    for ev in SampleRun(engine, [], "q", SamplingParams(), engine.k, cancel=cancel, early=rule):
        if isinstance(ev, SamplesDone):
            return ev.samples
    raise AssertionError("no SamplesDone")


FOUR = "\\boxed{4}"


def test_a_failed_sample_counts_as_one_still_to_come() -> None:
    """It may run again (a server's cut sample does): two 4s with a failed sample and one
    running could still be tied; a third 4 settles it and stops the last one."""
    ends = [Ends(0, 1, FOUR), Ends(2, 2, FOUR), Ends(3, 3, FOUR), Ends(4, 9, "\\boxed{5}")]
    engine = Steps(5, ends, {1: [(1, Failed("the server cut it short"))]})
    got = run_steps(engine)
    assert [s.finish_reason for s in got.samples] == [
        "stop",
        "error",
        "stop",
        "stop",
        STOPPED_EARLY,
    ]
    assert got.early_stop is not None and got.early_stop.stopped == 1
    assert (got.vote.count, got.vote.of) == (3, 3) and len(got.errors) == 1
    # With the failed one counted out, two 4s and one running would have stopped at step 2.
    ends = [Ends(0, 1, FOUR), Ends(2, 2, FOUR), Ends(3, 9, "\\boxed{5}")]
    got = run_steps(Steps(4, ends, {1: [(1, Failed("the server cut it short"))]}))
    assert got.early_stop is None and got.vote.count == 2 and got.vote.of == 3


def test_a_sample_run_again_no_longer_counts_for_what_it_said() -> None:
    ends = [Ends(0, 1, FOUR), Ends(1, 1, FOUR), Ends(2, 2, FOUR), Ends(3, 9, "\\boxed{5}")]
    # Sample 1 ended, then runs again: it comes back at step 3, as a 5.
    extra: dict[int, list[tuple[int, Failed | Retrying]]] = {
        1: [(1, Retrying("it came back empty"))]
    }
    got = run_steps(Steps(4, [*ends, Ends(1, 3, "\\boxed{5}")], extra))
    # Counted, sample 1's 4 would have made it 3 to 0 with one to come at step 2: a stop.
    assert got.early_stop is None
    assert [s.boxed for s in got.samples] == ["4", "5", "4", "5"]


def test_a_stop_of_the_user_s_is_no_early_stop() -> None:
    user = threading.Event()
    engine = Steps(3, [Ends(0, 1, FOUR), Ends(1, 5, FOUR), Ends(2, 5, FOUR)], user=user, user_at=2)
    got = run_steps(engine, cancel=user)
    assert [s.finish_reason for s in got.samples] == ["stop", "cancelled", "cancelled"]
    assert got.stopped and got.early_stop is None


def test_a_stop_of_the_user_s_after_the_early_one_leaves_it_early() -> None:
    """The early stop came first: the samples it stopped are its own, whoever else asked."""
    user = threading.Event()
    ends = [Ends(0, 1, FOUR), Ends(1, 1, FOUR), Ends(2, 5, FOUR)]
    got = run_steps(Steps(3, ends, user=user, user_at=1), cancel=user)
    assert [s.finish_reason for s in got.samples] == ["stop", "stop", STOPPED_EARLY]
    assert not got.stopped and got.early_stop is not None


def test_nothing_is_stopped_when_the_rest_end_in_the_same_step() -> None:
    """The rule is met at the second of three, but the third ends in that step: it votes."""
    got = run_steps(Steps(3, [Ends(i, 4, FOUR) for i in range(3)]), "beta")
    assert got.early_stop is None and got.vote.count == 3
    assert [s.finish_reason for s in got.samples] == ["stop"] * 3
    assert "stopped early" not in got.agreement()


# --- the branching model on llama.cpp -------------------------------------------------------

K = 8
GROUPS = 32  # votes of K samples: seeds SEED + K * g ...
SEED = 5000
PARAMS = SamplingParams(max_tokens=24)  # the default sampling; the longest reply is 21 tokens
Z = 3.2905267314919255  # two-sided 99.9 % normal quantile


def within(count: float, n: int, p: float) -> bool:
    """Whether `count` successes of `n` are within the 99.9 % normal bound of odds `p`."""
    return abs(count - n * p) <= Z * math.sqrt(n * p * (1 - p)) + 1e-9


def odds_of(pick: Callable[[tuple[str, ...]], bool]) -> float:
    """P(pick(answers)) over every ordered outcome of K samples, at the model's odds."""
    odds = branch_odds()
    return math.fsum(
        math.prod(odds[a] for a in outcome) * pick(outcome)
        for outcome in itertools.product(odds, repeat=K)
    )


def majority(answers: Sequence[str | None]) -> str | None:
    return confident_vote(answers, [None] * len(answers)).answer


@pytest.fixture(scope="module")
def engine(branching_model: Path) -> Iterator[LlamaEngine]:
    # One thread: on a busy 2-core machine two wait on each other at every graph node.
    eng = LlamaEngine(branching_model, LoadOptions(n_ctx=256, n_threads=1))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def runs(engine: LlamaEngine) -> dict[EarlyRule, list[Samples]]:
    """Each group of K decoded under each rule, with the same seeds."""
    return {
        rule: [
            ask_many(
                engine,
                [ChatMessage("user", BRANCH_QUESTION)],
                SamplingParams(max_tokens=PARAMS.max_tokens, seed=SEED + K * g),
                K,
                early=rule,
            )
            for g in range(GROUPS)
        ]
        for rule in EARLY_RULES
    }


def fours(s: Samples) -> int:
    return sum(x.boxed == "4" for x in s.samples)


def test_the_whole_votes_come_as_often_as_computed(runs: dict[EarlyRule, list[Samples]]) -> None:
    whole = runs["off"]
    assert all(s.early_stop is None and len(s.samples) == K for s in whole)
    p4 = branch_odds()["4"]
    assert within(sum(map(fours, whole)), K * GROUPS, p4)
    p_majority = odds_of(lambda a: majority(a) == "4")
    assert p_majority == pytest.approx(0.810, abs=0.001)
    assert within(sum(s.vote.answer == "4" for s in whole), GROUPS, p_majority)


def lengths(whole: list[Samples]) -> tuple[int, int]:
    """The tokens of a 4 reply and of a 5 or 6 one: each kind is always as long."""
    sure = {x.completion_tokens for s in whole for x in s.samples if x.boxed == "4"}
    unsure = {x.completion_tokens for s in whole for x in s.samples if x.boxed != "4"}
    assert len(sure) == len(unsure) == 1
    return sure.pop(), unsure.pop()


@pytest.mark.parametrize(
    ("rule", "least"), [("overtaken", 5), ("beta", 4)], ids=["overtaken", "beta"]
)
def test_the_rule_stops_where_computed(
    runs: dict[EarlyRule, list[Samples]], rule: EarlyRule, least: int
) -> None:
    """A group stops when `least` to 7 of its 8 are 4s: the 4s end first, together, and the
    rule is met among them; then every 5 and 6 is stopped one token after the 4s ended, with
    the tokens that saves. "overtaken" never changes the vote; "beta" stops on 4 every time.
    How often each stops is the odds of that many 4s."""
    whole, early = runs["off"], runs[rule]
    sure, unsure = lengths(whole)
    stops = 0
    for full, got in zip(whole, early, strict=True):
        m = fours(full)
        assert len(got.samples) == K
        for x in got.samples:
            if x.finish_reason != STOPPED_EARLY:  # the same seed, the same reply
                assert x.boxed == full.samples[x.index].boxed
        if least <= m < K:
            stops += 1
            assert got.early_stop is not None and got.early_stop.stopped == K - m
            for x in got.samples:
                four = full.samples[x.index].boxed == "4"
                assert x.finish_reason == ("stop" if four else STOPPED_EARLY)
                assert x.completion_tokens == (sure if four else sure + 1)
            assert full.tokens_spent - got.tokens_spent == (K - m) * (unsure - sure - 1)
            assert (got.vote.answer, got.vote.count, got.vote.of) == ("4", m, m)
            assert "stopped early: the leading answer" in got.agreement()
        else:
            assert got.early_stop is None and got.tokens_spent == full.tokens_spent
            assert [x.finish_reason for x in got.samples] == ["stop"] * K
        if rule == "overtaken":
            assert got.vote.answer == full.vote.answer
    p_stop = odds_of(lambda a: least <= a.count("4") < K)
    assert within(stops, GROUPS, p_stop), (stops, p_stop)


def test_beta_is_right_as_often_as_computed(runs: dict[EarlyRule, list[Samples]]) -> None:
    """Stopped at 4 or more 4s with 4 for the answer, else the whole majority: at least as
    often right as the majority of all 8 (a 4 to 4 tie it settles for 4)."""

    def beta_picks_four(answers: tuple[str, ...]) -> bool:
        return answers.count("4") >= 4 or majority(answers) == "4"

    p_beta, p_majority = odds_of(beta_picks_four), odds_of(lambda a: majority(a) == "4")
    assert p_beta > p_majority
    assert within(sum(s.vote.answer == "4" for s in runs["beta"]), GROUPS, p_beta)


def test_ask_k_stops_early_by_default_and_says_so(
    runs: dict[EarlyRule, list[Samples]], branching_model: Path, r1home: Path
) -> None:
    """`ask -k 8` on the command line, with the seeds of a group that stops: the samples, both
    votes and the early stop in --json; the stopped samples saved with what they wrote."""
    g, full = next((g, s) for g, s in enumerate(runs["off"]) if 5 <= fours(s) < K)
    m = fours(full)
    args = ("ask", "-m", str(branching_model), "-k", str(K), "--seed", str(SEED + K * g))
    out = run_cli(*args, "--max-tokens", "24", "--json", BRANCH_QUESTION, home=r1home)
    assert out.returncode == 0, out.stderr.decode()
    data = json.loads(out.stdout)
    assert data["vote"] == {"answer": "4", "count": m, "of": m, "timed_out": 0}
    assert data["vote_by"] == "majority"
    early = data["early_stop"]
    assert early["stopped"] == K - m and early["why"] == (
        f"the leading answer ({m} to 0) cannot be overtaken by the {K - m} running"
    )
    assert early["tokens_spent"] == sum(s["completion_tokens"] for s in data["samples"])
    assert early["tokens_spent"] == runs["overtaken"][g].tokens_spent
    assert set(early) == {"why", "stopped", "tokens_spent", "tokens_saved_estimate"}
    finish = [s["finish_reason"] for s in data["samples"]]
    assert finish == ["stop" if x.boxed == "4" else STOPPED_EARLY for x in full.samples]
    assert all(isinstance(s["confidence"], float) for s in data["samples"])
    confident = data["confident_vote"]
    assert confident["answer"] == "4" and confident["weighted"] is True
    assert confident["consensus"] == 1.0 and len(confident["members"]) == m
    with HistoryStore.open(r1home / "history.sqlite3") as store:
        kept = store.messages(1, all_branches=True)
    assert [r.finish_reason for r in kept[1:]] == finish
    # Piped, the answer alone; --stats says what stopping saved.
    plain = run_cli(*args, "--max-tokens", "24", "--stats", BRANCH_QUESTION, home=r1home)
    assert plain.returncode == 0 and plain.stdout.decode().strip() == "$\\boxed{4}$"
    assert f"{K - m} stopped early, about " in plain.stderr.decode()


def test_eval_stops_early_when_asked_and_counts_what_finished(
    runs: dict[EarlyRule, list[Samples]], branching_model: Path, r1home: Path, tmp_path: Path
) -> None:
    """`eval --stop-early overtaken`, with the seeds of a group that stops (every problem is
    that group): maj@8 as without it, pass@1 over the 4s that finished, the samples stopped and
    the tokens in the report and in --out (whose settings say how it was run)."""
    g, full = next((g, s) for g, s in enumerate(runs["off"]) if 5 <= fours(s) < K)
    m, stopped = fours(full), runs["overtaken"][g]
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps({"problem": q, "answer": "4"}) + "\n" for q in "ab"))
    out = tmp_path / "out.jsonl"
    args = (
        "eval",
        str(data),
        "-m",
        str(branching_model),
        "-k",
        str(K),
        "--seed",
        str(SEED + K * g),
    )
    more = (
        "--max-tokens",
        "24",
        "--preset",
        "none",
        "--out",
        str(out),
        "--stop-early",
        "overtaken",
    )
    proc = run_cli(*args, *more, "--json", home=r1home)
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert (report["pass@1"], report[f"maj@{K}"], report["stopped_early"]) == (
        1.0,
        1.0,
        2 * (K - m),
    )
    assert report["pass@1_of_finished"] is True and report["tokens"] == 2 * stopped.tokens_spent
    assert report["tokens_saved_estimate"] == 2 * stopped.tokens_saved
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(line["settings"]["stop_early"] == "overtaken" for line in lines)
    assert [line["stopped_early"] for line in lines] == [K - m] * 2
    assert lines[0]["finish"] == [x.finish_reason for x in stopped.samples]
    text = run_cli(*args, *more, home=r1home)  # from --out: nothing solved again
    assert text.returncode == 0, text.stderr.decode()
    assert (
        f"stopped early   {2 * (K - m)} samples once their vote was settled" in text.stdout.decode()
    )
