"""Files attached to a question: read as text, checked, and put into the question as fenced
blocks under their names, the way a user pastes a file for the model to read.

The model only ever sees text, so a file is refused before anything is sent when it is not text
(NUL bytes, or not UTF-8), cannot be read, is not a regular file (a directory, a named pipe, a
device), or is larger than any context holds; one that would not fit this context is refused by
the engine's own check, also before the question is saved.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage

# The largest context a model of ours has, and about the most bytes of text it holds (a token is
# some 4 bytes of English, fewer of code or other scripts): a larger file cannot fit any context,
# and reading and counting one only keeps the user waiting.
LARGEST_CONTEXT = 131_072
MAX_BYTES = 4 * LARGEST_CONTEXT  # 512 KiB
STDIN_NAME = "stdin"
_NOT_FILES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)
_FENCE_RUN = re.compile(r"`{3,}")
_LANGS = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".rs": "rust", ".go": "go",
    ".c": "c", ".h": "c", ".cpp": "cpp", ".java": "java", ".rb": "ruby", ".sh": "bash",
    ".md": "markdown", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".html": "html", ".css": "css", ".sql": "sql", ".tex": "latex", ".txt": "",
}  # fmt: skip


@dataclass(frozen=True)
class Attachment:
    name: str  # as the user named it (a path, or "stdin")
    text: str
    size: int  # bytes

    def record(self, tokens: int | None = None) -> dict[str, Any]:
        """What the history keeps beside the question (the text is in the question itself):
        its name and size, and what it costs in tokens when that was counted."""
        out: dict[str, Any] = {"name": self.name, "size": self.size}
        if tokens is not None:
            out["tokens"] = tokens
        return out


def read_attachment(path: str, stdin: bytes | None = None) -> Attachment:
    """The file at `path` (`-`: the bytes piped on stdin) as text, or a one-line error.

    Only a regular file is opened: opening a named pipe waits for a writer, for ever, and a
    device never ends; nor is a file read that is larger than any context holds."""
    if path == "-":
        if stdin is None:
            raise R1ChatError("-f -: nothing is piped on stdin", 2)
        _check_size(STDIN_NAME, len(stdin))
        return _decoded(STDIN_NAME, stdin)
    p = Path(path).expanduser()
    try:
        _check_kind(path, os.stat(p).st_mode)
        # Opened without waiting, and checked again once open: the name may have been given to
        # a pipe meanwhile.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with open(fd, "rb") as f:
            info = os.fstat(f.fileno())
            _check_kind(path, info.st_mode)
            _check_size(path, info.st_size)
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise R1ChatError(f"cannot attach {path}: {_why(p, e)}", 2) from None
    _check_size(path, len(data))  # a file that grew
    return _decoded(path, data)


def _check_kind(name: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((kind for test, kind in _NOT_FILES if test(mode)), "not a file")
        raise R1ChatError(f"cannot attach {name}: it is {kind}, not a regular file", 2)


def _check_size(name: str, size: int) -> None:
    if size > MAX_BYTES:
        raise R1ChatError(
            f"cannot attach {name}: {size:,} bytes is over the limit of {MAX_BYTES // 1024} KiB"
            f" (about what a {LARGEST_CONTEXT:,}-token context holds)",
            2,
        )


def _why(path: Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a symbolic link loop"
    if e.errno == errno.ENOENT:
        if path.is_symlink():
            return "a symbolic link to a file that does not exist"
        return "no such file"
    return e.strerror or str(e)


def _decoded(name: str, data: bytes) -> Attachment:
    if b"\x00" in data[:65536]:
        raise R1ChatError(f"cannot attach {name}: it is a binary file, not text", 2)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise R1ChatError(f"cannot attach {name}: it is not UTF-8 text", 2) from None
    return Attachment(name, text, len(data))


def fenced(attachment: Attachment) -> str:
    """The file as a Markdown fence under its name; the fence is longer than any run of
    backticks inside, so the file cannot end it early."""
    longest = max((len(m.group()) for m in _FENCE_RUN.finditer(attachment.text)), default=0)
    fence = "`" * max(3, longest + 1)
    lang = _LANGS.get(os.path.splitext(attachment.name)[1].lower(), "")
    body = attachment.text if attachment.text.endswith("\n") else attachment.text + "\n"
    return f"{attachment.name}:\n{fence}{lang}\n{body}{fence}"


def with_attachments(question: str, attachments: list[Attachment]) -> str:
    """The question, then each file; the question comes first so the title stays its own."""
    if not attachments:
        return question
    return "\n\n".join([question, *(fenced(a) for a in attachments)])


def split_question(text: str, records: list[dict[str, Any]] | None) -> tuple[str, list[str]]:
    """A question as the user wrote it, apart from the files `with_attachments` put after it
    (`records`: what the history keeps of them, in order): (the question, each file's block)."""
    names = [str(r.get("name")) for r in records or [] if isinstance(r, dict)]
    if not names:
        return text, []
    starts: list[int] = []
    at = len(text)
    for name in reversed(names):  # from the end: a question may mention a file's name
        at = text.rfind(f"\n\n{name}:\n", 0, at)
        if at < 0:
            return text, []
        starts.insert(0, at)
    blocks = [text[a + 2 : b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    return text[: starts[0]], blocks


def tokens_of(count: Callable[[list[ChatMessage]], int], text: str) -> int:
    """What `text` costs in a question, in tokens: counted with the chat template around it and
    without, so the template's own tokens are left out (`count`: an engine's count_tokens)."""
    return max(count([ChatMessage("user", text)]) - count([ChatMessage("user", "")]), 0)
