"""The remote engine against a real server: llama-cpp-python's own OpenAI-compatible server
(`python -m llama_cpp.server`) on loopback, running the tiny models on real llama.cpp."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import run_cli
from servers import Server, free_port, start_llama_cpp_server
from tiny_models import SCRIPT_ANSWER, SCRIPT_THINKING

from r1chat.engines.remote import RemoteEngine
from r1chat.errors import R1ChatError
from r1chat.reasoning import ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.turn import Delta, Turn, TurnDone, run_turn

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def scripted_server(
    scripted_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("srv") / "server.log"
    server = start_llama_cpp_server(scripted_model, log, alias="r1-scripted", n_ctx=512)
    yield server
    server.stop()


@pytest.fixture
def loop_server(loop_model: Path, tmp_path: Path) -> Iterator[Server]:
    """A model whose thinking goes round for ever (the stock server's stream is too slow for
    the noise model: it detokenizes the whole reply again on every token)."""
    server = start_llama_cpp_server(loop_model, tmp_path / "loop.log", alias="r1-loop")
    yield server
    server.stop()


def endless(engine: RemoteEngine, cancel: threading.Event | None = None) -> Turn:
    # The guard would end the loop and ask to continue, which this server cannot: only watch.
    control = ThinkingControl(ReasoningParams(on_loop="warn"))
    return run_turn(engine, [], "q", SamplingParams(max_tokens=100_000), cancel, control)


def ask_json(*args: str, home: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    out = run_cli("ask", "--json", *args, home=home, env=env)
    assert out.returncode == 0, out.stderr.decode()
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_ask_through_the_server_says_what_the_local_engine_says(
    scripted_server: Server, scripted_model: Path, r1home: Path
) -> None:
    remote = ask_json("--api-base", scripted_server.base, "What is 2+2?", home=r1home)
    local = ask_json("--model", str(scripted_model), "What is 2+2?", home=r1home)
    for key in ("thinking", "answer", "boxed", "finish_reason", "thinking_ended"):
        assert remote[key] == local[key], key
    assert remote["answer"] == SCRIPT_ANSWER and remote["boxed"] == "4"
    assert str(remote["thinking"]).strip() == SCRIPT_THINKING.strip()
    assert remote["model"] == "r1-scripted"
    # Piped, stdout is the answer alone, as with the local engine.
    plain = run_cli("ask", "--api-base", scripted_server.base, "Again?", home=r1home)
    assert plain.returncode == 0 and plain.stdout.decode().strip() == SCRIPT_ANSWER
    listed = json.loads(run_cli("history", "list", "--json", home=r1home).stdout)
    assert [c["model"] for c in listed] == ["r1-scripted", "tiny-r1-scripted", "r1-scripted"]


def test_a_follow_up_through_the_server_goes_on(scripted_server: Server, r1home: Path) -> None:
    ask_json("--api-base", scripted_server.base, "First?", home=r1home)
    again = ask_json("--api-base", scripted_server.base, "-c", "Second?", home=r1home)
    assert again["answer"] == SCRIPT_ANSWER


def one_line_error(out: object, code: int) -> str:
    assert out.returncode == code, (out.returncode, out.stderr)  # type: ignore[attr-defined]
    err = out.stderr.decode().strip()  # type: ignore[attr-defined]
    assert err.startswith("r1chat: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_wrong_model_and_a_closed_port_are_one_line(
    scripted_server: Server, r1home: Path
) -> None:
    err = one_line_error(
        run_cli("ask", "--api-base", scripted_server.base, "-m", "nope", "q", home=r1home), 2
    )
    assert "no model 'nope'" in err and "r1-scripted" in err
    closed = f"http://127.0.0.1:{free_port()}/v1"
    err = one_line_error(run_cli("ask", "--api-base", closed, "q", home=r1home), 1)
    assert "connection refused" in err
    assert (
        not (r1home / "history.sqlite3").exists()
        or "q" not in run_cli("history", "list", home=r1home).stdout.decode()
    )


def test_a_prompt_over_the_servers_context_is_its_own_message_and_not_saved(
    scripted_server: Server, r1home: Path
) -> None:
    long = "word " * 3000
    # llama_cpp.server answers 200, then ends the stream without a word (vLLM and llama-server
    # refuse with a 400 and their own message: the replay tests cover that).
    err = one_line_error(run_cli("ask", "--api-base", scripted_server.base, long, home=r1home), 1)
    assert "without a reply" in err and "context" in err
    listed = run_cli("history", "list", "--json", home=r1home)
    assert json.loads(listed.stdout or b"[]") == []


def test_the_key_comes_from_the_environment_and_is_never_shown(
    scripted_model: Path, tmp_path: Path, r1home: Path
) -> None:
    secret = "sk-right-key-7f3a"
    server = start_llama_cpp_server(
        scripted_model, tmp_path / "keyed.log", alias="r1-keyed", n_ctx=512, api_key=secret
    )
    try:
        wrong = run_cli(
            "ask", "--api-base", server.base, "q", home=r1home, env={"R1CHAT_API_KEY": "sk-wrong"}
        )
        err = one_line_error(wrong, 2)
        assert "refused the API key" in err and "sk-wrong" not in err
        right = ask_json(
            "--api-base", server.base, "q", home=r1home, env={"R1CHAT_API_KEY": secret}
        )
        assert right["answer"] == SCRIPT_ANSWER
        shown = run_cli("config", "show", home=r1home, env={"R1CHAT_API_KEY": secret})
        assert secret not in shown.stdout.decode() + shown.stderr.decode()
        db = (r1home / "history.sqlite3").read_bytes()
        assert secret.encode() not in db
    finally:
        server.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def test_a_stop_ends_decoding_on_the_server(loop_server: Server) -> None:
    assert loop_server.process is not None
    engine = RemoteEngine(loop_server.base)
    cancel = threading.Event()
    seen = 0
    t = endless(engine, cancel)
    for ev in t:
        if isinstance(ev, Delta):
            seen += 1
            if seen == 20:
                cancel.set()
        if isinstance(ev, TurnDone):
            assert ev.result.stats.finish_reason == "cancelled"
    # Decoding 100,000 tokens would keep the server busy for minutes: once it has noticed the
    # closed connection, it idles.
    pid = loop_server.process.pid
    end = time.monotonic() + 30
    while True:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        used = cpu_seconds(pid) - before
        if used < 0.3:
            break
        assert time.monotonic() < end, f"the server still decodes ({used:.2f} CPU s per second)"
    engine.close()


def test_a_server_killed_mid_reply_is_one_line(loop_server: Server) -> None:
    assert loop_server.process is not None
    engine = RemoteEngine(loop_server.base)
    t = endless(engine)
    seen = 0
    with pytest.raises(R1ChatError) as e:
        for ev in t:
            if isinstance(ev, Delta):
                seen += 1
                if seen == 20:
                    loop_server.process.kill()
    assert "closed the connection mid-reply" in str(e.value) or "ended the stream" in str(e.value)
    engine.close()


def test_doctor_checks_the_configured_server(scripted_server: Server, r1home: Path) -> None:
    out = run_cli("doctor", "--json", home=r1home, env={"R1CHAT_API_BASE": scripted_server.base})
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["server"]["status"] == "ok", checks["server"]
    assert "r1-scripted" in checks["server"]["detail"] and "ms" in checks["server"]["detail"]
    assert "model" not in checks  # the server's model: nothing to load here
    closed = f"http://127.0.0.1:{free_port()}/v1"
    out = run_cli("doctor", "--json", home=r1home, env={"R1CHAT_API_BASE": closed})
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert out.returncode == 1 and checks["server"]["status"] == "fail"
    assert "connection refused" in checks["server"]["detail"]


def test_bench_measures_a_server(scripted_server: Server, r1home: Path) -> None:
    out = run_cli(
        "bench", "--api-base", scripted_server.base, "--json", "--tokens", "8", home=r1home
    )
    assert out.returncode == 0, out.stderr.decode()
    result = json.loads(out.stdout)
    assert result["model"] == "r1-scripted" and "127.0.0.1" in result["backend"]
    assert result["ttft_s"] > 0 and result["tokens"] >= 2


@pytest.mark.parametrize("alias", ["models/plain.gguf", "Qwen/Qwen3-8B"])
def test_a_model_not_named_like_r1_is_read_from_what_it_sends(
    scripted_model: Path, tmp_path: Path, r1home: Path, alias: str
) -> None:
    """llama_cpp.server has no reasoning parser and serves the model under any name (by
    default its file path): the thinking and the answer are read from the tags it sends, not
    from the name. (The forced-open template, where the difference showed, is in the
    llama-server tier: test_llama_server.py; the replayed cases in test_remote_reading.py.)"""
    server = start_llama_cpp_server(scripted_model, tmp_path / "plain.log", alias=alias)
    try:
        reply = ask_json("--api-base", server.base, "What is 2+2?", home=r1home)
    finally:
        server.stop()
    assert (reply["thinking"], reply["answer"]) == (SCRIPT_THINKING, SCRIPT_ANSWER)
