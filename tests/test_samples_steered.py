"""Every sample obeys every thinking control, on its own, whatever path runs it: the batch on real
llama.cpp (the looping and scripted models), the one-at-a-time path, `ask -k` and `eval`.

The reference is always a single reply with the same seed and the same control: a sample must
write what that reply writes, token for token (tests/test_batch.py holds the same guard without
any control)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from cli_support import Cli

from r1chat.engines.base import BatchDone, Done, Token, one_at_a_time
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.many import SampleEvent, SampleRun, SamplesDone, ask_many
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.turn import TurnDone, TurnResult, run_turn

QUESTION = [ChatMessage("user", "What is two plus two?")]
OPTIONS = LoadOptions(n_ctx=2048, n_threads=1)


@pytest.fixture(scope="module")
def looping(loop_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(loop_model, OPTIONS)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def scripted(scripted_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(scripted_model, OPTIONS)
    yield eng
    eng.close()


def single(engine: LlamaEngine, params: SamplingParams, reasoning: ReasoningParams) -> TurnResult:
    for ev in run_turn(engine, [], QUESTION[0].content, params, control=ThinkingControl(reasoning)):
        if isinstance(ev, TurnDone):
            return ev.result
    raise AssertionError("no TurnDone")


def test_each_batched_sample_stops_at_its_budget_and_answers(looping: LlamaEngine) -> None:
    # The case: a model whose thinking never ends, -k 3 with a budget of 30.
    params = SamplingParams(seed=3, max_tokens=400)
    reasoning = ReasoningParams(budget=30)
    got = ask_many(looping, QUESTION, params, 3, reasoning=reasoning)
    assert got.stats.together == "batched" and len(got.samples) == 3
    for i, s in enumerate(got.samples):
        assert s.thinking_ended == "budget", i
        assert s.answer == tiny_models.LOOP_ANSWER and s.finish_reason == "stop"
        alone = single(looping, SamplingParams(seed=3 + i, max_tokens=400), reasoning)
        assert (s.thinking, s.answer) == (alone.thinking, alone.answer)
        assert s.thinking_tokens == alone.stats.thinking_tokens < 100


def test_each_batched_sample_has_its_own_loop_guard(looping: LlamaEngine) -> None:
    got = ask_many(looping, QUESTION, SamplingParams(seed=1, max_tokens=1000), 2)
    for s in got.samples:
        assert s.thinking_ended == "loop" and s.answer == tiny_models.LOOP_ANSWER
        assert s.completion_tokens < 300  # 1,000 per sample before: the guard never ran
    stop = ask_many(
        looping,
        QUESTION,
        SamplingParams(seed=1, max_tokens=1000),
        2,
        reasoning=ReasoningParams(on_loop="stop"),
    )
    for s in stop.samples:
        assert (s.thinking_ended, s.finish_reason, s.answer) == ("loop", "cancelled", "")


def test_each_batched_sample_thinks_at_least_think_min(scripted: LlamaEngine) -> None:
    params = SamplingParams(seed=2, temperature=0)
    reasoning = ReasoningParams(min_tokens=30)
    got = ask_many(scripted, QUESTION, params, 2, reasoning=reasoning)
    alone = single(scripted, params, reasoning)
    assert "Wait" in alone.thinking and alone.answer == tiny_models.SCRIPT_ANSWER
    for s in got.samples:
        assert (s.thinking, s.answer) == (alone.thinking, alone.answer)
        assert s.thinking_tokens >= 30 and s.thinking_ended == "model"


def test_samples_are_steered_one_by_one(scripted: LlamaEngine) -> None:
    """One sample reaches its budget while the other closes its thinking itself."""
    controls = [ThinkingControl(ReasoningParams(budget=3)), ThinkingControl(ReasoningParams())]
    params = SamplingParams(seed=4)
    texts: dict[int, str] = {0: "", 1: ""}
    done = {}
    for i, ev in scripted.stream_many(QUESTION, params, 2, controls=controls):
        if isinstance(ev, Token):
            texts[i] += ev.text
        elif isinstance(ev, Done):
            done[i] = ev.stats.finish_reason
    assert [c.ended for c in controls] == ["budget", "model"]
    assert controls[0].tokens == 3 and done == {0: "stop", 1: "stop"}
    assert ReasoningParams().budget_message in texts[0]
    assert texts[1] == tiny_models.SCRIPT_TEXT


def test_answer_now_reaches_every_sample(looping: LlamaEngine) -> None:
    run = SampleRun(
        looping,
        [],
        QUESTION[0].content,
        SamplingParams(seed=1, max_tokens=600),
        3,
        reasoning=ReasoningParams(on_loop="warn"),
    )
    seen = 0
    result = None
    for ev in run:
        if isinstance(ev, SampleEvent):
            seen += 1
            if seen == 20:
                run.answer_now()
        elif isinstance(ev, SamplesDone):
            result = ev.samples
    assert result is not None
    for s in result.samples:
        assert s.thinking_ended == "user" and s.answer == tiny_models.LOOP_ANSWER
        assert s.thinking_tokens < 100


def test_a_budget_of_zero_gives_samples_without_thinking(scripted: LlamaEngine) -> None:
    got = ask_many(
        scripted, QUESTION, SamplingParams(seed=1), 2, reasoning=ReasoningParams(budget=0)
    )
    for s in got.samples:
        assert s.thinking == "" and s.thinking_ended == "budget" and s.thinking_tokens == 0


def test_one_at_a_time_samples_obey_the_same_controls(looping: LlamaEngine) -> None:
    """The path an engine without batching takes: the same stream shape, the same steering."""
    controls = [ThinkingControl(ReasoningParams(budget=20)) for _ in range(2)]
    stream = list(one_at_a_time(looping, QUESTION, SamplingParams(seed=7), 2, None, controls))
    assert isinstance(stream[-1][1], BatchDone) and stream[-1][1].stats.together == "one at a time"
    assert [c.ended for c in controls] == ["budget", "budget"]
    assert [i for i, ev in stream if isinstance(ev, Done)] == [0, 1]


def test_a_stop_ends_every_sample_and_keeps_what_came(looping: LlamaEngine) -> None:
    cancel = threading.Event()
    run = SampleRun(
        looping,
        [],
        "q",
        SamplingParams(seed=1, max_tokens=2000),
        2,
        cancel=cancel,
        reasoning=ReasoningParams(on_loop="warn"),
    )
    result = None
    for n, ev in enumerate(run):
        if n == 30:
            cancel.set()
        if isinstance(ev, SamplesDone):
            result = ev.samples
    assert result is not None and len(result.samples) == 2
    assert {s.finish_reason for s in result.samples} == {"cancelled"}
    assert all(s.thinking for s in result.samples)


# --- the command line: ask -k and eval take every option ask does ------------------------------


def ask_json(cli: Cli, *args: str) -> dict[str, Any]:
    proc = cli("ask", "--json", *args)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_ask_k_takes_the_budget_as_ask_does(cli: Cli, loop_model: Path) -> None:
    common = (
        "--model",
        str(loop_model),
        "--max-tokens",
        "400",
        "--seed",
        "1",
        "--think-budget",
        "30",
    )
    one = ask_json(cli, *common, "q")
    many = ask_json(cli, *common, "-k", "2", "q")
    assert one["thinking_ended"] == "budget" and one["answer"] == tiny_models.LOOP_ANSWER
    for s in many["samples"]:
        assert s["thinking_ended"] == "budget" and s["answer"] == tiny_models.LOOP_ANSWER
        assert s["thinking_tokens"] == one["stats"]["thinking_tokens"]


def test_ask_k_takes_think_min_stats_and_ctx(cli: Cli, scripted_model: Path) -> None:
    base = ("--model", str(scripted_model), "--seed", "1", "--temperature", "0")
    many = ask_json(cli, *base, "--think-min", "30", "-k", "2", "q")
    for s in many["samples"]:
        assert "Wait" in s["thinking"] and s["thinking_tokens"] >= 30
    proc = cli("ask", *base, "-k", "2", "--stats", "q")
    assert proc.returncode == 0
    assert "2 samples (batched)" in proc.stderr.decode()
    # --ctx bounds the samples' context as it bounds a single reply's.
    proc = cli("ask", *base, "-k", "4", "--ctx", "256", "--max-tokens", "100", "q")
    assert proc.returncode == 2
    assert "the one asked for holds 256" in proc.stderr.decode()


def test_eval_takes_the_budget_and_prints_stats(cli: Cli, loop_model: Path, tmp_path: Path) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"problem": "2+2?", "answer": "4"}) + "\n")
    out = tmp_path / "out.jsonl"
    proc = cli(
        "eval",
        str(problems),
        "--model",
        str(loop_model),
        "-k",
        "2",
        "--max-tokens",
        "400",
        "--think-budget",
        "30",
        "--seed",
        "1",
        "--stats",
        "--out",
        str(out),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(t < 100 for t in row["thinking_tokens"])  # 400 each before: no budget
    # "The answer is 4": no box, but math-verify's fall-back reads the last number.
    assert row["boxed"] == ["4", "4"]
    assert row["finish"] == ["stop", "stop"]
    assert "problem 0: 2 of 2 right" in proc.stderr.decode()
