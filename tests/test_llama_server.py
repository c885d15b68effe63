"""The remote engine against llama.cpp's own `llama-server` (built from the llama.cpp source
vendored in the pinned llama-cpp-python sdist): the `reasoning_content` path, the server's own
reasoning controls (a per-request budget, "answer now" through its control endpoint) in one
stream, r1chat's cut-and-continue where the endpoint is missing, inline tags from a server without
a reasoning parser, and canitoolcall's live probe. A second tier: `./scripts/test --servers`
builds the server (minutes, once) and runs these; without it they are skipped."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models
from cli_support import run_cli
from servers import Server, start_llama_server
from tiny_models import LOOP_THINKING, SCRIPT_ANSWER, SCRIPT_THINKING

from r1chat.engines.remote import RemoteEngine
from r1chat.reasoning import ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.turn import Delta, ThinkingEnded, TurnDone, TurnEvent, TurnResult, run_turn

BINARY = os.environ.get("R1CHAT_LLAMA_SERVER", "")
pytestmark = [
    pytest.mark.skipif(
        not BINARY, reason="llama-server: run ./scripts/test --servers (builds it once)"
    ),
    pytest.mark.server,
]
CLOSING = ReasoningParams().budget_message
# The tiny models' own template is R1's first one: the model writes `<think>` itself. DeepSeek's
# current one opens the thinking in the prompt; llama-server reads the tags from the template, so
# its budget and control endpoint are checked with both.
OWN, OPENS = "own-template", "template-opens-thinking"


@pytest.fixture(scope="session")
def opening_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models' template with R1's current generation prompt: it ends in `<think>\\n`."""
    template = tiny_models.load_meta()["tokenizer.chat_template"]
    tail = "{{'<｜Assistant｜>'}}{% endif %}"
    assert template.endswith(tail), "the tiny models' template changed"
    path = tmp_path_factory.mktemp("template") / "r1-opens-thinking.jinja"
    path.write_text(template[: -len(tail)] + "{{'<｜Assistant｜><think>\\n'}}{% endif %}")
    return path


@pytest.fixture(scope="module")
def server(scripted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    s = start_llama_server(BINARY, scripted_model, log, alias="r1-scripted", n_ctx=1024)
    yield s
    s.stop()


@pytest.fixture(scope="module", params=[OWN, OPENS])
def loop_server(
    request: pytest.FixtureRequest,
    loop_model: Path,
    opening_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A thinking that never ends: only the server's forced close ends it."""
    log = tmp_path_factory.mktemp("llama-server-loop") / "server.log"
    template = opening_template if request.param == OPENS else None
    s = start_llama_server(BINARY, loop_model, log, alias="r1-loop", n_ctx=1024, template=template)
    yield s
    s.stop()


@pytest.fixture(scope="module", params=[OWN, OPENS])
def inline_server(
    request: pytest.FixtureRequest,
    scripted_model: Path,
    opening_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """No reasoning parser (`<think>…</think>` stays in the content) and a name that says
    nothing of thinking: what the reply is must come from the stream and the template."""
    log = tmp_path_factory.mktemp("llama-server-inline") / "server.log"
    template = opening_template if request.param == OPENS else None
    s = start_llama_server(
        BINARY,
        scripted_model,
        log,
        alias="plain-model",
        n_ctx=1024,
        reasoning_format="none",
        template=template,
    )
    yield s
    s.stop()


def ask(server: Server, home: Path, *args: str) -> dict[str, object]:
    out = run_cli("ask", "--json", "--api-base", server.base, *args, "What is 2+2?", home=home)
    assert out.returncode == 0, out.stderr.decode()
    data: dict[str, object] = json.loads(out.stdout)
    return data


def stats(reply: dict[str, object]) -> dict[str, object]:
    s = reply["stats"]
    assert isinstance(s, dict)
    return s


class Served:
    """The chat requests a server takes from now on, as its log tells (the server's word, not
    r1chat's): how many it began and how many of them a closed connection cancelled."""

    def __init__(self, server: Server) -> None:
        assert server.log is not None
        self.log = server.log
        self.mark = self.log.stat().st_size

    def _text(self) -> str:
        return self.log.read_bytes()[self.mark :].decode("utf-8", "replace")

    def count(self) -> tuple[int, int]:
        """(requests begun, requests cancelled), once every begun one was released: the log is
        written by a thread of the server's, a moment after the reply went out."""
        end = time.monotonic() + 10
        while True:
            text = self._text()
            begun = text.count("launch_slot_:")
            if text.count("release:") >= begun or time.monotonic() > end:
                return begun, text.count("stop: cancel task")
            time.sleep(0.05)


def steered_turn(
    engine: RemoteEngine, control: ThinkingControl, *, answer_now_after: int | None = None
) -> tuple[TurnResult, list[TurnEvent]]:
    """One turn through `run_turn`; "answer now" after that many thinking deltas."""
    events: list[TurnEvent] = []
    thought = 0
    params = SamplingParams(max_tokens=120, seed=1)
    for ev in run_turn(engine, [], "What is 2+2?", params, control=control):
        events.append(ev)
        if isinstance(ev, Delta) and ev.kind == "think":
            thought += 1
            if thought == answer_now_after:
                control.answer_now()
        if isinstance(ev, TurnDone):
            return ev.result, events
    raise AssertionError("the turn ended without a TurnDone")


def test_reasoning_content_gives_what_the_local_engine_gives(
    server: Server, scripted_model: Path, r1home: Path
) -> None:
    remote = ask(server, r1home)
    local = json.loads(
        run_cli("ask", "--json", "-m", str(scripted_model), "What is 2+2?", home=r1home).stdout
    )
    for key in ("thinking", "answer", "boxed", "thinking_ended"):
        assert remote[key] == local[key], key
    assert remote["answer"] == SCRIPT_ANSWER
    assert (
        "llama-server"
        in run_cli(
            "doctor", "--json", home=r1home, env={"R1CHAT_API_BASE": server.base}
        ).stdout.decode()
    )


def test_a_budget_is_ended_by_the_server_in_the_same_stream(server: Server, r1home: Path) -> None:
    served = Served(server)
    reply = ask(server, r1home, "--think-budget", "2")
    assert reply["thinking_ended"] == "budget"
    assert stats(reply)["steered_by"] == "server"
    assert str(reply["thinking"]).startswith("Two plus")
    assert str(reply["thinking"]).rstrip().endswith(CLOSING)
    assert reply["answer"] == SCRIPT_ANSWER
    # Cut and continued, it would have been two requests, the first one cancelled.
    assert served.count() == (1, 0)


def test_no_thinking_is_a_server_budget_of_one_token(server: Server, r1home: Path) -> None:
    served = Served(server)
    reply = ask(server, r1home, "--think-budget", "0")
    assert reply["thinking"] == "" and reply["answer"] == SCRIPT_ANSWER
    assert SCRIPT_THINKING.strip() not in str(reply["answer"])
    assert reply["thinking_ended"] == "budget"
    assert served.count() == (1, 0)


def test_a_thinking_that_never_ends_is_capped_by_the_server(loop_server: Server) -> None:
    engine = RemoteEngine(loop_server.base)
    served = Served(loop_server)
    result, _ = steered_turn(engine, ThinkingControl(ReasoningParams(budget=5)))
    engine.close()
    assert result.thinking_ended == "budget"
    assert result.stats.steered_by == "server"
    assert CLOSING in result.thinking
    # Five tokens of the loop, then the server's closing: r1chat's own backstop (the budget and
    # 48 tokens) would have let the loop go round more than once.
    thought = result.thinking[: result.thinking.index(CLOSING)].strip()
    assert thought and LOOP_THINKING.startswith(thought)
    assert result.answer.strip()
    assert served.count() == (1, 0)


def test_answer_now_is_ended_by_the_server_in_the_same_stream(loop_server: Server) -> None:
    engine = RemoteEngine(loop_server.base)
    served = Served(loop_server)
    result, events = steered_turn(engine, ThinkingControl(ReasoningParams()), answer_now_after=3)
    engine.close()
    assert result.thinking_ended == "user"
    assert result.stats.steered_by == "server"
    assert result.thinking.rstrip().endswith(CLOSING)
    assert [e.how for e in events if isinstance(e, ThinkingEnded)] == ["user"]
    assert result.answer.strip()
    assert served.count() == (1, 0)


def test_answer_now_without_the_control_endpoint_cuts_and_continues(server: Server) -> None:
    engine = RemoteEngine(server.base)
    # A server without the endpoint (vLLM, an older llama-server): r1chat ends the stream and
    # continues the thinking with its closing text in a second request.
    engine.kind = dataclasses.replace(engine.kind, control=False)
    served = Served(server)
    result, _ = steered_turn(engine, ThinkingControl(ReasoningParams()), answer_now_after=1)
    engine.close()
    assert result.thinking_ended == "user"
    assert result.stats.steered_by == "r1chat"
    assert result.thinking.startswith("Two") and CLOSING in result.thinking
    assert result.answer == SCRIPT_ANSWER
    assert served.count() == (2, 1)


def test_inline_tags_are_split_without_a_reasoning_parser_or_a_telling_name(
    inline_server: Server, r1home: Path
) -> None:
    reply = ask(inline_server, r1home)
    assert str(reply["thinking"]).strip() == SCRIPT_THINKING.strip()
    assert reply["answer"] == SCRIPT_ANSWER
    assert reply["thinking_ended"] == "model"
    assert "<think>" not in str(reply["thinking"]) + str(reply["answer"])
    assert "</think>" not in str(reply["thinking"]) + str(reply["answer"])


def test_inline_tags_with_a_budget_the_server_ends(
    inline_server: Server, r1home: Path, request: pytest.FixtureRequest
) -> None:
    reply = ask(inline_server, r1home, "--think-budget", "2")
    assert reply["answer"] == SCRIPT_ANSWER
    if request.node.callspec.params["inline_server"] == OPENS:
        # The template opens the thinking: r1chat knows the model thinks, the server caps it.
        assert reply["thinking_ended"] == "budget"
        assert stats(reply)["steered_by"] == "server"
        assert str(reply["thinking"]).startswith("Two plus")
        assert str(reply["thinking"]).rstrip().endswith(CLOSING)
    else:
        # Nothing says this model thinks until it does: the budget is not applied (ask says so),
        # and what it thought is still thinking.
        assert reply["thinking_ended"] == "model"
        assert str(reply["thinking"]).strip() == SCRIPT_THINKING.strip()


# --- canitoolcall's live probe -----------------------------------------------------------------

# Its scenarios that need no tool call from the model: these a tiny scripted model can pass.
NO_CALL_SCENARIOS = ("no-call", "tool-result-followup")


def artifacts(tmp_path: Path) -> Path:
    """Where reports are kept: $R1CHAT_TEST_ARTIFACTS (CI keeps it), else the test's tmp dir."""
    where = Path(os.environ.get("R1CHAT_TEST_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_canitoolcall_probe_finds_no_leak_in_what_llama_server_sends(
    server: Server, tmp_path: Path
) -> None:
    pytest.importorskip("canitoolcall")
    from canitoolcall.probe import ProbeExpectation, Scenario, probe

    out = artifacts(tmp_path)
    report = out / "canitoolcall-probe-llama-server.json"
    # Every scenario of `canitoolcall probe` offers tools. The scripted model never calls one,
    # so those that expect a call fail for that alone; the probe's other checks (no `<think>`
    # or tool markup in the content or the reasoning, no U+FFFD, stream = non-stream) hold in
    # every scenario.
    run = subprocess.run(
        [sys.executable, "-m", "canitoolcall", "probe", "--base-url", server.base,
         "--model", "r1-scripted", "--json", str(report), "--concurrency", "1",
         "--timeout", "60"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (out / "canitoolcall-probe-llama-server.txt").write_text(run.stdout + run.stderr)
    print(f"canitoolcall probe report: {report}")
    assert run.returncode in (0, 1), run.stderr
    outcomes = json.loads(report.read_text())["outcomes"]
    for o in outcomes:
        where = f"{o['scenario_id']} {o['check']} stream={o['stream']}: {o['detail']}"
        if o["scenario_id"] in NO_CALL_SCENARIOS or o["check"] == "stream_equals_nonstream":
            assert o["status"] == "pass", where
        else:
            assert o["status"] == "fail", where
            assert str(o["detail"]).startswith("expected at least"), where
            assert ";" not in str(o["detail"]), where  # the missing call is the only problem
    assert {o["scenario_id"] for o in outcomes} >= set(NO_CALL_SCENARIOS)

    # The same checks on requests with no tools at all: how r1chat talks to the server.
    asked = Scenario(
        id="no-tools",
        description="A question without tools: thinking in reasoning_content, then the answer.",
        messages=({"role": "user", "content": "What is 2+2?"},),
        tools=(),
        expect=ProbeExpectation(expect_reasoning=True, expect_content=True),
    )
    followed = dataclasses.replace(
        asked,
        id="no-tools-follow-up",
        description="A second question after an answer (its thinking left out, as r1chat does).",
        messages=(
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": SCRIPT_ANSWER},
            {"role": "user", "content": "Are you sure?"},
        ),
    )
    plain = probe(server.base, "r1-scripted", scenarios=[asked, followed], concurrency=1)
    (out / "canitoolcall-no-tools-llama-server.json").write_text(
        json.dumps(plain.to_dict(), indent=1, ensure_ascii=False)
    )
    assert plain.summary()["pass"] == len(plain.outcomes) == 6, plain.render_text()


def test_the_replys_confidence_comes_from_the_servers_logprobs(
    server: Server, scripted_model: Path, r1home: Path
) -> None:
    """llama-server sends `top_logprobs` for the thinking's tokens too: the reply's DeepConf
    confidence is measured as the local engine measures it (the same model, the same tokens)."""
    remote = stats(ask(server, r1home))
    local = json.loads(
        run_cli("ask", "--json", "-m", str(scripted_model), "What is 2+2?", home=r1home).stdout
    )["stats"]
    assert isinstance(remote["confidence"], float) and remote["confidence"] > 0
    # The server's logprobs are over the whole vocabulary, the local ones over the top-k
    # candidates; on a model this sure of every token they differ by little.
    assert remote["confidence_mean"] == pytest.approx(local["confidence_mean"], rel=0.1)
