"""`r1chat history ...` on a real history file under a temporary R1CHAT_HOME."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import Cli
from typer.testing import CliRunner, Result

from r1chat.commands.history import history_app
from r1chat.config import paths
from r1chat.history import HistoryStore

HOSTILE = "evil \x1b]0;pwned\x07[bold red]not markup[/] \x9b31mred\x1b[2J end"


@pytest.fixture
def home(r1home: Path) -> Path:
    return r1home


@pytest.fixture
def convs(home: Path) -> dict[str, int]:
    with HistoryStore.open() as s:
        sums = s.new_conversation("Sums", "r1-7b")
        s.add_user_message(sums, "What is 2+2?")
        s.add_assistant_message(
            sums,
            "It is \\boxed{4}.",
            "two plus two is four",
            {"decode_tok_s": 30.0, "seed": 3},
            "stop",
        )
        s.add_user_message(sums, "And 3+3?")
        s.add_assistant_message(sums, "", "three plus thr", None, "cancelled")
        evil = s.new_conversation(f"Title {HOSTILE}", "r1-7b")
        s.add_user_message(evil, "say something nasty")
        s.add_assistant_message(evil, HOSTILE, f"thinking {HOSTILE}", None, "stop")
    return {"sums": sums, "evil": evil}


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(history_app, list(args), input=input, catch_exceptions=False)


def one_line_error(result: Result, code: int, *needles: str) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("r1chat: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for n in needles:
        assert n in lines[0]
    return lines[0]


def no_escapes(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b"), repr(text)


# --- list ----------------------------------------------------------------------------------------


def test_list_json_shape_newest_first(convs: dict[str, int]) -> None:
    r = invoke("list", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert [d["id"] for d in data] == [convs["evil"], convs["sums"]]
    sums = data[1]
    assert {"id", "title", "updated", "messages", "created", "model"} <= set(sums)
    assert (sums["title"], sums["messages"], sums["model"]) == ("Sums", 4, "r1-7b")
    assert data[0]["title"] == f"Title {HOSTILE}"  # exact in JSON, control characters escaped
    no_escapes(r.stdout)


def test_list_limit(convs: dict[str, int]) -> None:
    data = json.loads(invoke("list", "--json", "-n", "1").stdout)
    assert [d["id"] for d in data] == [convs["evil"]]


def test_list_plain_is_sanitized(convs: dict[str, int]) -> None:
    r = invoke("list")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[1].split()[0] == str(convs["sums"]) and "Sums" in lines[1]
    assert "[bold red]not markup[/]" in lines[0]
    no_escapes(r.stdout)


def test_list_empty(home: Path) -> None:
    assert json.loads(invoke("list", "--json").stdout) == []
    r = invoke("list")
    assert r.exit_code == 0 and r.stdout == ""
    assert "no saved conversations" in r.stderr


# --- show ----------------------------------------------------------------------------------------


def test_show_json_has_every_message(convs: dict[str, int]) -> None:
    r = invoke("show", str(convs["sums"]), "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["id"], data["title"], data["messages"][0]["content"]) == (
        convs["sums"],
        "Sums",
        "What is 2+2?",
    )
    reply = data["messages"][1]
    assert reply["role"] == "assistant" and reply["thinking"] == "two plus two is four"
    assert reply["stats"] == {"decode_tok_s": 30.0, "seed": 3}
    assert [m["finish_reason"] for m in data["messages"]] == [None, "stop", None, "cancelled"]


def test_show_json_is_exact_for_hostile_text(convs: dict[str, int]) -> None:
    r = invoke("show", str(convs["evil"]), "--json")
    no_escapes(r.stdout)
    assert json.loads(r.stdout)["messages"][1]["content"] == HOSTILE


def test_show_text_has_thinking_answer_and_stopped(convs: dict[str, int]) -> None:
    out = invoke("show", str(convs["sums"])).stdout
    assert (
        out.index("What is 2+2?")
        < out.index("two plus two is four")
        < out.index("It is \\boxed{4}.")
        < out.index("And 3+3?")
        < out.index("(Stopped: what came is kept.)")
    )
    assert "two plus two" not in invoke("show", str(convs["sums"]), "--no-think").stdout


def test_show_text_strips_escapes_and_keeps_brackets(convs: dict[str, int]) -> None:
    out = invoke("show", str(convs["evil"])).stdout
    no_escapes(out)
    assert "pwned" not in out
    assert "[bold red]not markup[/]" in out and "red end" in out


def test_show_missing_is_one_line_error(convs: dict[str, int]) -> None:
    one_line_error(invoke("show", "999"), 1, "no conversation 999")


# --- search --------------------------------------------------------------------------------------


def test_search_json_hits(convs: dict[str, int]) -> None:
    r = invoke("search", "two", "plus", "--json")
    assert r.exit_code == 0, r.stderr
    (hit,) = json.loads(r.stdout)
    assert hit["conversation_id"] == convs["sums"] and hit["title"] == "Sums"
    assert hit["role"] == "assistant" and "[two] [plus]" in hit["snippet"]
    assert isinstance(hit["message_id"], int)


def test_search_plain(convs: dict[str, int]) -> None:
    r = invoke("search", "nasty")
    assert r.exit_code == 0
    assert r.stdout.split()[0] == str(convs["evil"]) and "[nasty]" in r.stdout
    no_escapes(r.stdout)


@pytest.mark.parametrize("query", ['"', "AND", "NEAR(", "content:x", "*", 'a"b OR'])
def test_search_odd_queries_never_fail(convs: dict[str, int], query: str) -> None:
    r = invoke("search", query, "--json")
    assert r.exit_code == 0, r.stderr
    assert isinstance(json.loads(r.stdout), list)


def test_search_no_match_exits_1(convs: dict[str, int]) -> None:
    r = invoke("search", "zebra")
    assert r.exit_code == 1 and r.stdout == "" and "no matches" in r.stderr
    assert json.loads(invoke("search", "zebra", "--json").stdout) == []


def test_search_blank_query_is_an_error(convs: dict[str, int]) -> None:
    one_line_error(invoke("search", "  "), 2, "empty search query")


# --- export --------------------------------------------------------------------------------------


def test_export_markdown_to_stdout(convs: dict[str, int]) -> None:
    r = invoke("export", str(convs["sums"]), "--format", "md")
    assert r.exit_code == 0, r.stderr
    md = r.stdout
    assert md.startswith("# Sums\n")
    assert "## Question\n\nWhat is 2+2?" in md
    assert "<details>\n<summary>Thinking</summary>\n\ntwo plus two is four\n\n</details>" in md
    assert "*Stopped: what came is kept.*" in md


def test_export_markdown_is_sanitized(convs: dict[str, int]) -> None:
    md = invoke("export", str(convs["evil"])).stdout
    no_escapes(md)
    assert "[bold red]not markup[/]" in md


def test_export_json_to_file_matches_show(convs: dict[str, int], tmp_path: Path) -> None:
    out = tmp_path / "conv.json"
    r = invoke("export", str(convs["evil"]), "--format", "json", "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and str(out) in r.stderr
    assert json.loads(out.read_text()) == json.loads(
        invoke("show", str(convs["evil"]), "--json").stdout
    )
    assert json.loads(out.read_text())["messages"][1]["content"] == HOSTILE


def test_export_to_an_unwritable_place(convs: dict[str, int], tmp_path: Path) -> None:
    one_line_error(
        invoke("export", str(convs["sums"]), "-o", str(tmp_path / "no" / "x.md")), 1, "cannot write"
    )


def test_export_bad_format_is_a_usage_error(convs: dict[str, int]) -> None:
    r = invoke("export", str(convs["sums"]), "--format", "pdf")
    assert r.exit_code == 2 and "pdf" in r.stderr


def test_export_missing(convs: dict[str, int]) -> None:
    one_line_error(invoke("export", "999"), 1, "no conversation 999")


# --- rm ------------------------------------------------------------------------------------------


def test_rm_without_yes_off_a_terminal_refuses(convs: dict[str, int]) -> None:
    one_line_error(invoke("rm", str(convs["sums"])), 2, "--yes")
    with HistoryStore.open() as s:
        assert s.get_conversation(convs["sums"]).messages == 4


def test_rm_yes_deletes(convs: dict[str, int]) -> None:
    r = invoke("rm", str(convs["sums"]), "--yes")
    assert r.exit_code == 0, r.stderr
    assert [d["id"] for d in json.loads(invoke("list", "--json").stdout)] == [convs["evil"]]
    one_line_error(invoke("show", str(convs["sums"])), 1, "no conversation")


def test_rm_missing(convs: dict[str, int]) -> None:
    one_line_error(invoke("rm", "999", "--yes"), 1, "no conversation 999")


def _rm_on_a_terminal(home: Path, conv_id: int, answer: bytes) -> tuple[int, str]:
    """Run `history rm ID` with a real pseudo-terminal as stdin/stdout; answer its question."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1CHAT_")}
    env.update({"R1CHAT_HOME": str(home), "NO_COLOR": "1", "TERM": "dumb"})
    code = (
        "from r1chat.commands.history import history_app; history_app(prog_name='r1chat history')"
    )
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "rm", str(conv_id)],
        stdin=sub,
        stdout=sub,
        stderr=sub,
        env=env,
        close_fds=True,
    )
    os.close(sub)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(main, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(10)
    os.close(main)
    return proc.returncode, seen.decode(errors="replace")


@pytest.mark.parametrize(("answer", "deleted"), [(b"y\n", True), (b"n\n", False), (b"\n", False)])
def test_rm_on_a_terminal_asks_first(
    home: Path, convs: dict[str, int], answer: bytes, deleted: bool
) -> None:
    code, screen = _rm_on_a_terminal(home, convs["evil"], answer)
    assert "Delete conversation" in screen and "[y/N]" in screen
    assert "pwned" not in screen and "\x1b]" not in screen  # the title is sanitized
    assert code == (0 if deleted else 1), screen
    with HistoryStore.open() as s:
        ids = [c.id for c in s.list_conversations()]
    assert (convs["evil"] in ids) is not deleted


# --- rename --------------------------------------------------------------------------------------


def test_rename(convs: dict[str, int]) -> None:
    r = invoke("rename", str(convs["sums"]), "Small", "sums")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{convs['sums']}  Small sums\n"
    with HistoryStore.open() as s:
        assert s.get_conversation(convs["sums"]).title == "Small sums"


def test_rename_to_blank_is_an_error(convs: dict[str, int]) -> None:
    one_line_error(invoke("rename", str(convs["sums"]), " "), 2, "empty")


def test_rename_missing(convs: dict[str, int]) -> None:
    one_line_error(invoke("rename", "999", "x"), 1, "no conversation 999")


# --- a bad database ------------------------------------------------------------------------------


def test_a_corrupt_database_is_one_line_naming_it(home: Path) -> None:
    db = paths().history_db
    db.parent.mkdir(parents=True, exist_ok=True)
    junk = os.urandom(4096)
    db.write_bytes(junk)
    for args in (["list"], ["list", "--json"], ["show", "1"], ["search", "x"], ["rm", "1", "-y"]):
        one_line_error(invoke(*args), 1, str(db))
    assert db.read_bytes() == junk


def test_the_history_lives_under_r1chat_home(home: Path) -> None:
    invoke("list")
    assert (home / "history.sqlite3").exists()


# --- the registered command ----------------------------------------------------------------------


def test_r1chat_history_list_json_as_a_user_runs_it(cli: Cli, convs: dict[str, int]) -> None:
    """Passes once r1chat.cli registers the sub-app: app.add_typer(history_app, name="history")."""
    proc = cli("history", "list", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert [(d["id"], d["messages"]) for d in data] == [(convs["evil"], 2), (convs["sums"], 4)]


# --- the trash -----------------------------------------------------------------------------------


def test_rm_goes_to_the_trash_and_restore_brings_it_back(convs: dict[str, int]) -> None:
    r = invoke("rm", str(convs["sums"]), "--yes")
    assert "history restore" in r.stderr and "trash" in r.stderr
    trash = json.loads(invoke("trash", "--json").stdout)
    assert [c["id"] for c in trash] == [convs["sums"]] and trash[0]["deleted"]
    r = invoke("restore", str(convs["sums"]))
    assert r.exit_code == 0, r.stderr
    assert convs["sums"] in [d["id"] for d in json.loads(invoke("list", "--json").stdout)]
    one_line_error(invoke("restore", str(convs["sums"])), 2, "not in the trash")


def test_rm_purge_deletes_for_good_even_from_the_trash(convs: dict[str, int]) -> None:
    invoke("rm", str(convs["sums"]), "--yes")
    r = invoke("rm", "--purge", str(convs["sums"]), "--yes")
    assert r.exit_code == 0 and "for good" in r.stderr
    assert json.loads(invoke("trash", "--json").stdout) == []
    one_line_error(invoke("restore", str(convs["sums"])), 2, "not in the trash")
    invoke("rm", str(convs["evil"]), "--yes")
    assert invoke("trash", "--empty").exit_code == 0
    assert json.loads(invoke("trash", "--json").stdout) == []


def test_list_and_search_filter_by_model(convs: dict[str, int]) -> None:
    with HistoryStore.open() as s:
        other = s.new_conversation("Other", "SmolLM2-135M")
        s.add_user_message(other, "What is 2+2 for a small model?")
    listed = json.loads(invoke("list", "--json", "--model", "smol").stdout)
    assert [c["id"] for c in listed] == [other]
    found = json.loads(invoke("search", "--json", "--model", "r1-7b", "2+2").stdout)
    assert {h["conversation_id"] for h in found} == {convs["sums"]}


def _on_a_terminal(home: Path, *args: str) -> str:
    """`r1chat ARGS` with a pseudo-terminal for stdout: what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1CHAT_")}
    env.update({"R1CHAT_HOME": str(home), "NO_COLOR": "1", "TERM": "dumb", "HF_HUB_OFFLINE": "1"})
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1chat", *args],
        stdin=subprocess.DEVNULL,
        stdout=sub,
        stderr=subprocess.PIPE,
        env=env,
        close_fds=True,
    )
    os.close(sub)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    proc.wait(timeout=30)
    os.close(main)
    return out.decode("utf-8", "replace").replace("\r\n", "\n")


def test_lists_have_a_header_on_a_terminal_and_not_in_a_pipe(
    home: Path, convs: dict[str, int], cli: Cli
) -> None:
    with HistoryStore.open() as s:
        wide = s.new_conversation("什么是二加二？", "r1-7b")
        s.add_user_message(wide, "什么是二加二？")
        s.add_assistant_message(wide, "四", "二加二", {"completion_tokens": 1234}, "stop")
    shown = _on_a_terminal(home, "history", "list").splitlines()
    assert shown[0].split() == ["ID", "UPDATED", "MODEL", "MSGS", "TOKENS", "TITLE"]
    # Columns line up by what the terminal shows: the title starts at one column in every row.
    starts = {
        line.index(title) for line, title in zip(shown[1:], ("什么", "Title", "Sums"), strict=True)
    }
    assert len(starts) == 1
    assert "1,234" in shown[1]
    piped = cli("history", "list").stdout.decode().splitlines()
    assert len(piped) == 3 and not piped[0].startswith("ID")
    models = _on_a_terminal(home, "models", "list").splitlines()
    assert models[0].split() == ["MODEL", "SIZE", "STATE", "WHERE"]
    assert not cli("models", "list").stdout.decode().startswith("  MODEL")
