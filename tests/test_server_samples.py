"""k samples from a server that serves one request at a time (issue 20, part 5).

llama-cpp-python's `python -m llama_cpp.server` cuts a running stream short when another request
comes: the stream ends with `data: [DONE]` and no finish reason. Three concurrent samples came
back as one answer and two empty ones "finished normally", and the vote said "1 of 3 agree".
Now the samples run one after another on such a server, and a sample the server cut short,
cancelled or sent back empty runs once more, alone; what fails again is reported and not
counted in the vote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import run_cli
from servers import ReplayServer, Reply, Server, chunk, start_llama_cpp_server
from tiny_models import SCRIPT_ANSWER

from r1chat.engines.remote import RemoteEngine
from r1chat.many import SampleRetrying, SampleRun, Samples, SamplesDone
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams

QUESTION = [ChatMessage("user", "2+2?")]
# How llama_cpp.server lists its model: that is how r1chat knows it.
LLAMA_CPP_PYTHON = [{"id": "m", "object": "model", "owned_by": "me", "permissions": []}]


def serve(made: list[ReplayServer], replies: list[Reply], **kw: Any) -> ReplayServer:
    s = ReplayServer(replies, **kw)
    made.append(s)
    return s


def whole(boxed: str = "4", pause_s: float = 0.3) -> Reply:
    return Reply(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"reasoning_content": "Two and two."}),
            chunk({"content": f"So $\\boxed{{{boxed}}}$."}),
            chunk({}, "stop"),
        ],
        pause_s=pause_s,
    )


def cancelled() -> Reply:
    """What llama_cpp.server sends the stream another request cut: [DONE], no finish reason."""
    return Reply([chunk({"role": "assistant", "content": ""}), chunk({"content": "So"})])


def empty() -> Reply:
    """A reply that finished, with nothing in it."""
    return Reply([chunk({"role": "assistant", "content": ""}), chunk({}, "stop")])


def run(engine: RemoteEngine, k: int, seed: int | None = 10) -> tuple[Samples, list[int]]:
    """The samples and the indexes retried, in order."""
    retried: list[int] = []
    for ev in SampleRun(engine, [], "2+2?", SamplingParams(seed=seed), k):
        if isinstance(ev, SampleRetrying):
            retried.append(ev.index)
        if isinstance(ev, SamplesDone):
            return ev.samples, retried
    raise AssertionError("no SamplesDone")


def seeds(s: ReplayServer) -> list[int]:
    return [body["seed"] for body, _ in s.requests]


# --- a real llama_cpp.server --------------------------------------------------------------


@pytest.fixture(scope="module")
def one_at_a_time_server(
    scripted_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    pytest.importorskip("uvicorn")
    log = tmp_path_factory.mktemp("srv") / "server.log"
    server = start_llama_cpp_server(scripted_model, log, alias="r1-scripted", n_ctx=512)
    yield server
    server.stop()


def test_samples_on_llama_cpp_server_run_one_after_another_until_the_vote_is_settled(
    one_at_a_time_server: Server, r1home: Path
) -> None:
    """Each comes whole, none cut by the next; once two agree the third, which could not
    change the vote, is not asked for (`ask -k` stops early by default)."""
    base = one_at_a_time_server.base
    plain = run_cli("ask", "-k", "3", "--api-base", base, "2+2?", home=r1home)
    err = plain.stderr.decode()
    assert plain.returncode == 0, err
    # The one line that says how they ran (--json is quiet), and nothing failed or retried.
    assert (
        err == "r1chat: the server serves one request at a time: 3 samples run one after another\n"
    )
    assert plain.stdout.decode().strip() == SCRIPT_ANSWER
    out = run_cli("ask", "-k", "3", "--json", "--api-base", base, "2+2?", home=r1home)
    assert out.returncode == 0, out.stderr.decode()
    data = json.loads(out.stdout)
    assert [s["answer"] for s in data["samples"]] == [SCRIPT_ANSWER] * 2
    assert all(s["error"] is None and s["finish_reason"] == "stop" for s in data["samples"])
    assert (
        data["vote"] == {"answer": "4", "count": 2, "of": 2, "timed_out": 0}
        and data["failed"] == []
    )
    assert data["early_stop"]["stopped"] == 1
    assert data["stats"]["together"] == "one at a time"
    # No stream was cut: the server says "disconnected" for each one it cuts.
    assert one_at_a_time_server.log is not None
    assert "disconnected" not in one_at_a_time_server.log.read_text().lower()


# --- how many at once ---------------------------------------------------------------------


def test_a_server_known_to_serve_one_request_gets_them_one_at_a_time(
    made: list[ReplayServer],
) -> None:
    s = serve(made, [whole("4", 0.1) for _ in range(3)], models=LLAMA_CPP_PYTHON)
    notes: list[str] = []
    got, retried = run(RemoteEngine(s.base, on_note=notes.append), 3)
    assert s.peak == 1 and retried == [] and got.stats.together == "one at a time"
    assert notes == ["the server serves one request at a time: 3 samples run one after another"]
    assert (got.vote.count, got.vote.of) == (3, 3) and seeds(s) == [10, 11, 12]


def test_llama_server_slots_bound_how_many_run_at_once(made: list[ReplayServer]) -> None:
    s = serve(made, [whole("4") for _ in range(4)])
    s.extra["/props"] = {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 2}
    notes: list[str] = []
    got, _ = run(RemoteEngine(s.base, on_note=notes.append), 4)
    assert s.peak == 2 and got.stats.together == "concurrent" and got.vote.of == 4
    assert notes == ["the server serves 2 requests at a time: 4 samples run 2 at once"]


def test_a_server_that_does_not_say_gets_them_all_at_once_and_no_note(
    made: list[ReplayServer],
) -> None:
    s = serve(made, [whole("4") for _ in range(3)])
    notes: list[str] = []
    got, _ = run(RemoteEngine(s.base, on_note=notes.append), 3)
    assert s.peak == 3 and got.stats.together == "concurrent" and notes == []


# --- samples that are no votes --------------------------------------------------------------


def test_a_sample_the_server_cancelled_runs_again_alone_with_its_seed(
    made: list[ReplayServer],
) -> None:
    # The three are asked at once; whichever asked second gets the cut stream.
    s = serve(made, [whole("4"), cancelled(), whole("4"), whole("5", 0.0)])
    notes: list[str] = []
    got, retried = run(RemoteEngine(s.base, on_note=notes.append), 3)
    assert len(retried) == 1 and len(s.requests) == 4
    assert seeds(s)[3] == 10 + retried[0]  # the same sample, with its own seed
    assert got.errors == [] and [x.error for x in got.samples] == [None] * 3
    assert sorted(x.boxed or "" for x in got.samples) == ["4", "4", "5"]
    # What the retry said, and nothing of the cut stream before it.
    assert got.samples[retried[0]].answer == "So $\\boxed{5}$."
    assert (got.vote.answer, got.vote.count, got.vote.of) == ("4", 2, 3)
    assert notes == ["retrying 1 of 3 samples one at a time (the server cancelled it)"]


def test_a_sample_cancelled_twice_is_reported_and_not_counted(made: list[ReplayServer]) -> None:
    s = serve(made, [whole("4"), cancelled(), whole("4"), cancelled()])
    notes: list[str] = []
    got, retried = run(RemoteEngine(s.base, on_note=notes.append), 3)
    assert len(retried) == 1 and len(s.requests) == 4
    [(index, why)] = got.errors
    assert index == retried[0] and "cancelled the reply" in why
    assert got.samples[index].finish_reason == "error"
    assert (got.vote.answer, got.vote.count, got.vote.of) == ("4", 2, 2)
    assert got.agreement() == "4, 2 of 2 samples agree (1 failed)"
    assert notes == [
        "retrying 1 of 3 samples one at a time (the server cancelled it)",
        "1 of 3 samples failed: the server cancelled it",
    ]


def test_a_stream_cut_without_its_end_is_retried(made: list[ReplayServer]) -> None:
    cut = Reply([chunk({"role": "assistant", "content": ""}), chunk({"content": "So"})], done=False)
    s = serve(made, [whole("4"), cut, whole("4"), whole("4", 0.0)])
    notes: list[str] = []
    got, retried = run(RemoteEngine(s.base, on_note=notes.append), 3)
    assert len(retried) == 1 and got.errors == [] and got.vote.of == 3
    assert notes == ["retrying 1 of 3 samples one at a time (the server cut it short)"]


def test_an_empty_sample_among_whole_ones_is_retried(made: list[ReplayServer]) -> None:
    s = serve(made, [whole("4"), empty(), whole("4"), whole("4", 0.0)])
    got, retried = run(RemoteEngine(s.base), 3)
    assert len(retried) == 1 and got.errors == []
    assert [x.boxed for x in got.samples] == ["4", "4", "4"] and got.vote.of == 3


def test_a_sample_empty_twice_fails_and_does_not_vote(made: list[ReplayServer]) -> None:
    s = serve(made, [whole("4"), empty(), whole("4"), empty()])
    notes: list[str] = []
    got, retried = run(RemoteEngine(s.base, on_note=notes.append), 3)
    [(index, why)] = got.errors
    assert index == retried[0] and "empty" in why
    assert (got.vote.count, got.vote.of) == (2, 2) and "(1 failed)" in got.agreement()
    assert notes[-1] == "1 of 3 samples failed: it came back empty"


def test_samples_all_empty_are_not_retried(made: list[ReplayServer]) -> None:
    """Nothing says the server is to blame when no sample has text: no retry."""
    s = serve(made, [empty() for _ in range(3)])
    got, retried = run(RemoteEngine(s.base), 3)
    assert retried == [] and len(s.requests) == 3 and got.errors == []


def test_a_server_error_is_not_retried(made: list[ReplayServer]) -> None:
    s = serve(made, [whole("4"), Reply(status=500, body={"error": {"message": "oom"}}), whole()])
    got, retried = run(RemoteEngine(s.base), 3)
    assert retried == [] and len(s.requests) == 3 and len(got.errors) == 1
    assert got.vote.of == 2


def test_ask_reports_what_failed_twice_and_votes_without_it(
    made: list[ReplayServer], tmp_path: Path
) -> None:
    s = serve(made, [whole("4"), cancelled(), whole("4"), cancelled()])
    out = run_cli("ask", "-k", "3", "--api-base", s.base, "2+2?", home=tmp_path)
    lines = out.stderr.decode().splitlines()
    assert out.returncode == 0, lines
    assert lines[:2] == [
        "r1chat: retrying 1 of 3 samples one at a time (the server cancelled it)",
        "r1chat: 1 of 3 samples failed: the server cancelled it",
    ]
    assert len(lines) == 3 and "failed: the server at" in lines[2] and "cancelled" in lines[2]
    assert out.stdout.decode().strip() == "So $\\boxed{4}$."
    s = serve(made, [whole("4"), cancelled(), whole("4"), cancelled()])
    out = run_cli("ask", "-k", "3", "--json", "--api-base", s.base, "2+2?", home=tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    data = json.loads(out.stdout)
    assert (
        data["vote"] == {"answer": "4", "count": 2, "of": 2, "timed_out": 0}
        and len(data["failed"]) == 1
    )


def test_a_retried_sample_thinks_under_a_fresh_control(made: list[ReplayServer]) -> None:
    """Its budget counts the retry's thinking alone, not what the cut stream thought."""
    thought = [chunk({"reasoning_content": f" step{n}"}) for n in range(6)]
    cut = Reply([chunk({"role": "assistant", "content": None}), *thought])
    r1 = [{"id": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "object": "model"}]
    s = serve(made, [whole("4"), cut, whole("4"), whole("4", 0.0)], models=r1)
    controls: list[ThinkingControl | None] = [ThinkingControl(ReasoningParams()) for _ in range(3)]
    first = list(controls)
    run = SampleRun(RemoteEngine(s.base), [], "2+2?", SamplingParams(seed=1), 3, controls=controls)
    retried = [ev.index for ev in run if isinstance(ev, SampleRetrying)]
    assert len(retried) == 1
    [i] = retried
    fresh, old = run.controls[i], first[i]
    assert fresh is not old and fresh is not None and old is not None
    assert old.tokens >= 6 and fresh.tokens == first[(i + 1) % 3].tokens  # type: ignore[union-attr]
    assert "step" not in run.partial().samples[i].thinking


def test_the_live_lines_start_a_retried_sample_again() -> None:
    from r1chat.many import SampleMeter, SampleProgress

    meter = SampleMeter(2)
    meter.progress(SampleProgress(1, "answer", "So", 7, 1))
    meter.failed[1] = "the server at x cancelled the reply"
    meter.retrying(1, "the server cancelled it")
    line = " ".join(meter.lines().splitlines()[1].split())
    assert line == "sample 2 0 thinking tokens run again: the server cancelled it"
    meter.progress(SampleProgress(1, "think", "Two", 3, 0))
    assert meter.lines().splitlines()[1].endswith("3 thinking tokens  thinking… (run again)")
