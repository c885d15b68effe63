"""The confidence-weighted vote (DeepConf) beside the majority: in the samples' JSON, the line
that says how they agree, the answer of record with `vote_by`, and `eval`'s conf@k.

On real llama.cpp with the `branching` model (tests/tiny_models.py): its 4s are written
surely and its 5s and 6s unsurely, so weighing by confidence picks 4 more often than the
majority does (never less often: a group the majority gets right the weighted vote gets right
too). `eval`'s pass@1, maj@8 and conf@8 over groups of 8 are asserted within 99.9 % bounds of
the figures computed in advance from the odds and the two confidences, and on the command line
exactly, with the seeds of one group.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cli_support import run_cli
from test_early_stop import GROUPS, SEED, K, majority, odds_of, within
from tiny_models import BRANCH_QUESTION, branch_odds

from r1chat.confidence import KEEP, confident_vote
from r1chat.config import Settings
from r1chat.endings import STOPPED_EARLY
from r1chat.engines.base import BatchStats, Stats
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.evaluate import Problem, Result, ResultsFile, eval_settings, solve, summary
from r1chat.many import Sample, Samples, confidently_voted, voted


def sample(index: int, boxed: str | None, conf: float | None, **kw: str) -> Sample:
    answer = f"$\\boxed{{{boxed}}}$" if boxed is not None else "no idea"
    return Sample(
        index=index,
        seed=index,
        thinking="hm",
        answer=answer,
        boxed=boxed,
        finish_reason=kw.get("finish_reason", "stop"),
        thinking_tokens=1,
        answer_tokens=1,
        stats=Stats(confidence=conf, confidence_mean=conf, confidence_tail=conf),
        error=kw.get("error"),
    )


def samples_of(group: list[Sample], vote_by: str = "majority", keep: float = KEEP) -> Samples:
    return Samples(
        group,
        BatchStats(k=len(group)),
        voted(group),
        confident=confidently_voted(group, keep),
        vote_by=vote_by,  # type: ignore[arg-type]
    )


def test_each_sample_s_json_carries_its_confidence() -> None:
    got = sample(0, "4", 12.5).to_dict()
    assert (got["confidence"], got["confidence_mean"], got["confidence_tail"]) == (12.5,) * 3
    assert sample(1, "4", None).to_dict()["confidence"] is None


def test_failed_samples_and_those_stopped_early_neither_vote_nor_count() -> None:
    group = [
        sample(1, "5", 20.0, error="the server cut it short", finish_reason="error"),
        sample(2, "5", 20.0, finish_reason=STOPPED_EARLY),
        sample(3, "4", 10.0),
        sample(5, "4", 11.0),
        sample(6, "6", 12.0),
    ]
    c = confidently_voted(group, keep=1.0)
    assert c.weighted and c.answer == "4" and c.kept == (2, 3, 4)
    assert c.weight == 21.0 and c.consensus == pytest.approx(21 / 33)
    # Sample indexes in the JSON, not positions.
    got = samples_of(group, keep=1.0).votes_json()["confident_vote"]
    assert got["members"] == [3, 5] and got["kept"] == [3, 5, 6] and got["weighted"] is True


def test_the_vote_of_record_is_the_majority_unless_asked() -> None:
    """Two unsure 5s against one sure 4: the majority says 5, confidence says 4."""
    group = [sample(0, "5", 10.0), sample(1, "5", 10.0), sample(2, "4", 30.0)]
    majority_first = samples_of(group)
    assert (majority_first.boxed, majority_first.chosen().index) == ("5", 0)
    assert (
        majority_first.agreement()
        == "5, 2 of 3 samples agree; by confidence: 4 (60% of the weight)"
    )
    by_confidence = samples_of(group, "confidence")
    assert (by_confidence.boxed, by_confidence.chosen().index) == ("4", 2)
    assert by_confidence.agreement() == (
        "4 by confidence (60% of the weight); the majority's: 5, 2 of 3 samples agree"
    )
    assert by_confidence.votes_json()["vote_by"] == "confidence"
    assert by_confidence.votes_json()["vote"] == {
        "answer": "5",
        "count": 2,
        "of": 3,
        "timed_out": 0,
    }
    # The least confident sample would not be kept (the top 90 %): four samples, a tie.
    group = [sample(0, "4", 30.0), sample(1, "5", 10.0), sample(2, "4", 30.0), sample(3, "5", 10.0)]
    same = samples_of(group)
    assert same.agreement() == "4, 2 of 4 samples agree; by confidence too (75% of the weight)"


def test_without_confidences_both_votes_are_the_majority() -> None:
    """A server that sent no log-probabilities: the line says nothing of confidence, and asking
    for the confidence vote gets the majority."""
    group = [sample(0, "5", None), sample(1, "5", None), sample(2, "4", 30.0)]
    for vote_by in ("majority", "confidence"):
        got = samples_of(group, vote_by)
        assert got.confident is not None and not got.confident.weighted
        assert not got.by_confidence and got.boxed == "5" and got.chosen().index == 0
        assert got.agreement() == "5, 2 of 3 samples agree"
        assert got.votes_json()["vote_by"] == "majority"


# --- eval on the branching model ------------------------------------------------------------

PROBLEM = Problem(0, "two", BRANCH_QUESTION, "4", "key")


@pytest.fixture(scope="module")
def results(branching_model: Path) -> list[Result]:
    """`eval`'s own solve() over GROUPS groups of K, seeds SEED + K * g ... (those of
    tests/test_early_stop.py)."""
    engine = LlamaEngine(branching_model, LoadOptions(n_ctx=256, n_threads=1))
    base = Settings(samples=K, max_tokens=24)
    try:
        return [
            solve(engine, replace(PROBLEM, index=g), replace(base, seed=SEED + K * g), None)
            for g in range(GROUPS)
        ]
    finally:
        engine.close()


def confidences(results: list[Result]) -> dict[str, float]:
    """Each answer's confidence: every reply of one answer is written alike, so it is one."""
    conf: dict[str, float] = {}
    for r in results:
        for b, c in zip(r.boxed, r.confidence, strict=True):
            assert b is not None and c is not None and conf.setdefault(b, c) == c
    return conf


def test_eval_reports_conf_at_k_beside_pass_at_1_and_maj_at_k(results: list[Result]) -> None:
    conf = confidences(results)
    assert conf["4"] > conf["5"] == conf["6"]
    report = summary(results, K, 1.0)
    assert report["confidence_measured"] is True and report["stopped_early"] == 0
    assert all(r.conf_weighted and len(r.confidence) == K for r in results)
    p4 = branch_odds()["4"]
    p_majority = odds_of(lambda a: majority(a) == "4")

    def weighted(a: tuple[str, ...]) -> bool:
        return confident_vote(a, [conf[x] for x in a]).answer == "4"

    p_conf = odds_of(weighted)
    gain = odds_of(lambda a: weighted(a) and majority(a) != "4")
    assert odds_of(lambda a: majority(a) == "4" and not weighted(a)) == 0.0
    assert p_conf == pytest.approx(p_majority + gain) and gain > 0.05
    assert within(report["pass@1"] * K * GROUPS, K * GROUPS, p4)
    assert within(report[f"maj@{K}"] * GROUPS, GROUPS, p_majority)
    assert within(report[f"conf@{K}"] * GROUPS, GROUPS, p_conf)
    # Group by group: right by confidence wherever the majority is right, and more often.
    assert all(r.conf_vote_correct or not r.vote_correct for r in results)
    gains = sum(bool(r.conf_vote_correct) and not r.vote_correct for r in results)
    assert within(gains, GROUPS, gain)


def test_an_older_out_line_loads_and_counts_its_majority_for_conf_at_k(tmp_path: Path) -> None:
    """Lines written before conf@k (no confidence fields) still load; their confidence vote is
    the majority's, and the report says confidence was not measured."""
    settings = eval_settings(Settings(model="m.gguf", samples=2), "math")
    old = {
        "index": 0,
        "id": "p1",
        "answer": "4",
        "boxed": ["4", "5"],
        "correct": [True, False],
        "vote": "4",
        "vote_correct": True,
        "thinking_tokens": [3, 4],
        "tokens": 9,
        "seconds": 1.0,
        "finish": ["stop", "stop"],
        "key": "abc:0",
        "skipped": None,
        "settings": settings,
    }
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps(old) + "\n")
    [result] = ResultsFile(out, settings).done.values()
    assert result.conf_vote_correct is None and result.confidence == []
    report = summary([result], 2, 1.0)
    assert report["conf@2"] == report["maj@2"] == 1.0
    assert report["confidence_measured"] is False and report["pass@1"] == 0.5
    # The defaults record nothing new, so that file goes on under them; other choices differ.
    assert "stop_early" not in settings and "keep" not in settings
    assert eval_settings(Settings(model="m.gguf"), "math", "beta", 0.1)["stop_early"] == "beta"


def test_eval_on_the_command_line_weighs_by_confidence_with_keep(
    results: list[Result], branching_model: Path, r1home: Path, tmp_path: Path
) -> None:
    """With the seeds of a group whose majority is wrong but which holds a 4, DeepConf-low
    (--keep 0.1: the surest sample alone) is right: every problem scores as that group."""
    conf = confidences(results)
    g, r = next(
        (g, r)
        for g, r in enumerate(results)
        if not r.vote_correct
        and confident_vote(r.boxed, [conf[b or ""] for b in r.boxed], keep=0.1).answer == "4"
    )
    questions = [BRANCH_QUESTION, "Two plus two?", "Add two and two."]
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps({"problem": q, "answer": "4"}) + "\n" for q in questions))
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
    more = ("--max-tokens", "24", "--preset", "none", "--keep", "0.1", "--out", str(out))
    proc = run_cli(*args, *more, "--json", home=r1home)
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["pass@1"] == sum(r.correct) / K
    assert (report[f"maj@{K}"], report[f"conf@{K}"]) == (0.0, 1.0)
    assert report["confidence_measured"] is True and report["conf_keep"] == 0.1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and all(line["settings"]["keep"] == 0.1 for line in lines)
    for line in lines:
        assert line["boxed"] == r.boxed and line["confidence"] == pytest.approx(r.confidence)
        assert (line["conf_vote"], line["conf_vote_correct"], line["conf_weighted"]) == (
            "4",
            True,
            True,
        )
    # The words, from the results kept (nothing is solved again).
    text = run_cli(*args, *more, home=r1home)
    assert text.returncode == 0, text.stderr.decode()
    said = text.stdout.decode()
    assert f"maj@{K}           0.0%" in said
    assert f"conf@{K}          100.0%  (weighted by confidence, the 10% most confident" in said
