"""Files attached to a question: read as text, checked, and put into the question as fenced
blocks under their names, the way a user pastes a file for the model to read.

The model only ever sees text, so a file is refused before anything is sent when it is not text
(NUL bytes, or not UTF-8), cannot be read, or is a directory; one that would not fit the context
is refused by the engine's own check, also before the question is saved.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage

# Far beyond any context (a 131,072-token context holds ~0.5 MB of text): reading more is waste.
MAX_BYTES = 8 * 1024 * 1024
STDIN_NAME = "stdin"
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
    """The file at `path` (`-`: the bytes piped on stdin) as text, or a one-line error."""
    if path == "-":
        if stdin is None:
            raise R1ChatError("-f -: nothing is piped on stdin", 2)
        return _decoded(STDIN_NAME, stdin)
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            raise R1ChatError(f"cannot attach {path}: it is a directory", 2)
        if not p.exists():
            raise R1ChatError(f"cannot attach {path}: no such file", 2)
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise R1ChatError(
                f"cannot attach {path}: {size:,} bytes is more than any context holds", 2
            )
        with p.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise R1ChatError(f"cannot attach {path}: {e.strerror or e}", 2) from None
    if len(data) > MAX_BYTES:  # a FIFO or a file that grew
        raise R1ChatError(f"cannot attach {path}: more than {MAX_BYTES:,} bytes", 2)
    return _decoded(path, data)


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
