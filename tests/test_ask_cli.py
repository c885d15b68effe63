"""`r1chat ask` as a user runs it: a real process, a real tiny model, pipes and signals."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny_models
from cli_support import Cli, user_env


def one_line_error(proc: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode in (1, 2), err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("r1chat: error: ")
    for n in needles:
        assert n in lines[0]
    return lines[0]


def test_json_output_has_exact_thinking_and_answer(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "--json", "hi")
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert data["thinking"] == tiny_models.SCRIPT_THINKING
    assert data["answer"] == tiny_models.SCRIPT_ANSWER
    assert data["boxed"] == "4"
    assert data["finish_reason"] == "stop"
    assert data["model"] == "tiny-r1-scripted"
    stats = data["stats"]
    for key in ("prompt_tokens", "thinking_tokens", "answer_tokens", "ttft_s", "decode_tok_s"):
        assert key in stats
    assert stats["thinking_tokens"] > 0 and stats["answer_tokens"] > 0
    assert proc.stderr == b""


def test_stdin_alone_is_the_question_and_pipe_gets_the_answer_only(
    cli: Cli, scripted_model: Path
) -> None:
    proc = cli("ask", "--model", str(scripted_model), stdin=b"hi\n")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode() == tiny_models.SCRIPT_ANSWER + "\n"


def test_stdin_with_a_question_is_attached_as_context(cli: Cli, scripted_model: Path) -> None:
    diff = b"--- a/x.py\n+++ b/x.py\n+print('hi')\n"
    proc = cli("ask", "--model", str(scripted_model), "--json", "review this", stdin=diff)
    assert proc.returncode == 0, proc.stderr.decode()
    q = json.loads(proc.stdout)["question"]
    assert q.startswith("review this\n\n```\n") and "+print('hi')" in q


def test_math_preset_wraps_the_question(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "--json", "--preset", "math", "2+2?")
    q = json.loads(proc.stdout)["question"]
    assert q.endswith("put your final answer within \\boxed{}.")


def test_stats_go_to_stderr(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "--stats", "hi")
    assert proc.stdout.decode() == tiny_models.SCRIPT_ANSWER + "\n"
    err = proc.stderr.decode()
    assert "thinking 7 tok" in err and "stop" in err


def test_missing_model_file(cli: Cli, tmp_path: Path) -> None:
    one_line_error(cli("ask", "--model", str(tmp_path / "nope.gguf"), "hi"), "not found")


def test_file_that_is_not_gguf(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "model.gguf"
    f.write_text("definitely not a model\n" * 100)
    one_line_error(cli("ask", "--model", str(f), "hi"), "not a GGUF")


def test_truncated_gguf(cli: Cli, noise_model: Path, tmp_path: Path) -> None:
    f = tmp_path / "cut.gguf"
    f.write_bytes(noise_model.read_bytes()[:20_000_000])
    one_line_error(cli("ask", "--model", str(f), "hi"), "truncated")


def test_corrupt_gguf_does_not_crash(cli: Cli, noise_model: Path, tmp_path: Path) -> None:
    data = bytearray(noise_model.read_bytes())
    data[100:4000] = os.urandom(3900)  # scramble metadata in the header
    f = tmp_path / "corrupt.gguf"
    f.write_bytes(bytes(data))
    proc = cli("ask", "--model", str(f), "hi")
    one_line_error(proc)


@pytest.mark.parametrize("args,stdin", [(["   "], b""), ([], b""), ([], b"  \n\n")])
def test_empty_question(cli: Cli, scripted_model: Path, args: list[str], stdin: bytes) -> None:
    proc = cli("ask", "--model", str(scripted_model), *args, stdin=stdin)
    one_line_error(proc, "empty question")
    assert proc.returncode == 2


def test_question_longer_than_the_context(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "--ctx", "256", stdin=b"word " * 2000)
    one_line_error(proc, "too long")


def test_unknown_model_alias(cli: Cli) -> None:
    one_line_error(cli("ask", "--model", "not-a-model", "hi"), "unknown model")


def test_offline_default_model_says_how_to_pass_a_file(cli: Cli) -> None:
    one_line_error(cli("ask", "hi"), "--model PATH")


def test_sigint_stops_generation_and_exits_130(r1home: Path, noise_model: Path) -> None:
    env = user_env(r1home)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "r1chat",
            "ask",
            "--model",
            str(noise_model),
            "--json",
            "--max-tokens",
            "100000",
            "hi",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    time.sleep(3)
    assert proc.poll() is None, "still generating"
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t < 5
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    data = json.loads(out)
    assert data["finish_reason"] == "cancelled"
    assert 0 < data["stats"]["completion_tokens"] < 8000
    assert len(data["thinking"]) > 0


def test_closed_pipe_exits_quietly(r1home: Path, smollm2_model: Path) -> None:
    env = user_env(r1home)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "r1chat",
            "ask",
            "--model",
            str(smollm2_model),
            "--max-tokens",
            "400",
            "--seed",
            "1",
            "Write a long story about a dragon.",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    proc.stdout.close()  # like `| head -c 1`
    t = time.monotonic()
    err = proc.stderr.read() if proc.stderr else b""
    proc.wait(timeout=30)
    assert first
    assert time.monotonic() - t < 10
    assert proc.returncode == 0
    assert err == b"", err.decode()


def on_a_terminal(r1home: Path, *args: str) -> tuple[int, str]:
    """`r1chat ARGS` on a pseudo-terminal: its exit status and everything it wrote."""
    env = user_env(r1home, TERM="xterm-256color", COLUMNS="100", LINES="40")
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1chat", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_output_renders_thinking_and_markdown(r1home: Path, scripted_model: Path) -> None:
    code, out = on_a_terminal(r1home, "ask", "--model", str(scripted_model), "hi")
    assert code == 0, out
    assert "Two plus two makes four." in out
    assert "\x1b[2" in out  # thinking is dimmed
    assert "So the answer is" in out
    assert "**four**" not in out  # rendered as Markdown, not raw
    assert "龘" in out


@pytest.mark.parametrize("where", ["pipe", "terminal", "json"])
def test_no_answer_is_said_on_stderr_with_its_own_exit_status(
    cli: Cli, r1home: Path, scripted_model: Path, where: str
) -> None:
    """Cut at --max-tokens while thinking: not an empty answer with exit 0."""
    args = ("ask", "--model", str(scripted_model), "--max-tokens", "5", "hi")
    if where == "terminal":
        code, out = on_a_terminal(r1home, *args)
        assert code == 3, out
        assert "no answer: the token limit (5 tokens) came while the model was still" in out
        return
    proc = cli(*args, *(["--json"] if where == "json" else []))
    assert proc.returncode == 3, proc.stderr.decode()
    [line] = proc.stderr.decode().splitlines()
    assert line.startswith("r1chat: no answer: the token limit (5 tokens)")
    if where == "json":
        result = json.loads(proc.stdout)
        assert result["answered"] is False and result["answer"] == ""
        assert result["no_answer"].startswith("no answer: the token limit")
    else:
        assert proc.stdout == b""


def test_an_answer_keeps_exit_status_0_and_says_it_answered(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "--json", "hi")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["answered"] is True
    many = cli("ask", "--model", str(scripted_model), "-k", "2", "--max-tokens", "5", "hi")
    assert many.returncode == 3
    assert "no sample answered: the token limit" in many.stderr.decode()
