"""The remote engine against llama.cpp's own `llama-server` (built from the llama.cpp source
vendored in the pinned llama-cpp-python sdist): the `reasoning_content` path, a budget ended by
r1chat and continued in the thinking, and no thinking at all. A second tier: `./scripts/test
--servers` builds the server (minutes, once) and runs these; without it they are skipped."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import run_cli
from servers import Server, start_llama_server
from tiny_models import SCRIPT_ANSWER, SCRIPT_THINKING

BINARY = os.environ.get("R1CHAT_LLAMA_SERVER", "")
pytestmark = pytest.mark.skipif(
    not BINARY, reason="llama-server: run ./scripts/test --servers (builds it once)"
)


@pytest.fixture(scope="module")
def server(scripted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    s = start_llama_server(BINARY, scripted_model, log, alias="r1-scripted", n_ctx=1024)
    yield s
    s.stop()


def ask(server: Server, home: Path, *args: str) -> dict[str, object]:
    out = run_cli("ask", "--json", "--api-base", server.base, *args, "What is 2+2?", home=home)
    assert out.returncode == 0, out.stderr.decode()
    data: dict[str, object] = json.loads(out.stdout)
    return data


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


def test_a_budget_is_ended_by_r1chat_and_continued_in_the_thinking(
    server: Server, r1home: Path
) -> None:
    reply = ask(server, r1home, "--think-budget", "2")
    assert reply["thinking_ended"] == "budget"
    assert str(reply["thinking"]).startswith("Two plus")
    assert "Time is up" in str(reply["thinking"])
    assert reply["answer"] == SCRIPT_ANSWER


def test_no_thinking_asks_llama_server_for_a_budget_of_zero(server: Server, r1home: Path) -> None:
    reply = ask(server, r1home, "--think-budget", "0")
    assert reply["thinking"] == "" and reply["answer"] == SCRIPT_ANSWER
    assert SCRIPT_THINKING.strip() not in str(reply["answer"])
