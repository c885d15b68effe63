"""`bench --api-base`: the tokens it asked for and the tokens it got, and a warning when a server
stops short (a replayed llama-server and llama_cpp.server, and the real llama_cpp.server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke
from servers import ReplayServer, Reply, Server, chunk, start_llama_cpp_server
from typer.testing import Result

from r1chat.bench import shortfall
from r1chat.commands.bench import bench

LLAMA_SERVER_PROPS = {
    "default_generation_settings": {"n_ctx": 4096},
    "total_slots": 4,
    "chat_template": "{{ '<|Assistant|><think>\\n' }}",
}
LLAMA_CPP_SERVER_MODELS = [
    {"id": "/m.gguf", "object": "model", "owned_by": "me", "permissions": []}
]


def run_bench(*args: str) -> Result:
    return invoke(bench, "bench", *args)


def usage(completion: int) -> dict[str, Any]:
    return {
        **chunk({}),
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": completion},
    }


def short_reply(pieces: int, completion: int | None, finish: str = "stop") -> Reply:
    """A reply that thinks `pieces` events' worth and stops, with the server's own count."""
    evs: list[Any] = [chunk({"role": "assistant", "content": None})]
    evs += [chunk({"reasoning_content": f" w{i}"}) for i in range(pieces)]
    evs.append(chunk({}, finish))
    if completion is not None:
        evs.append(usage(completion))
    return Reply(evs, gap_s=0.002)


def llama_server(made: list[ReplayServer], reply: Reply) -> ReplayServer:
    s = ReplayServer([reply], models=[{"id": "r1", "object": "model"}])
    s.extra["/props"] = LLAMA_SERVER_PROPS
    made.append(s)
    return s


def test_a_server_that_stops_early_is_reported_asked_and_got(
    made: list[ReplayServer], r1home: Path
) -> None:
    """The issue's case: 256 asked, the server stopped at 37 and bench said nothing."""
    s = llama_server(made, short_reply(5, 37))
    out = run_bench("--api-base", s.base, "--tokens", "256", "--json")
    assert out.exit_code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["tokens_asked"] == 256
    # The server's count (37) wins over the 5 events r1chat saw: an event may carry several.
    assert result["tokens_got"] == 37 and result["tokens"] == 37
    assert result["tokens_streamed"] == 5
    assert result["finish_reason"] == "stop"
    assert result["decode_tok_s"] == pytest.approx(36 / result["decode_s"])
    assert out.stderr == (
        "r1chat: warning: the server stopped after 37 of 256 tokens (it ended the reply: it may"
        " not take ignore_eos): its speed is measured on 37\n"
    )
    body = s.requests[0][0]
    assert body["max_tokens"] == 256 and body["ignore_eos"] is True


def test_the_table_says_asked_and_got(made: list[ReplayServer], r1home: Path) -> None:
    s = llama_server(made, short_reply(5, 37))
    out = run_bench("--api-base", s.base, "--tokens", "256")
    assert out.exit_code == 0, out.stderr
    assert "asked 256, got 37" in out.stdout
    assert "llama-server @ 127.0.0.1" in out.stdout
    assert out.stderr.startswith("r1chat: warning: the server stopped after 37 of 256 tokens")
    assert out.stderr.count("\n") == 1


def test_without_a_usage_count_the_streamed_tokens_count_held_ones_too(
    made: list[ReplayServer], r1home: Path
) -> None:
    """Content with no `<think>` is held (not known to be thinking or answer) until the end:
    decoded all the same, so counted."""
    pieces = ["Two", " plus", " two", " makes", " four", "."]
    evs: list[Any] = [chunk({"content": t}) for t in pieces] + [chunk({}, "stop")]
    s = ReplayServer([Reply(evs)], models=[{"id": "r1"}])
    made.append(s)
    out = run_bench("--api-base", s.base, "--tokens", "64", "--json")
    assert out.exit_code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["tokens_asked"] == 64 and result["tokens_got"] == 6
    assert result["tokens_streamed"] == 6
    assert "stopped after 6 of 64 tokens" in out.stderr


def test_a_full_run_warns_of_nothing(made: list[ReplayServer], r1home: Path) -> None:
    s = llama_server(made, short_reply(8, 8, finish="length"))
    out = run_bench("--api-base", s.base, "--tokens", "8", "--json")
    assert out.exit_code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["tokens_asked"] == result["tokens_got"] == 8
    assert out.stderr == ""


def test_llama_cpp_server_stops_at_its_end_of_sequence(
    made: list[ReplayServer], r1home: Path
) -> None:
    """llama_cpp.server takes no ignore_eos: the reply ends where the model ends it."""
    evs: list[Any] = [chunk({"content": t}) for t in ["Four", "</think>", "\n\n", "4"]]
    evs += [chunk({}, "stop"), usage(4)]
    s = ReplayServer([Reply(evs)], models=LLAMA_CPP_SERVER_MODELS)
    made.append(s)
    out = run_bench("--api-base", s.base, "--tokens", "128", "--json")
    assert out.exit_code == 0, out.stderr
    result = json.loads(out.stdout)
    assert "llama_cpp.server" in result["backend"]
    assert (result["tokens_asked"], result["tokens_got"]) == (128, 4)
    assert "stopped after 4 of 128 tokens" in out.stderr


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"tokens_asked": 256, "tokens_got": 256, "finish_reason": "length"}, None),
        ({"tokens": 24}, None),  # a local run: its engine ignores the end of sequence
        (
            {"tokens_asked": 256, "tokens_got": 100, "finish_reason": "length"},
            "the server stopped after 100 of 256 tokens (it capped the reply: its context or a"
            " token limit of its own): its speed is measured on 100",
        ),
        (
            {"tokens_asked": 1024, "tokens_got": 2000, "finish_reason": "length"},
            "the server counted 2,000 tokens for the 1,024 asked: its speed is measured on 2,000",
        ),
        (
            {"tokens_asked": 256, "tokens_got": 9, "finish_reason": "cancelled"},
            "the server stopped after 9 of 256 tokens: its speed is measured on 9",
        ),
    ],
)
def test_the_shortfall_line(result: dict[str, Any], expected: str | None) -> None:
    assert shortfall(result) == expected


@pytest.fixture(scope="module")
def scripted_server(
    scripted_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    pytest.importorskip("uvicorn")
    log = tmp_path_factory.mktemp("srv") / "server.log"
    server = start_llama_cpp_server(scripted_model, log, alias="r1-scripted", n_ctx=512)
    yield server
    server.stop()


def test_a_real_llama_cpp_server_says_asked_and_got(scripted_server: Server, r1home: Path) -> None:
    """The scripted model ends its reply after a few dozen tokens, and llama_cpp.server does not
    take ignore_eos: 256 asked, far fewer got, and bench says so."""
    out = run_bench(
        "--api-base", scripted_server.base, "--tokens", "256", "--prompt-tokens", "64", "--json"
    )
    assert out.exit_code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["tokens_asked"] == 256
    assert 2 <= result["tokens_got"] < 256
    assert result["finish_reason"] == "stop"
    got = result["tokens_got"]
    assert f"the server stopped after {got} of 256 tokens" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
