"""Files attached to a question: `ask -f` through the real command on the scripted model, and
the one-line refusals, all before anything is sent or saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import run_cli
from tiny_models import SCRIPT_ANSWER

from r1chat.attachments import Attachment, fenced, read_attachment, with_attachments
from r1chat.errors import R1ChatError


def test_a_file_goes_in_as_a_fence_under_its_name(tmp_path: Path) -> None:
    f = tmp_path / "calc.py"
    f.write_text("print(2 + 2)\n")
    a = read_attachment(str(f))
    assert a == Attachment(str(f), "print(2 + 2)\n", 13)
    assert with_attachments("Why?", [a]) == f"Why?\n\n{f}:\n```python\nprint(2 + 2)\n```"


def test_a_fence_inside_the_file_cannot_end_its_block() -> None:
    text = "before\n````\ninner\n````\nafter"
    block = fenced(Attachment("notes.md", text, len(text)))
    assert block.startswith("notes.md:\n`````markdown\n") and block.endswith("\n`````")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.txt", "no such file"),
        (lambda d: d, "it is a directory"),
        (lambda d: _write(d / "a.bin", b"\x89PNG\x00\x00"), "binary file"),
        (lambda d: _write(d / "latin.txt", "café".encode("latin-1")), "not UTF-8"),
    ],
    ids=["missing", "directory", "binary", "not-utf8"],
)
def test_files_that_are_not_text_are_refused(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(R1ChatError, match=message) as e:
        read_attachment(str(path))
    assert e.value.exit_code == 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_ask_with_files_and_stdin_keeps_them_in_the_history(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    a = tmp_path / "a.txt"
    a.write_text("alpha\n")
    out = run_cli(
        "ask", "--json", "-m", str(scripted_model), "-f", str(a), "-f", "-", "Compare them",
        home=r1home, stdin=b"from stdin\n",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    data = json.loads(out.stdout)
    assert data["answer"] == SCRIPT_ANSWER
    assert data["question"].startswith("Compare them\n\n")
    assert (
        f"{a}:\n```\nalpha\n```" in data["question"]
        and "stdin:\n```\nfrom stdin\n```" in data["question"]
    )
    assert [(f["name"], f["size"]) for f in data["attachments"]] == [(str(a), 6), ("stdin", 11)]
    assert all(f["tokens"] > 0 for f in data["attachments"])
    shown = run_cli("history", "show", "1", home=r1home).stdout.decode()
    assert f"(attached: {a} (6 bytes), stdin (11 bytes))" in shown


def test_a_bad_file_is_refused_before_anything_is_saved(scripted_model: Path, r1home: Path) -> None:
    out = run_cli("ask", "-m", str(scripted_model), "-f", "/nonexistent/x.py", "q", home=r1home)
    assert out.returncode == 2
    assert (
        out.stderr.decode().strip()
        == "r1chat: error: cannot attach /nonexistent/x.py: no such file"
    )
    assert (
        not (r1home / "history.sqlite3").exists()
        or json.loads(run_cli("history", "list", "--json", home=r1home).stdout) == []
    )


def test_a_file_too_long_for_the_context_is_refused_and_not_saved(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_text("word " * 3000)
    out = run_cli(
        "ask", "-m", str(scripted_model), "--ctx", "512", "-f", str(big), "q", home=r1home
    )
    assert out.returncode == 2 and "prompt is too long" in out.stderr.decode()
    assert json.loads(run_cli("history", "list", "--json", home=r1home).stdout or b"[]") == []


def test_a_question_is_shown_apart_from_its_files() -> None:
    from r1chat.attachments import Attachment, split_question, with_attachments

    files = [
        Attachment("a.py", "print(1)\n", 9),
        Attachment("notes.txt", "a.py:\nnot a file\n", 17),
    ]
    question = "Look at a.py:\nand notes.txt please"
    text = with_attachments(question, files)
    shown, blocks = split_question(text, [f.record() for f in files])
    assert shown == question
    assert blocks == ["a.py:\n```python\nprint(1)\n```", "notes.txt:\n```\na.py:\nnot a file\n```"]
    assert split_question(text, None) == (text, [])
    assert split_question("no files here", [{"name": "x"}]) == ("no files here", [])
