"""Hostile files and clumsy use, through the real commands on real llama.cpp: each case ends in
one line on stderr and an exit status, never a traceback, an abort or a lost reply."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny_models
from cli_support import Cli, user_env
from hostile_models import HOSTILE, write_nested
from test_ask_cli import one_line_error

from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore
from r1chat.prompts import ChatMessage, render_prompt

# --- files that made llama.cpp abort --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_file_llama_cpp_would_abort_on_is_one_line(name: str, cli: Cli, tmp_path: Path) -> None:
    build, word = HOSTILE[name]
    model = build(tmp_path / "hostile.gguf")
    proc = cli("ask", "--model", str(model), "hi")
    line = one_line_error(proc, word)
    assert proc.returncode == 1 and "GGML_ASSERT" not in proc.stdout.decode() + line


def test_doctor_reports_such_a_file_instead_of_aborting(
    cli: Cli, tmp_path: Path, r1home: Path
) -> None:
    model = HOSTILE["no layers"][0](tmp_path / "hostile.gguf")
    proc = cli("doctor", env={"R1CHAT_MODEL": str(model)})
    out = proc.stdout.decode()
    assert proc.returncode == 1, out + proc.stderr.decode()
    assert "block_count" in out and "GGML_ASSERT" not in out + proc.stderr.decode()


def test_metadata_nested_5000_deep_is_one_line(cli: Cli, tmp_path: Path) -> None:
    model = write_nested(tmp_path / "nested.gguf", 5000)
    one_line_error(cli("ask", "--model", str(model), "hi"), "nested more than")


def test_a_fifo_as_the_model_is_refused_without_hanging(cli: Cli, tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    one_line_error(cli("ask", "--model", str(fifo), "hi", timeout=30), "not a regular file")


# --- chat templates that explode ------------------------------------------------------------

EXPLOSIVE = [
    "{{ 'A' * 100000000 }}",
    "{{ strftime_now('%Y' * 50000000) }}",
    "{% for i in range(10**7) %}{% for j in range(10**7) %}x{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 10 ** 100000000 }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x' | center(1000000000) }}",
    "{{ '%*s' % (1000000000, 'x') }}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% for m in messages %}{% for k in range(90000) %}{{ m.content }}{% endfor %}{% endfor %}",
]


@pytest.mark.parametrize("template", EXPLOSIVE)
def test_an_exploding_template_stops_at_its_bounds(template: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(R1ChatError) as e:
        render_prompt([ChatMessage("user", "hi there")], template, max_chars=200_000)
    assert "\n" not in str(e.value) and str(e.value).startswith("the model's chat template")
    assert time.monotonic() - t0 < 30  # a bound, not a benchmark: it ran for minutes


def test_ordinary_templates_are_untouched(scripted_model: Path) -> None:
    from r1chat.gguf_header import read_header

    real = read_header(scripted_model).chat_template
    text = render_prompt([ChatMessage("user", "x" * 50_000)], real, max_chars=1000)
    assert text.count("x") == 50_000 and text.endswith("<think>\n")


def test_an_exploding_template_in_a_model_is_one_line(cli: Cli, tmp_path: Path) -> None:
    meta = tiny_models.load_meta()
    meta["tokenizer.chat_template"] = "{{ 'A' * 100000000 }}"
    model = tmp_path / "boom.gguf"
    tiny_models.build_noise(model, meta)
    one_line_error(cli("ask", "--model", str(model), "hi", timeout=60), "chat template")


# --- tracebacks that were --------------------------------------------------------------------


def test_non_utf8_bytes_in_an_argument(r1home: Path) -> None:
    env = user_env(r1home, NO_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "r1chat", "ask", b"caf\xe9"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    one_line_error(proc, "not valid UTF-8")


@pytest.mark.parametrize(
    "args",
    [
        ["ask", "--conversation", "99999999999999999999", "hi"],
        ["history", "show", "99999999999999999999"],
        ["--resume", "99999999999999999999"],
    ],
)
def test_ids_beyond_sqlites_range(cli: Cli, args: list[str]) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    one_line_error(proc, "Invalid value", "9223372036854775807")


@pytest.mark.parametrize(
    "ref", ["someone/repo:../x.gguf", "someone/../evil:m.gguf", "someone/repo:a//b.gguf"]
)
def test_hub_references_with_path_tricks(cli: Cli, ref: str) -> None:
    proc = cli("ask", "--model", ref, "hi")
    assert proc.returncode == 2
    one_line_error(proc, "not a Hugging Face")


def test_an_empty_model_name_is_not_the_default(cli: Cli) -> None:
    proc = cli("ask", "--model", "", "hi")
    assert proc.returncode == 2
    one_line_error(proc, "empty model name")


def test_a_full_disk_on_stdout(r1home: Path, scripted_model: Path) -> None:
    env = user_env(r1home)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "r1chat", "ask", "--model", str(scripted_model), "hi"],
            stdout=full,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "No space left" in err and "Traceback" not in err


def shell(command: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["sh", "-c", command],
        env=user_env(home, NO_COLOR="1"),
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_stdout_closed(r1home: Path, scripted_model: Path) -> None:
    proc = shell(f"exec '{sys.executable}' -m r1chat ask --model '{scripted_model}' hi >&-", r1home)
    assert proc.returncode == 1
    one_line_error(proc, "standard output is closed")
    assert not (r1home / "history.sqlite3").exists()


def test_stderr_closed_still_answers(r1home: Path, scripted_model: Path) -> None:
    proc = shell(
        f"exec '{sys.executable}' -m r1chat ask --model '{scripted_model}' hi 2>&-", r1home
    )
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == tiny_models.SCRIPT_ANSWER


# --- settings out of bounds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"R1CHAT_THREADS": "100000"}, "threads"),
        ({"R1CHAT_THREADS": "5000"}, "threads"),
        ({"R1CHAT_TEMPERATURE": "nan"}, "temperature"),
        ({"R1CHAT_TOP_P": "NaN"}, "top_p"),
    ],
)
def test_settings_out_of_bounds_from_the_environment(
    cli: Cli, scripted_model: Path, env: dict[str, str], word: str
) -> None:
    proc = cli("ask", "--model", str(scripted_model), "hi", env=env)
    assert proc.returncode == 2
    one_line_error(proc, word)


def test_nan_in_the_config_file_and_on_the_command_line(
    cli: Cli, r1home: Path, scripted_model: Path
) -> None:
    (r1home / "config.toml").write_text("[sampling]\ntop_p = nan\n")
    proc = cli("ask", "--model", str(scripted_model), "hi")
    assert proc.returncode == 2 and "top_p" in one_line_error(proc)
    (r1home / "config.toml").unlink()
    proc = cli("ask", "--model", str(scripted_model), "--temperature", "nan", "hi")
    assert proc.returncode == 2 and "temperature" in one_line_error(proc)


def test_threads_within_bounds_still_work(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "hi", env={"R1CHAT_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr.decode()


# --- what is saved -----------------------------------------------------------------------------


def test_a_question_refused_as_too_long_is_never_saved(
    cli: Cli, r1home: Path, scripted_model: Path
) -> None:
    big = b"word " * 1_000_000  # 5 MB
    for _ in range(4):
        proc = cli("ask", "--model", str(scripted_model), "--ctx", "256", stdin=big)
        one_line_error(proc, "too long")
    db = r1home / "history.sqlite3"
    with HistoryStore.open(db) as store:
        assert store.list_conversations() == []
    assert db.stat().st_size < 1_000_000


def test_a_read_only_history_stays_read_only(cli: Cli, r1home: Path, scripted_model: Path) -> None:
    assert cli("ask", "--model", str(scripted_model), "hi").returncode == 0
    db = r1home / "history.sqlite3"
    db.chmod(0o444)
    listed = cli("history", "list", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1
    proc = cli("ask", "--model", str(scripted_model), "again")
    one_line_error(proc, "read-only")
    assert db.stat().st_mode & 0o777 == 0o400  # still read-only; others' bits cleared
    db.chmod(0o600)
    with HistoryStore.open(db) as store:
        [conv] = store.list_conversations()
        assert conv.messages == 2


def test_a_read_only_home_still_reads(cli: Cli, r1home: Path, scripted_model: Path) -> None:
    assert cli("ask", "--model", str(scripted_model), "hi").returncode == 0
    r1home.chmod(0o555)
    try:
        listed = cli("history", "list", "--json")
        assert listed.returncode == 0, listed.stderr.decode()
        assert len(json.loads(listed.stdout)) == 1
        shown = cli("history", "show", "1")
        assert shown.returncode == 0 and "hi" in shown.stdout.decode()
    finally:
        r1home.chmod(0o755)


def test_a_damaged_database_is_one_line(cli: Cli, r1home: Path, scripted_model: Path) -> None:
    assert cli("ask", "--model", str(scripted_model), "hi").returncode == 0
    db = r1home / "history.sqlite3"
    data = bytearray(db.read_bytes())
    for i in range(4096 + 100, len(data), 97):  # scribble over every page but the first
        data[i] = (data[i] + 0x55) % 256
    db.write_bytes(bytes(data))
    for wal in r1home.glob("history.sqlite3-*"):
        wal.unlink()
    one_line_error(cli("history", "list"), "history database")


def test_concurrent_asks_keep_each_reply_with_its_question(
    cli: Cli, r1home: Path, scripted_model: Path
) -> None:
    assert cli("ask", "--model", str(scripted_model), "first").returncode == 0
    env = user_env(r1home, NO_COLOR="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "r1chat",
                "ask",
                "-c",
                "--model",
                str(scripted_model),
                f"question {n}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(6)
    ]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read() if p.stderr else ""
    with HistoryStore.open(r1home / "history.sqlite3") as store:
        [conv] = store.list_conversations()
        messages = store.messages(conv.id, all_branches=True)
        by_id = {m.id: m for m in messages}
        replies = [m for m in messages if m.role == "assistant"]
        assert len(replies) == 7
        for r in replies:  # every reply names the question it answers
            assert r.parent_id is not None and by_id[r.parent_id].role == "user"
        turns = store.turns(conv.id)
    assert sorted(q for q, _ in turns) == sorted(["first", *(f"question {n}" for n in range(6))])
    assert all(a == tiny_models.SCRIPT_ANSWER for _, a in turns)


def test_a_conversation_longer_than_the_context_goes_on(
    cli: Cli, r1home: Path, scripted_model: Path
) -> None:
    question = "tell me more about this " * 12
    notes = []
    for n in range(14):
        args = ["ask", "--model", str(scripted_model), "--ctx", "512", "--max-tokens", "64"]
        proc = cli(*args, *(["-c"] if n else []), question + str(n))
        assert proc.returncode == 0, proc.stderr.decode()
        notes += [ln for ln in proc.stderr.decode().splitlines() if "left out" in ln]
    assert notes and all(ln.startswith("r1chat: ") and "to fit 512 tokens" in ln for ln in notes)


# --- signals ---------------------------------------------------------------------------------


def start_ask(home: Path, model: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "r1chat",
            "ask",
            "--model",
            str(model),
            "--max-tokens",
            "100000",
            "--ctx",
            "4096",
            *extra,
            "q",
        ],
        env=user_env(home, NO_COLOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
def test_a_signal_mid_reply_keeps_what_came(
    r1home: Path, noise_model: Path, sig: int, code: int
) -> None:
    proc = start_ask(r1home, noise_model, "--json")
    db = r1home / "history.sqlite3"
    end = time.monotonic() + 60
    while time.monotonic() < end:  # the question is saved once decoding has begun
        if db.exists():
            with sqlite3.connect(db) as con:
                try:
                    if con.execute("SELECT count(*) FROM messages").fetchone()[0]:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err.decode()
    assert b"Traceback" not in err and b"Exception ignored" not in err
    result = json.loads(out)
    assert result["finish_reason"] == "cancelled" and result["thinking"]
    with HistoryStore.open(db) as store:
        [conv] = store.list_conversations()
        reply = store.messages(conv.id)[-1]
        assert reply.stopped and reply.thinking == result["thinking"]


def catching(pid: int, signum: int = signal.SIGINT) -> None:
    """Wait until process `pid` catches `signum` (its SigCgt mask in /proc says so)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return  # gone already: the caller sees how it ended
        mask = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), "0")
        if int(mask, 16) & (1 << (signum - 1)):
            return
        time.sleep(0.002)
    raise AssertionError("the process never set up its signal handler")


def test_ctrl_c_at_any_moment_exits_130_quietly(r1home: Path, noise_model: Path) -> None:
    # From start-up (imports) through the model load to the last token: a sweep of moments.
    for delay in [0.05 * k for k in range(1, 40, 3)]:
        proc = start_ask(r1home, noise_model)
        # Before r1chat's entry point runs, Ctrl+C is the interpreter's (its start-up, `site`,
        # runpy: a traceback, or death by the signal); r1chat's first act is to catch SIGTERM,
        # so the sweep starts there.
        catching(proc.pid, signal.SIGTERM)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (delay, err.decode())
        assert b"Traceback" not in err and b"Exception ignored" not in err, (delay, err)


def test_a_load_asked_to_stop_stops(noise_model: Path) -> None:
    import threading

    from r1chat.engines.llama import LlamaEngine, LoadOptions

    stop = threading.Event()
    stop.set()
    with pytest.raises(R1ChatError, match="stopped"):
        LlamaEngine(noise_model, LoadOptions(n_ctx=256), cancel=stop)
    LlamaEngine(noise_model, LoadOptions(n_ctx=256), cancel=threading.Event()).close()
