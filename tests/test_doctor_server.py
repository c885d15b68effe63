"""`doctor --api-base`: what the server supports (context, parallel requests, thinking budget,
answer now) and, from a probe request of a few tokens, how it sends the thinking; against
replayed llama-server, llama_cpp.server, vLLM and a plain server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke
from servers import ReplayServer, Reply, Server, chunk, start_llama_cpp_server
from typer.testing import Result

from r1chat.commands.doctor import PROBE_TOKENS, doctor

LLAMA_SERVER_PROPS = {
    "default_generation_settings": {"n_ctx": 4096},
    "total_slots": 4,
    "chat_template": "{{ '<|Assistant|><think>\\n' }}",
}
LLAMA_CPP_SERVER_MODELS = [
    {"id": "/m.gguf", "object": "model", "owned_by": "me", "permissions": []}
]
VLLM_MODELS = [{"id": "r1", "object": "model", "max_model_len": 32768}]
SUPPORT = ("server", "context", "parallel", "budget", "answer now", "reasoning")


def run_doctor(*args: str) -> Result:
    return invoke(doctor, "doctor", *args)


def doctor_json(*args: str) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    out = run_doctor("--json", *args)
    data = json.loads(out.stdout)
    return out.exit_code, data, {c["name"]: c for c in data["checks"]}


def thinking(field: str, **extra: Any) -> Reply:
    """A reply whose thinking comes in `field` (`reasoning_content`, `reasoning`)."""
    evs: list[Any] = [chunk({"role": "assistant", "content": ""})]
    evs += [chunk({field: t, **extra}) for t in ["Two", " plus", " two"]]
    evs += [chunk({"content": "4"}), chunk({}, "length")]
    return Reply(evs)


def content(pieces: list[str]) -> Reply:
    return Reply([chunk({"content": t}) for t in pieces] + [chunk({}, "length")])


def serve(
    made: list[ReplayServer],
    replies: list[Reply],
    models: list[dict[str, Any]] | None = None,
    props: dict[str, Any] | None = None,
) -> ReplayServer:
    s = ReplayServer(replies, models=models or [{"id": "r1", "object": "model"}])
    if props is not None:
        s.extra["/props"] = props
    made.append(s)
    return s


def test_llama_server_supports_everything_and_sends_reasoning_content(
    made: list[ReplayServer], r1home: Path
) -> None:
    s = serve(made, [thinking("reasoning_content")], props=LLAMA_SERVER_PROPS)
    code, data, checks = doctor_json("--api-base", s.base)
    assert code == 0 and data["ok"] is True
    assert list(checks)[-len(SUPPORT) :] == list(SUPPORT)
    assert all(checks[n]["status"] == "ok" for n in SUPPORT), checks
    assert data["server"] == {
        "kind": "llama-server",
        "host": s.base.split("/")[2],
        "model": "r1",
        "n_ctx": 4096,
        "parallel_requests": 4,
        "thinking_budget": "server",
        "budget_field": "thinking_budget_tokens",
        "answer_now": "control_endpoint",
        "reasoning": "reasoning_content",
        "probe": {"max_tokens": PROBE_TOKENS, "error": None},
    }
    assert checks["context"]["detail"] == "4,096 tokens"
    assert checks["parallel"]["detail"] == "4 requests at once (llama-server's slots)"
    assert checks["budget"]["detail"] == "on the server (thinking_budget_tokens)"
    assert "/v1/chat/completions/control" in checks["answer now"]["detail"]
    assert checks["reasoning"]["detail"] == (
        f"reasoning_content field, from a probe request of at most {PROBE_TOKENS} tokens"
    )
    # One probe: small, streamed, to the server's model.
    assert len(s.requests) == 1
    body, _ = s.requests[0]
    assert body["max_tokens"] == PROBE_TOKENS <= 32
    assert body["stream"] is True and body["model"] == "r1"


def test_the_text_output_has_a_line_for_each(made: list[ReplayServer], r1home: Path) -> None:
    s = serve(made, [thinking("reasoning_content")], props=LLAMA_SERVER_PROPS)
    out = run_doctor("--api-base", s.base)
    assert out.exit_code == 0, out.stdout
    lines = out.stdout.splitlines()[-len(SUPPORT) :]
    assert [ln[6:17].strip() for ln in lines] == list(SUPPORT)
    assert lines[0].startswith("ok    server       llama-server at 127.0.0.1:")
    assert lines[1] == "ok    context      4,096 tokens"
    assert lines[2] == "ok    parallel     4 requests at once (llama-server's slots)"
    assert lines[3] == "ok    budget       on the server (thinking_budget_tokens)"
    assert lines[4].startswith("ok    answer now   on the server")
    assert lines[5].startswith("ok    reasoning    reasoning_content field, from a probe request")


def test_llama_cpp_server_serves_one_request_and_cannot_continue(
    made: list[ReplayServer], r1home: Path
) -> None:
    """Its template opens the thinking in the prompt: the content holds only the closing tag."""
    s = serve(made, [content(["Two", " plus", " two", "</think>", "4"])], LLAMA_CPP_SERVER_MODELS)
    code, data, checks = doctor_json("--api-base", s.base)
    assert code == 0 and data["ok"] is True  # what a server cannot do is a warning, no failure
    server = data["server"]
    assert server["kind"] == "llama_cpp.server"
    assert server["n_ctx"] is None and checks["context"]["detail"] == "not said"
    assert server["parallel_requests"] == 1
    assert checks["parallel"]["detail"].startswith("1: it serves one request at a time")
    assert server["thinking_budget"] is None and server["answer_now"] is None
    for name in ("budget", "answer now"):
        assert checks[name]["status"] == "warn"
        assert checks[name]["detail"].startswith("not available: llama_cpp.server cannot continue")
        assert "llama-server or vLLM" in checks[name]["fix"]
    assert server["reasoning"] == "inline"
    assert checks["reasoning"]["detail"].startswith("inline <think> tags, from a probe")
    assert "/props" not in "".join(s.gets)  # asking it more cuts a running stream short


def test_vllm_sends_reasoning_and_takes_a_budget_field(
    made: list[ReplayServer], r1home: Path
) -> None:
    s = serve(made, [thinking("reasoning")], VLLM_MODELS)
    code, data, checks = doctor_json("--api-base", s.base)
    assert code == 0
    server = data["server"]
    assert (server["kind"], server["n_ctx"], server["parallel_requests"]) == ("vLLM", 32768, None)
    assert checks["parallel"]["detail"] == "not said"
    assert server["thinking_budget"] == "server"
    assert server["budget_field"] == "thinking_token_budget"
    assert server["answer_now"] == "cut_and_continue"
    assert checks["answer now"]["detail"] == "r1chat cuts and continues"
    assert server["reasoning"] == "reasoning"
    assert checks["reasoning"]["detail"].startswith("reasoning field, from a probe")


def test_ollamas_reasoning_beside_an_empty_content(made: list[ReplayServer], r1home: Path) -> None:
    s = serve(made, [thinking("reasoning", role="assistant", content="")])
    s.extra["/api/version"] = {"version": "0.9.0"}
    code, data, checks = doctor_json("--api-base", s.base)
    assert code == 0
    assert data["server"]["kind"] == "Ollama" and data["server"]["reasoning"] == "reasoning"
    assert checks["budget"]["status"] == "warn"


def test_inline_tags_and_no_thinking_on_a_plain_server(
    made: list[ReplayServer], r1home: Path
) -> None:
    s = serve(made, [content(["<think>", "\n", "Two"]), content(["Four", ".", " Done"])])
    _, data, _ = doctor_json("--api-base", s.base)
    assert data["server"]["kind"] == "server" and data["server"]["reasoning"] == "inline"
    _, data, checks = doctor_json("--api-base", s.base)
    assert data["server"]["reasoning"] == "none"
    assert checks["reasoning"]["status"] == "ok"
    assert checks["reasoning"]["detail"].startswith(
        f"no thinking seen in a probe request of at most {PROBE_TOKENS} tokens"
    )


def test_untagged_content_is_thinking_where_the_template_opens_it(
    made: list[ReplayServer], r1home: Path
) -> None:
    """llama-server without a reasoning format, whose template writes `<think>`: the reply is
    the thinking until a `</think>` that a short probe does not reach."""
    s = serve(made, [content(["Two", " plus", " two"])], props=LLAMA_SERVER_PROPS)
    _, data, checks = doctor_json("--api-base", s.base)
    assert data["server"]["reasoning"] == "inline"
    assert "(the template opens the thinking)" in checks["reasoning"]["detail"]


def test_the_probe_stops_reading_once_it_knows(made: list[ReplayServer], r1home: Path) -> None:
    """The reading ends at the first reasoning event: the server's slow rest is not waited for."""
    evs: list[Any] = [chunk({"reasoning_content": f" w{i}"}) for i in range(40)]
    s = serve(made, [Reply([*evs, chunk({}, "length")], gap_s=0.25)], props=LLAMA_SERVER_PROPS)
    t0 = time.monotonic()
    _, data, _ = doctor_json("--api-base", s.base, "--no-load")
    assert data["server"]["reasoning"] is None  # --no-load: no probe
    _, data, _ = doctor_json("--api-base", s.base)
    assert data["server"]["reasoning"] == "reasoning_content"
    assert time.monotonic() - t0 < 5  # 40 events at 0.25 s would be 10 s


def test_no_load_sends_no_probe(made: list[ReplayServer], r1home: Path) -> None:
    s = serve(made, [thinking("reasoning_content")], props=LLAMA_SERVER_PROPS)
    code, data, checks = doctor_json("--api-base", s.base, "--no-load")
    assert code == 0 and s.requests == []
    assert data["server"]["reasoning"] is None and data["server"]["probe"] is None
    assert checks["reasoning"]["detail"] == "not probed (--no-load)"
    assert data["server"]["n_ctx"] == 4096  # what the server said is there all the same


KEY = "sk-doctor-probe-0123456789abcdef"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Reply(status=500, body={"error": {"message": f"model crashed; key was {KEY}"}}),
            "the server refused it (500: model crashed; key was ***)",
        ),
        (Reply(["data: {not json"]), "the server sent malformed JSON in its stream"),
        (
            Reply([{"choices": 5}]),
            "the server sent an event r1chat cannot read: choices that are not a list",
        ),
        (Reply([{"error": {"message": f"out of memory\n{KEY}"}}]), "the server failed"),
    ],
    ids=["500", "malformed", "wrong-type", "error-event"],
)
def test_a_failed_probe_is_a_one_line_warning_without_the_key(
    made: list[ReplayServer],
    r1home: Path,
    monkeypatch: pytest.MonkeyPatch,
    reply: Reply,
    expected: str,
) -> None:
    monkeypatch.setenv("R1CHAT_API_KEY", KEY)
    s = serve(made, [reply], props=LLAMA_SERVER_PROPS)
    out = run_doctor("--json", "--api-base", s.base)
    assert KEY not in out.stdout and KEY not in out.stderr
    data = json.loads(out.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert out.exit_code == 0 and data["ok"] is True  # the server is there: a warning
    assert checks["reasoning"]["status"] == "warn"
    detail = checks["reasoning"]["detail"]
    assert detail.startswith(f"a probe request of at most {PROBE_TOKENS} tokens failed: {expected}")
    assert "\n" not in detail and "Traceback" not in detail
    assert data["server"]["reasoning"] is None
    assert data["server"]["probe"]["error"] == detail.split(" failed: ", 1)[1]
    # The probe carried the key, as every request to the server does.
    assert s.requests[0][1]["Authorization"] == f"Bearer {KEY}"


def test_an_unreachable_server_has_no_support_lines(r1home: Path) -> None:
    code, data, checks = doctor_json("--api-base", "http://127.0.0.1:9/v1")
    assert code == 1 and checks["server"]["status"] == "fail"
    assert "context" not in checks and "server" not in data


@pytest.fixture(scope="module")
def scripted_server(
    scripted_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    pytest.importorskip("uvicorn")
    log = tmp_path_factory.mktemp("srv") / "server.log"
    server = start_llama_cpp_server(scripted_model, log, alias="r1-scripted", n_ctx=512)
    yield server
    server.stop()


def test_a_real_llama_cpp_server(scripted_server: Server, r1home: Path) -> None:
    """No reasoning parser: the scripted reply's `</think>` comes inline within the probe."""
    code, data, checks = doctor_json("--api-base", scripted_server.base)
    assert code == 0, checks
    assert data["server"]["kind"] == "llama_cpp.server"
    assert data["server"]["parallel_requests"] == 1
    assert data["server"]["reasoning"] == "inline"
    assert data["server"]["probe"] == {"max_tokens": PROBE_TOKENS, "error": None}
