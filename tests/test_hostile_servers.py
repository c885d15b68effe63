"""Hostile servers on loopback (issue 19): one that echoes the key everywhere it can (errors near
the length cut, model ids, reply text split across events), one that stalls before it answers at
all, one that sends fields of the wrong type or half a surrogate pair. Each gives one line, no
key, no escape sequence, no hang, and nothing that came is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import run_cli
from servers import ReplayServer, Reply, chunk

from r1chat.engines.remote import RemoteEngine, normalize_base, redacted
from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore
from r1chat.many import ask_many
from r1chat.prompts import ChatMessage
from r1chat.sampling import SamplingParams
from r1chat.secrets import Secret, read_key
from r1chat.turn import TurnDone, TurnResult, run_turn

KEY = "sk-live-0123456789abcdefghijklmnopqrstuvwxyzABCD"  # 47 characters, as reported
ROOT = Path(__file__).resolve().parent.parent


def serve(made: list[ReplayServer], replies: list[Reply], **kw: Any) -> ReplayServer:
    s = ReplayServer(replies, **kw)
    made.append(s)
    return s


def reply_of(engine: RemoteEngine, cancel: threading.Event | None = None) -> TurnResult:
    for ev in run_turn(engine, [], "q", SamplingParams(seed=1), cancel):
        if isinstance(ev, TurnDone):
            return ev.result
    raise AssertionError("no TurnDone")


def pieces(text: str, sizes: tuple[int, ...] = (3, 7, 2, 11)) -> list[str]:
    """`text` cut at uneven places, so the key straddles events."""
    out, i, n = [], 0, 0
    while i < len(text):
        size = sizes[n % len(sizes)]
        out.append(text[i : i + size])
        i, n = i + size, n + 1
    return out


def no_key(text: str) -> None:
    """Not the key, nor any 8 characters of it in a row."""
    for i in range(len(KEY) - 7):
        assert KEY[i : i + 8] not in text, f"part of the key shows: {text!r}"


# --- secrets ------------------------------------------------------------------------------


def test_a_key_with_a_line_ending_is_stripped_and_said_once(made: list[ReplayServer]) -> None:
    s = serve(made, [Reply(events=[chunk({"content": "hi"}), chunk({}, "stop")])])
    notes: list[str] = []
    engine = RemoteEngine(s.base, key=KEY + "\r\n", on_note=notes.append)
    reply_of(engine)
    assert s.requests[0][1]["Authorization"] == f"Bearer {KEY}"
    assert len(notes) == 1 and "line endings" in notes[0]
    no_key(notes[0])


def test_a_key_no_header_can_carry_is_one_line_without_the_key() -> None:
    for bad in (KEY + "é", KEY[:20] + "\n" + KEY[20:], KEY + "\x00"):
        with pytest.raises(R1ChatError) as e:
            read_key(bad, "$R1CHAT_API_KEY")
        assert e.value.exit_code == 2 and "cannot carry" in str(e.value)
        no_key(str(e.value))


def test_the_key_is_masked_before_an_error_is_cut(made: list[ReplayServer]) -> None:
    # The key at characters 280-327 of the message: the old cut at 300 showed 20 of it.
    for near in (250, 280, 295):
        message = "x" * near + KEY + " and more words after it"
        # A body that is a bare JSON string: read whole, not as {"error": ...}.
        s = serve(made, [Reply(status=400, body=message)])
        with pytest.raises(R1ChatError) as e:
            reply_of(RemoteEngine(s.base, key=KEY))
        no_key(str(e.value))
        assert "***" in str(e.value) or len(str(e.value)) < near


def test_every_form_of_the_key_is_masked(made: list[ReplayServer]) -> None:
    spaced = "sk-with  two  spaces-0123456789"
    secret = Secret(spaced)
    from urllib.parse import quote

    for text in (
        f"key: {spaced}!",
        f"key: {' '.join(spaced.split())}!",  # a message whose whitespace was collapsed
        f"key={quote(spaced, safe='')}",
        json.dumps({"auth": f"Bearer {spaced}"}),
    ):
        masked = secret.mask(text)
        assert "0123456789" not in masked, (text, masked)


def test_a_server_that_echoes_the_key_everywhere_never_shows_it(
    made: list[ReplayServer], tmp_path: Path
) -> None:
    echo = f"Authorization: Bearer {KEY}"
    events = [chunk({"reasoning_content": p}) for p in pieces(f"I was sent {echo} so")]
    events += [chunk({"content": p}) for p in pieces(f"The key is {KEY}. Also {KEY}")]
    events.append(chunk({}, "stop"))
    models = [{"id": "r1"}, {"id": echo}, {"id": KEY}]
    s = serve(made, [Reply(events=events)], models=models)
    env = {"R1CHAT_API_KEY": KEY}
    home = tmp_path / "home"
    out = run_cli("ask", "--api-base", s.base, "-m", "r1", "--json", "q", home=home, env=env)
    text = out.stdout.decode() + out.stderr.decode()
    assert out.returncode == 0, text
    no_key(text)
    data = json.loads(out.stdout)
    assert data["answer"] == "The key is ***. Also ***"
    assert "***" in data["thinking"]
    with HistoryStore.open(home / "history.sqlite3") as store:
        for m in store.messages(1):
            no_key(m.content + m.thinking)
    # A model id that holds the key, listed in an error.
    out = run_cli("ask", "--api-base", s.base, "-m", "nosuch", "q", home=home, env=env)
    assert out.returncode == 2
    no_key(out.stderr.decode())
    assert "***" in out.stderr.decode()


def test_a_refused_key_from_the_model_list_is_masked_too(made: list[ReplayServer]) -> None:
    s = serve(made, [])
    # A 401 whose message repeats the header just before the old cut.
    s.models_reply = Reply(status=401, body="y" * 285 + f"Bearer {KEY}")
    with pytest.raises(R1ChatError) as e:
        RemoteEngine(s.base, key=KEY)
    assert e.value.exit_code == 2 and "refused the API key" in str(e.value)
    no_key(str(e.value))


def test_credentials_in_the_url_are_never_printed(tmp_path: Path) -> None:
    url = "http://user:hunter2-secret@127.0.0.1:9/v1"
    assert "hunter2" not in redacted(url)
    out = run_cli("config", "show", home=tmp_path, env={"R1CHAT_API_BASE": url})
    assert "hunter2" not in out.stdout.decode() and "127.0.0.1:9" in out.stdout.decode()
    for bad in ("http://user:hunter2-secret@127.0.0.1:99999/v1", "htp://u:hunter2-secret@x/v1"):
        out = run_cli("ask", "--api-base", bad, "hi", home=tmp_path)
        assert out.returncode == 2 and "hunter2" not in out.stderr.decode(), out.stderr


# --- hangs --------------------------------------------------------------------------------


def test_a_stalled_model_list_is_cut_by_the_timeout(made: list[ReplayServer]) -> None:
    s = serve(made, [])
    s.models_hang_s = 60
    t0 = time.monotonic()
    with pytest.raises(R1ChatError) as e:
        RemoteEngine(s.base, timeout_s=1.0)
    assert time.monotonic() - t0 < 10
    assert "sent nothing for 1 s" in str(e.value)


def test_a_stalled_model_list_stops_at_once_when_asked(made: list[ReplayServer]) -> None:
    s = serve(made, [])
    s.models_hang_s = 60
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(R1ChatError) as e:
        RemoteEngine(s.base, cancel=cancel)
    assert time.monotonic() - t0 < 2
    assert e.value.exit_code == 130


def test_a_server_that_never_answers_the_request_stops_at_once(made: list[ReplayServer]) -> None:
    s = serve(made, [Reply(hang_s=60, events=[chunk({"content": "late"})])])
    engine = RemoteEngine(s.base)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(R1ChatError):
        reply_of(engine, cancel)
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ask_against_a_stalled_server_stops_on_the_first_signal(
    made: list[ReplayServer], tmp_path: Path, sig: int
) -> None:
    s = serve(made, [])
    s.models_hang_s = 60
    env = {k: v for k, v in os.environ.items() if not k.startswith(("R1CHAT_", "HF_"))}
    env["R1CHAT_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1chat", "ask", "--api-base", s.base, "hi"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # The request is on its way once the server has it; then the signal.
    deadline = time.monotonic() + 30
    while "/v1/models" not in s.gets and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the first signal did not stop ask") from None
    assert proc.returncode == 128 + sig, err
    assert b"Traceback" not in err


# --- wrong types, surrogates --------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"choices": 5},
        {"choices": [5]},
        {"choices": [{"delta": "text"}]},
        {"choices": [{"delta": {"content": 7}}]},
        {"choices": [], "usage": {"prompt_tokens": "abc", "completion_tokens": 1}},
        {"choices": [], "usage": {"completion_tokens": -3}},
        {"choices": [], "usage": {"completion_tokens": 1e300}},
        "[1, 2]",
        "NaN",
    ],
)
def test_fields_of_the_wrong_type_are_one_line(made: list[ReplayServer], event: Any) -> None:
    events = [chunk({"content": "ok"}), event]
    raw = [e if not isinstance(e, str) else f"data: {e}" for e in events]
    s = serve(made, [Reply(events=raw)])
    with pytest.raises(R1ChatError) as e:
        reply_of(RemoteEngine(s.base))
    assert s.base.removesuffix("/v1") in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "props",
    [
        {"default_generation_settings": {"n_ctx": "abc"}},
        {"default_generation_settings": {"n_ctx": 1.5}},
        {"default_generation_settings": 5},
    ],
)
def test_a_context_size_that_is_not_a_number_is_one_line(
    made: list[ReplayServer], props: dict[str, Any]
) -> None:
    s = serve(made, [])
    s.extra["/props"] = props
    with pytest.raises(R1ChatError) as e:
        RemoteEngine(s.base)
    assert "its settings" in str(e.value) and "/props" in str(e.value)


def test_a_vllm_model_length_that_is_not_a_number_is_one_line(made: list[ReplayServer]) -> None:
    s = serve(made, [], models=[{"id": "m", "max_model_len": "lots"}])
    with pytest.raises(R1ChatError) as e:
        RemoteEngine(s.base)
    assert "its settings" in str(e.value) and "max_model_len" in str(e.value)


def test_a_surrogate_pair_split_across_events_is_joined(
    made: list[ReplayServer], tmp_path: Path
) -> None:
    # json.dumps writes a lone surrogate as its escape, as a UTF-16 producer would.
    events = [
        chunk({"content": "smile \ud83d"}),
        chunk({"content": "\ude00 done"}),
        chunk({"content": " and a lone \udc00 one"}),
        chunk({}, "stop"),
    ]
    s = serve(made, [Reply(events=events)])
    result = reply_of(RemoteEngine(s.base))
    assert result.answer == "smile \U0001f600 done and a lone \ufffd one"
    # Through the command line: printed and saved (the save lost such a reply before).
    s.replies = [Reply(events=events)]
    out = run_cli("ask", "--api-base", s.base, "--json", "q", home=tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout)["answer"] == result.answer
    with HistoryStore.open(tmp_path / "history.sqlite3") as store:
        assert store.messages(1)[-1].content == result.answer


def test_a_lone_surrogate_at_the_end_of_the_stream_is_replaced(made: list[ReplayServer]) -> None:
    s = serve(made, [Reply(events=[chunk({"content": "cut \ud83d"}), chunk({}, "stop")])])
    assert reply_of(RemoteEngine(s.base)).answer == "cut \ufffd"


# --- terminal injection -------------------------------------------------------------------


def test_escape_sequences_from_a_server_never_reach_the_terminal(
    made: list[ReplayServer], tmp_path: Path
) -> None:
    nasty = "\x1b]0;pwned\x07\x1b]52;c;aGVsbG8=\x07\x1b[2J\x9b31m"
    s = serve(
        made,
        [Reply(status=500, body={"error": {"message": f"boom {nasty}"}})],
        models=[{"id": "r1"}, {"id": f"evil{nasty}"}],
    )
    for args in (("-m", "nosuch"), ("-m", "r1")):
        out = run_cli("ask", "--api-base", s.base, *args, "q", home=tmp_path)
        err = out.stderr.decode()
        assert out.returncode != 0 and err.count("\n") == 1, err
        assert "\x1b" not in err and "\x9b" not in err and "\x07" not in err, repr(err)
    out = run_cli("doctor", "--api-base", s.base, "--json", home=tmp_path)
    assert "\x1b" not in out.stdout.decode() and "\x07" not in out.stdout.decode()


# --- samples ------------------------------------------------------------------------------


def test_samples_on_a_server_keep_what_came_when_one_request_fails(
    made: list[ReplayServer], tmp_path: Path
) -> None:
    good = [chunk({"reasoning_content": "two and two"}), chunk({"content": "$\\boxed{4}$"})]
    replies = [Reply(events=[*good, chunk({}, "stop")]) for _ in range(3)]
    replies.insert(1, Reply(status=500, body={"error": {"message": "out of memory"}}))
    s = serve(made, replies)
    got = ask_many(RemoteEngine(s.base), [ChatMessage("user", "2+2?")], SamplingParams(), 4)
    # Which request gets the 500 depends on which thread asks first.
    assert len(got.samples) == 3 and len(got.errors) == 1
    assert got.vote.answer == "4" and got.vote.of == 3
    assert "1 failed" in got.agreement()
    # The command line keeps them and says which failed.
    s2 = serve(made, [Reply(events=[*good, chunk({}, "stop")]) for _ in range(2)])
    s2.replies.insert(0, Reply(status=500, body={"error": {"message": "out of memory"}}))
    out = run_cli("ask", "--api-base", s2.base, "-k", "3", "--json", "2+2?", home=tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    assert "failed: " in out.stderr.decode() and "out of memory" in out.stderr.decode()
    data = json.loads(out.stdout)
    assert (
        data["vote"] == {"answer": "4", "count": 2, "of": 2, "timed_out": 0}
        and len(data["failed"]) == 1
    )
    with HistoryStore.open(tmp_path / "history.sqlite3") as store:
        roles = [m.role for m in store.messages(1, all_branches=True)]
    assert roles == ["user", "assistant", "assistant"]


def test_a_busy_server_with_a_nonsense_wait_retries_in_a_number_of_seconds(
    made: list[ReplayServer],
) -> None:
    busy = Reply(status=429, body={"error": "busy"}, headers={"Retry-After": "nan"})
    s = serve(made, [busy, Reply(events=[chunk({"content": "ok"}), chunk({}, "stop")])])
    notes: list[str] = []
    reply_of(RemoteEngine(s.base, on_note=notes.append))
    assert notes and "nan" not in notes[0] and "retrying in 1 s" in notes[0]


def test_api_base_values_that_are_no_url_are_one_line() -> None:
    for url in (
        "http://127.0.0.1:99999/v1",
        "http://127.0.0.1:-1/v1",
        "http://127.0.0.1:abc/v1",
        "http://[::1",
        f"http://{'a' * 300}.example/v1",
        "http://127.0.0.1:0/v1",
    ):
        with pytest.raises(R1ChatError) as e:
            normalize_base(url)
        assert e.value.exit_code == 2 and "--api-base" in str(e.value)
    assert normalize_base("http://[::1]:8000") == "http://[::1]:8000/v1"


def test_samples_that_all_fail_midway_are_no_answer(
    made: list[ReplayServer], tmp_path: Path
) -> None:
    # Text, then an event r1chat cannot read: each sample began, and each failed.
    broken = [chunk({"content": "the answer is 5"}), {"choices": 5}]
    s = serve(made, [Reply(events=broken) for _ in range(2)])
    out = run_cli("ask", "--api-base", s.base, "-k", "2", "q", home=tmp_path)
    assert out.returncode == 1 and out.stdout == b"", out
    assert out.stderr.decode().count("failed: ") == 2
    got = ask_many(
        RemoteEngine(serve(made, [Reply(events=broken) for _ in range(2)]).base),
        [ChatMessage("user", "q")],
        SamplingParams(),
        2,
    )
    assert got.all_failed and got.no_answer() is not None and got.vote.of == 0


@pytest.mark.parametrize(
    "logprobs",
    [
        5,
        {"content": 3},
        {"content": [{"top_logprobs": [{"logprob": "x"}]}]},
        {"content": [{"top_logprobs": [{"logprob": 2.5}]}]},
    ],
)
def test_logprobs_of_the_wrong_type_are_one_line(made: list[ReplayServer], logprobs: Any) -> None:
    bad = chunk({"content": "4"})
    bad["choices"][0]["logprobs"] = logprobs
    s = serve(made, [Reply([bad, chunk({}, "stop")])], models=[{"id": "m", "max_model_len": 64}])
    with pytest.raises(R1ChatError) as e:
        list(RemoteEngine(s.base).stream([ChatMessage("user", "q")], SamplingParams()))
    assert "logprob" in str(e.value) and "\n" not in str(e.value)
