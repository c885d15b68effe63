"""Conversation history: one private SQLite file (WAL), versioned schema, full-text search.

Every write is its own committed transaction, so a crash or kill mid-generation loses at most the
reply in progress. A database we cannot read is reported, never replaced or deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from r1chat.endings import STOPPED, finish_note, thinking_note
from r1chat.errors import R1ChatError

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000
TITLE_MAX = 60


@dataclass(frozen=True)
class ConversationSummary:
    """A saved conversation as lists show it: its title, model, dates and size."""

    id: int
    title: str
    model: str
    created: str  # UTC, ISO-8601 with milliseconds and a Z: sorts as text
    updated: str
    messages: int = 0
    tokens: int = 0  # what the model wrote in it, all replies together
    deleted: str | None = None  # when it went to the trash

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str  # "user" or "assistant"
    content: str  # the question, or the answer without its thinking
    thinking: str
    stats: dict[str, Any] | None
    finish_reason: str | None  # None for questions; "cancelled" when the user stopped the reply
    created: str
    # The message this one follows: a reply's question; a question's earlier reply (or, when
    # two `ask -c` ran at once, the other's question). None for a conversation's first question.
    parent_id: int | None = None
    # How the reply's thinking ended: "model", "budget", "loop", "user"; None without thinking.
    thinking_ended: str | None = None
    attachments: list[dict[str, Any]] | None = None  # a question's attached files: name, size

    @property
    def stopped(self) -> bool:
        return self.finish_reason == STOPPED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    title: str
    message_id: int
    role: str
    snippet: str  # matched terms between the `mark` strings given to search()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def title_from(question: str) -> str:
    """A conversation title: the question's first non-blank line, cut to about TITLE_MAX chars."""
    line = next((ln for ln in question.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if not line:
        return "Untitled"
    if len(line) <= TITLE_MAX:
        return line
    cut = line[:TITLE_MAX]
    space = cut.rfind(" ")
    # Cut at a word boundary unless that throws away most of the line (one very long word).
    if space > TITLE_MAX // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


# --- schema -------------------------------------------------------------------------------------


def _v1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            -- Orders by activity: a counter, because two writes can share a millisecond and
            -- the clock can step back.
            touched INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX conversations_touched ON conversations(touched)")
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            thinking TEXT NOT NULL DEFAULT '',
            stats TEXT,
            finish_reason TEXT,
            created TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX messages_conversation ON messages(conversation_id, id)")
    # External-content FTS5: the text lives once, in `messages`; triggers keep the index in step
    # (ON DELETE CASCADE fires the delete trigger too).
    db.execute(
        """CREATE VIRTUAL TABLE messages_fts USING fts5(
            content, thinking, content='messages', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )"""
    )
    db.execute(
        """CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content, thinking)
            VALUES (new.id, new.content, new.thinking);
        END"""
    )
    db.execute(
        """CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content, thinking)
            VALUES ('delete', old.id, old.content, old.thinking);
        END"""
    )
    db.execute(
        """CREATE TRIGGER messages_au AFTER UPDATE OF content, thinking ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content, thinking)
            VALUES ('delete', old.id, old.content, old.thinking);
            INSERT INTO messages_fts(rowid, content, thinking)
            VALUES (new.id, new.content, new.thinking);
        END"""
    )


def _v2(db: sqlite3.Connection) -> None:
    """A conversation becomes a tree: every message names the one it follows, and the
    conversation the last message of the branch it shows. Replies of v1 files are given to their
    questions in order (two `ask -c` at once wrote Q Q A A; the first answer is the first's)."""
    db.execute(
        "ALTER TABLE messages ADD COLUMN parent_id INTEGER"
        " REFERENCES messages(id) ON DELETE CASCADE"
    )
    db.execute("ALTER TABLE messages ADD COLUMN thinking_ended TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN attachments TEXT")
    db.execute("ALTER TABLE conversations ADD COLUMN leaf_id INTEGER")
    db.execute("CREATE INDEX messages_parent ON messages(parent_id)")
    rows = db.execute("SELECT id, conversation_id, role FROM messages ORDER BY conversation_id, id")
    links: list[tuple[int | None, int]] = []
    last: dict[int, int] = {}
    waiting: dict[int, list[int]] = {}
    for mid, cid, role in rows.fetchall():
        unanswered = waiting.setdefault(cid, [])
        if role == "assistant" and unanswered:
            links.append((unanswered.pop(0), mid))
        else:
            links.append((last.get(cid), mid))
            if role == "user":
                unanswered.append(mid)
        last[cid] = mid
    db.executemany("UPDATE messages SET parent_id = ? WHERE id = ?", links)
    db.executemany(
        "UPDATE conversations SET leaf_id = ? WHERE id = ?",
        [(mid, cid) for cid, mid in last.items()],
    )


def _v3(db: sqlite3.Connection) -> None:
    """Deleting a conversation moves it to the trash (`deleted_at`), from which it can be
    restored until it is emptied; and conversation ids are never given out twice: the highest
    one ever used is kept (SQLite would hand a deleted last id to the next conversation)."""
    db.execute("ALTER TABLE conversations ADD COLUMN deleted_at TEXT")
    db.execute("CREATE INDEX conversations_deleted ON conversations(deleted_at)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute(
        "INSERT INTO meta (key, value)"
        " SELECT 'last_conversation_id', coalesce(max(id), 0) FROM conversations"
    )


_NEXT_TOUCH = "(SELECT coalesce(max(touched), 0) + 1 FROM conversations)"
# The trash is emptied of what has been in it longer than this.
TRASH_DAYS = 30
# Where a new message goes when no parent is named: after the conversation's leaf at that moment.
LEAF = -1

# MIGRATIONS[i] takes the schema from version i to i + 1. Append only; never edit a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


# --- opening ------------------------------------------------------------------------------------


def _create_private(path: Path) -> None:
    """Create the file 0600 before SQLite sees it: SQLite gives -wal and -shm the same mode."""
    if path.exists():
        return  # nothing to create (its folder may be read-only)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise R1ChatError(
            f"cannot create the history directory {path.parent}: {e.strerror or e}"
        ) from None
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise R1ChatError(f"cannot create the history database {path}: {e.strerror or e}") from None
    os.close(fd)


def _tighten(path: Path) -> None:
    """Make an existing database and its side files private, when we are allowed to. Only the
    group's and others' bits are cleared: a file made read-only stays read-only."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):
            mode = p.stat().st_mode
            if stat.S_ISREG(mode) and mode & 0o077:
                p.chmod(stat.S_IMODE(mode) & 0o700)


def _writable(path: Path) -> bool:
    """Whether the user lets us write the file and, beside it, its -wal and -shm files. The
    owner's write bit counts too: root may write anything, yet a file made read-only is meant
    to stay as it is."""
    try:
        ok = all(os.stat(p).st_mode & stat.S_IWUSR for p in (path, path.parent))
    except OSError:
        return False
    return ok and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    def connect(query: str) -> sqlite3.Connection:
        return sqlite3.connect(
            f"{path.as_uri()}?{query}",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )

    # mode=rw: SQLite must never create the file itself (it would not be private).
    if not read_only:
        return connect("mode=rw")
    db = connect("mode=ro")
    try:
        _one(db, "PRAGMA user_version")
        return db
    except sqlite3.OperationalError:
        # A WAL file in a folder we cannot write: SQLite cannot make its -shm file there.
        # Nothing can write to it from here, so reading it as immutable is safe.
        db.close()
        return connect("mode=ro&immutable=1")


def _check_header(path: Path) -> None:
    """Refuse anything that is not SQLite before SQLite opens (and might write to) it."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except IsADirectoryError:
        raise R1ChatError(f"the history database {path} is a directory") from None
    except OSError as e:
        raise R1ChatError(f"cannot read the history database {path}: {e.strerror or e}") from None
    if head and head != SQLITE_MAGIC:
        raise R1ChatError(
            f"the history database {path} is not an SQLite database (left "
            "untouched: move it aside to start a new history)"
        )


class HistoryStore:
    """Conversations and their messages in one SQLite file. Safe to share between threads."""

    def __init__(self, db: sqlite3.Connection, path: Path, *, read_only: bool = False) -> None:
        self._db = db
        self.path = path
        # A file (or folder) the user made read-only: reads work, writes fail in one line.
        self.read_only = read_only
        self._lock = threading.RLock()

    # -- lifecycle

    @classmethod
    def open(cls, path: Path | None = None, *, check: bool = True) -> HistoryStore:
        """Open (creating if needed) and migrate the history database.

        `check` runs SQLite's quick_check first, so a damaged file is reported on open rather than
        halfway through a conversation.
        """
        if path is None:
            from r1chat.config import paths

            path = paths().history_db
        path = Path(path).expanduser().absolute()
        _create_private(path)
        _check_header(path)
        _tighten(path)
        read_only = not _writable(path)
        try:
            db = _connect(path, read_only)
        except sqlite3.Error as e:
            raise _error(path, e) from None
        store = cls(db, path, read_only=read_only)
        try:
            store._prepare(check)
        except BaseException:
            db.close()
            raise
        return store

    def _prepare(self, check: bool) -> None:
        db = self._db
        with self._guard():
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Read-only checks first: nothing is written to a file we are about to refuse.
            version = _one(db, "PRAGMA user_version")
            if version > SCHEMA_VERSION:
                raise R1ChatError(
                    f"the history database {self.path} has schema version {version}, newer "
                    f"than this r1chat understands ({SCHEMA_VERSION}): upgrade r1chat"
                )
            if check:
                bad = _one(db, "PRAGMA quick_check(1)")
                if bad != "ok":
                    raise R1ChatError(
                        f"the history database {self.path} is damaged "
                        f"(quick_check: {bad}); left untouched"
                    )
            if self.read_only:
                if version < SCHEMA_VERSION:
                    raise R1ChatError(
                        f"the history database {self.path} is read-only and from an older"
                        " r1chat: make it writable once, so it can be upgraded"
                    )
                return
            if _one(db, "PRAGMA journal_mode") != "wal":
                self._use_wal()
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            if version < SCHEMA_VERSION:
                self._migrate()
        self.empty_trash(TRASH_DAYS)

    def _use_wal(self) -> None:
        """Switch a new file to WAL. Two processes doing this at once can get SQLITE_BUSY at once,
        without the busy handler (SQLite's deadlock avoidance), so retry up to the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL").fetchall()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    def _migrate(self) -> None:
        with self._tx() as db:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = _one(db, "PRAGMA user_version")
            for step in MIGRATIONS[version:]:
                step(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._guard():
            return int(_one(self._db, "PRAGMA user_version"))

    @contextlib.contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as e:
                raise _error(self.path, e) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on exit. IMMEDIATE takes the write lock up front, so
        a busy database waits (busy_timeout) instead of failing on lock upgrade."""
        if self.read_only:
            raise R1ChatError(f"the history database {self.path} is read-only: not saved")
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writes

    def new_conversation(self, title: str, model: str = "") -> int:
        ts = now()
        with self._tx() as db:
            # Past every id ever given out, a deleted one included.
            cid = int(
                _one(
                    db,
                    "SELECT max((SELECT value FROM meta WHERE key = 'last_conversation_id'),"
                    " (SELECT coalesce(max(id), 0) FROM conversations)) + 1",
                )
            )
            db.execute(
                "INSERT INTO conversations (id, title, model, created, updated, touched)"
                f" VALUES (?, ?, ?, ?, ?, {_NEXT_TOUCH})",
                (cid, _storable(" ".join(title.split())) or "Untitled", _storable(model), ts, ts),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'last_conversation_id'", (cid,))
            return cid

    def add_user_message(
        self,
        conv_id: int,
        content: str,
        *,
        parent_id: int | None = LEAF,
        attachments: list[dict[str, Any]] | None = None,
    ) -> int:
        """Save a question (committed) before generation starts; it becomes the leaf.

        By default it follows the conversation's leaf as it is when saved; a `parent_id` forks
        the conversation there (an edited question), None starts it afresh.
        """
        return self._add(conv_id, "user", content, parent_id=parent_id, attachments=attachments)

    def add_assistant_message(
        self,
        conv_id: int,
        content: str,
        thinking: str = "",
        stats: dict[str, Any] | None = None,
        finish_reason: str | None = "stop",
        *,
        parent_id: int | None = LEAF,
        thinking_ended: str | None = None,
        activate: bool = False,
    ) -> int:
        """Save a reply (to the question `parent_id`): `content` is the answer alone; "cancelled"
        marks it stopped.

        It becomes the leaf when its question is the leaf, or when `activate` (a new
        alternative). Otherwise the conversation went on meanwhile (another `ask -c` asked the
        next question) and the leaf stays: the branch shown keeps every question.
        """
        return self._add(
            conv_id,
            "assistant",
            content,
            thinking,
            stats,
            finish_reason,
            parent_id=parent_id,
            thinking_ended=thinking_ended,
            activate=activate,
        )

    def _add(
        self,
        conv_id: int,
        role: str,
        content: str,
        thinking: str = "",
        stats: dict[str, Any] | None = None,
        finish_reason: str | None = None,
        *,
        parent_id: int | None = LEAF,
        thinking_ended: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
        activate: bool = False,
    ) -> int:
        ts = now()
        blob = _storable(json.dumps(stats, ensure_ascii=False)) if stats is not None else None
        files = (
            _storable(json.dumps(attachments, ensure_ascii=False))
            if attachments is not None
            else None
        )
        with self._tx() as db:
            row = db.execute(
                "SELECT leaf_id FROM conversations WHERE id = ?", (conv_id,)
            ).fetchone()
            if row is None:
                raise _missing(conv_id)
            parent = row[0] if parent_id == LEAF else parent_id
            if (
                parent is not None
                and db.execute(
                    "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?", (parent, conv_id)
                ).fetchone()
                is None
            ):
                raise R1ChatError(f"no message {parent} in conversation {conv_id}")
            cur = db.execute(
                "INSERT INTO messages (conversation_id, role, content, thinking, stats,"
                " finish_reason, created, parent_id, thinking_ended, attachments)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conv_id,
                    role,
                    _storable(content),
                    _storable(thinking or ""),
                    blob,
                    finish_reason,
                    ts,
                    parent,
                    thinking_ended,
                    files,
                ),
            )
            mid = int(cur.lastrowid or 0)
            leaf = mid if role == "user" or activate or parent == row[0] else row[0]
            db.execute(
                f"UPDATE conversations SET updated = ?, touched = {_NEXT_TOUCH}, leaf_id = ?"
                " WHERE id = ?",
                (ts, leaf, conv_id),
            )
            return mid

    def set_leaf(self, conv_id: int, message_id: int) -> None:
        """Show (and continue) the branch that ends at `message_id`."""
        with self._tx() as db:
            if (
                db.execute(
                    "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?",
                    (message_id, conv_id),
                ).fetchone()
                is None
            ):
                raise R1ChatError(f"no message {message_id} in conversation {conv_id}")
            db.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?", (message_id, conv_id))

    def show_branch_of(self, conv_id: int, message_id: int) -> bool:
        """Show the branch that holds `message_id` (a search hit on another branch): its newest
        message becomes the leaf. False when it is on the branch shown already."""
        messages, leaf = self._all_messages(conv_id)
        if message_id in _path(conv_id, messages, leaf):
            return False
        if message_id not in {m.id for m in messages}:
            raise R1ChatError(f"no message {message_id} in conversation {conv_id}")
        self.set_leaf(conv_id, _newest_below(conv_id, _children(messages), message_id))
        return True

    def question_versions(self, conv_id: int) -> tuple[int, list[int]]:
        """See the module function `question_versions`, for the branch this conversation shows."""
        messages, leaf = self._all_messages(conv_id)
        path = _path(conv_id, messages, leaf)
        return question_versions(messages, [m for m in messages if m.id in path])

    def versions_shown(self, conv_id: int) -> dict[int, tuple[int, int]]:
        """For each question on the branch shown that has other versions (it was edited): its
        place among them, 1-based, and how many there are."""
        messages, leaf = self._all_messages(conv_id)
        path = _path(conv_id, messages, leaf)
        children = _children(messages)
        out: dict[int, tuple[int, int]] = {}
        for m in messages:
            if m.id in path and m.role == "user":
                versions = [v.id for v in children.get(m.parent_id, []) if v.role == "user"]
                if len(versions) > 1:
                    out[m.id] = (versions.index(m.id) + 1, len(versions))
        return out

    def rename(self, conv_id: int, title: str) -> None:
        title = _storable(" ".join(title.split()))
        if not title:
            raise R1ChatError("a conversation title cannot be empty", 2)
        with self._tx() as db:
            if (
                db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ?", (title, conv_id)
                ).rowcount
                == 0
            ):
                raise _missing(conv_id)

    def delete(self, conv_id: int) -> None:
        """Move a conversation to the trash: gone from lists and searches, restorable until the
        trash is emptied (after TRASH_DAYS, or `purge`)."""
        with self._tx() as db:
            if (
                db.execute(
                    "UPDATE conversations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                    (now(), conv_id),
                ).rowcount
                == 0
            ):
                raise _missing(conv_id)

    def restore(self, conv_id: int) -> None:
        """Bring a conversation back from the trash."""
        with self._tx() as db:
            if (
                db.execute(
                    "UPDATE conversations SET deleted_at = NULL"
                    " WHERE id = ? AND deleted_at IS NOT NULL",
                    (conv_id,),
                ).rowcount
                == 0
            ):
                raise R1ChatError(f"conversation {conv_id} is not in the trash", 2)

    def purge(self, conv_id: int) -> None:
        """Delete a conversation for good (from the trash or not), with its messages and their
        search index entries."""
        with self._tx() as db:
            if db.execute("DELETE FROM conversations WHERE id = ?", (conv_id,)).rowcount == 0:
                raise _missing(conv_id)

    def empty_trash(self, days: float = TRASH_DAYS) -> int:
        """Delete for good what has been in the trash longer than `days`; how many. Nothing
        happens to a read-only history."""
        if self.read_only:
            return 0
        cutoff = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        with self._tx() as db:
            return int(
                db.execute(
                    "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < ?",
                    (cutoff[:-3] + "Z",),
                ).rowcount
            )

    def trash(self) -> list[ConversationSummary]:
        """The conversations in the trash, most recently deleted first."""
        with self._guard() as db:
            rows = db.execute(
                self._CONV_SELECT + " WHERE c.deleted_at IS NOT NULL ORDER BY c.deleted_at DESC"
            )
            return [ConversationSummary(*row) for row in rows]

    # -- reads

    _CONV_SELECT = (
        "SELECT c.id, c.title, c.model, c.created, c.updated,"
        " (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id),"
        # A hand-made file may hold anything in stats: what is not a number counts as 0.
        " (SELECT coalesce(sum(CASE WHEN json_valid(m.stats)"
        "   AND json_type(m.stats, '$.completion_tokens') = 'integer'"
        "   THEN json_extract(m.stats, '$.completion_tokens') END), 0)"
        "  FROM messages m WHERE m.conversation_id = c.id AND m.role = 'assistant'),"
        " c.deleted_at"
        " FROM conversations c"
    )

    def list_conversations(
        self, limit: int | None = None, *, model: str | None = None
    ) -> list[ConversationSummary]:
        """Newest activity first, with their sizes; `model`: those whose model's name holds it
        (any case). The trash is left out."""
        sql = self._CONV_SELECT + " WHERE c.deleted_at IS NULL"
        args: list[Any] = []
        if model:
            sql += " AND instr(lower(c.model), lower(?))"
            args.append(_storable(model))
        sql += " ORDER BY c.touched DESC, c.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        with self._guard() as db:
            return [ConversationSummary(*row) for row in db.execute(sql, args)]

    def get_conversation(self, conv_id: int) -> ConversationSummary:
        """A conversation not in the trash; R1ChatError when there is no such one."""
        with self._guard() as db:
            row = db.execute(
                self._CONV_SELECT + " WHERE c.id = ? AND c.deleted_at IS NULL", (conv_id,)
            ).fetchone()
        if row is None:
            raise _missing(conv_id)
        return ConversationSummary(*row)

    def latest_conversation_id(self) -> int | None:
        with self._guard() as db:
            row = db.execute(
                "SELECT id FROM conversations WHERE deleted_at IS NULL"
                " ORDER BY touched DESC, id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else int(row[0])

    _MESSAGE_COLUMNS = (
        "id, conversation_id, role, content, thinking, stats, finish_reason, created,"
        " parent_id, thinking_ended, attachments"
    )

    def _all_messages(self, conv_id: int) -> tuple[list[Message], int | None]:
        """Every message of the conversation, oldest first, and its leaf."""
        with self._guard() as db:
            conv = db.execute(
                "SELECT leaf_id FROM conversations WHERE id = ?", (conv_id,)
            ).fetchone()
            if conv is None:
                raise _missing(conv_id)
            rows = db.execute(
                f"SELECT {self._MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
                " ORDER BY id",
                (conv_id,),
            ).fetchall()
        return [_message(r) for r in rows], conv[0]

    def messages(self, conv_id: int, *, all_branches: bool = False) -> list[Message]:
        """The messages of the branch the conversation shows (every branch with
        `all_branches`), oldest first. R1ChatError if there is no such conversation."""
        messages, leaf = self._all_messages(conv_id)
        if all_branches:
            return messages
        path = _path(conv_id, messages, leaf)
        return [m for m in messages if m.id in path]

    def exchanges(self, conv_id: int) -> list[tuple[Message, Message | None]]:
        """The branch shown, as (question, reply) pairs; None for a question never answered.

        A question's reply is the one on the branch, else its latest (two `ask -c` at once:
        each reply follows its own question, the next question follows the latest one).
        """
        messages, leaf = self._all_messages(conv_id)
        path = _path(conv_id, messages, leaf)
        on_path: dict[int, Message] = {}
        newest: dict[int, Message] = {}
        for m in messages:
            if m.role == "assistant" and m.parent_id is not None:
                newest[m.parent_id] = m
                if m.id in path:
                    on_path[m.parent_id] = m
        return [
            (m, on_path.get(m.id) or newest.get(m.id))
            for m in messages
            if m.id in path and m.role == "user"
        ]

    def shown(self, conv_id: int) -> list[Message]:
        """The branch shown, for reading: each question followed by its reply."""
        return [m for pair in self.exchanges(conv_id) for m in pair if m is not None]

    def turns(self, conv_id: int) -> list[tuple[str, str]]:
        """(question, answer) pairs to resend, for `prompts.history_messages`.

        Answers come without their thinking (stored apart); a reply stopped mid-thinking has an
        empty answer, as `prompts.answer_only` gives. A question never answered (the process died
        first) is skipped.
        """
        return [(q.content, r.content) for q, r in self.exchanges(conv_id) if r is not None]

    def search(
        self,
        query: str,
        limit: int = 20,
        *,
        mark: tuple[str, str] = ("[", "]"),
        model: str | None = None,
    ) -> list[SearchHit]:
        """Messages whose question, answer or thinking contain every word of `query`, the best
        match first (FTS5's bm25), then the newest; `model` keeps conversations whose model's
        name holds it. The trash is left out.

        Any text is accepted: words are quoted for FTS5 (a trailing * keeps prefix search). When
        no whole word matches, a substring search runs instead, which also finds text in
        languages written without spaces.
        """
        # FTS5's parser stops at a NUL ("unterminated string"); no control character is a word.
        terms = _CONTROLS.sub(" ", _storable(query)).split()
        if not terms or limit <= 0:
            return []
        fts = " ".join(_fts_term(t) for t in terms)
        where, args = _live_conversations(model)
        with self._guard() as db:
            try:
                rows = db.execute(
                    "SELECT m.conversation_id, c.title, m.id, m.role,"
                    " snippet(messages_fts, -1, ?, ?, '…', 16)"
                    " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
                    " JOIN conversations c ON c.id = m.conversation_id"
                    f" WHERE messages_fts MATCH ? AND {where} ORDER BY rank, m.id DESC LIMIT ?",
                    (mark[0], mark[1], fts, *args, limit),
                ).fetchall()
            except sqlite3.OperationalError as e:
                # Quoting should leave FTS5 nothing to reject; if it still does, the substring
                # search below answers instead of a syntax error reaching the user.
                if "locked" in str(e) or "busy" in str(e):
                    raise
                rows = []
            if rows:
                return [SearchHit(*row) for row in rows]
            terms = [t.rstrip("*") or t for t in terms]
            return self._substring_search(db, terms, limit, mark, model)

    def _substring_search(
        self,
        db: sqlite3.Connection,
        terms: list[str],
        limit: int,
        mark: tuple[str, str],
        model: str | None,
    ) -> list[SearchHit]:
        where = " AND ".join(
            "(instr(lower(m.content), ?) OR instr(lower(m.thinking), ?))" for _ in terms
        )
        args: list[Any] = []
        for t in terms:
            args += [t.lower(), t.lower()]
        live, live_args = _live_conversations(model)
        rows = db.execute(
            "SELECT m.conversation_id, c.title, m.id, m.role, m.content, m.thinking"
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            f" WHERE {where} AND {live} ORDER BY m.id DESC LIMIT ?",
            (*args, *live_args, limit),
        ).fetchall()
        return [
            SearchHit(r[0], r[1], r[2], r[3], _snippet(r[4], r[5], terms[0], mark)) for r in rows
        ]


# --- export -------------------------------------------------------------------------------------


def export_dict(conv: ConversationSummary, messages: list[Message]) -> dict[str, Any]:
    """A conversation with all its messages, for JSON."""
    return {**conv.to_dict(), "messages": [m.to_dict() for m in messages]}


def export_markdown(conv: ConversationSummary, messages: list[Message]) -> str:
    """A conversation as Markdown; each reply's thinking folded in a <details> block."""
    out = [
        f"# {conv.title}",
        "",
        f"- conversation: {conv.id}",
        f"- model: {conv.model or 'unknown'}",
        f"- created: {conv.created}",
        f"- updated: {conv.updated}",
        "",
    ]
    for m in messages:
        if m.role == "user":
            out += ["## Question", "", m.content.rstrip(), ""]
            continue
        out += ["## Answer", ""]
        if m.thinking.strip():
            how = thinking_note(m.thinking_ended)
            out += [
                "<details>",
                f"<summary>Thinking ({how})</summary>" if how else "<summary>Thinking</summary>",
                "",
                m.thinking.strip(),
                "",
                "</details>",
                "",
            ]
        if m.content.strip():
            out += [m.content.rstrip(), ""]
        note = finish_note(
            m.finish_reason, (m.stats or {}).get("completion_tokens"), m.thinking_ended
        )
        if note is not None:
            out += [f"*{note}*", ""]
    return "\n".join(out).rstrip("\n") + "\n"


# --- helpers ------------------------------------------------------------------------------------


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _fts_term(term: str) -> str:
    """One user word as a quoted FTS5 string: operators and quotes lose their meaning."""
    prefix = term.endswith("*") and len(term.rstrip("*")) > 0
    body = term.rstrip("*") if prefix else term
    quoted = '"' + body.replace('"', '""') + '"'
    return quoted + "*" if prefix else quoted


def _snippet(content: str, thinking: str, term: str, mark: tuple[str, str], width: int = 60) -> str:
    for text in (content, thinking):
        at = text.lower().find(term.lower())
        if at < 0:
            continue
        start = max(0, at - width // 2)
        end = min(len(text), at + len(term) + width // 2)
        piece = (
            text[start:at]
            + mark[0]
            + text[at : at + len(term)]
            + mark[1]
            + text[at + len(term) : end]
        )
        piece = re.sub(r"\s+", " ", piece)
        return ("…" if start else "") + piece + ("…" if end < len(text) else "")
    return ""


def _one(db: sqlite3.Connection, sql: str) -> Any:
    """The single value `sql` returns; fetchall finishes the statement, releasing its lock."""
    return db.execute(sql).fetchall()[0][0]


def question_versions(messages: list[Message], shown: list[Message]) -> tuple[int, list[int]]:
    """Where the branch shown last forked by an edited question: the position of the version
    shown among the versions of that question (questions with the same parent), and for each
    version the newest message of its branch (its leaf, to show it). (0, []) when no question
    on the branch shown was ever edited."""
    children = _children(messages)
    for q in reversed([m for m in shown if m.role == "user"]):
        versions = [m for m in children.get(q.parent_id, []) if m.role == "user"]
        if len(versions) < 2:
            continue
        leaves = [_newest_below(v.conversation_id, children, v.id) for v in versions]
        return [v.id for v in versions].index(q.id), leaves
    return 0, []


def _children(messages: list[Message]) -> dict[int | None, list[Message]]:
    children: dict[int | None, list[Message]] = {}
    for m in messages:
        children.setdefault(m.parent_id, []).append(m)
    return children


def _newest_below(conv_id: int, children: dict[int | None, list[Message]], message_id: int) -> int:
    """The newest message of the subtree under `message_id` (itself included): the leaf that
    shows its branch as it was last continued. R1ChatError when the subtree loops back on
    itself (a hand-made file): walked blindly, a loop never ends."""
    newest, todo, seen = message_id, [message_id], {message_id}
    while todo:
        for child in children.get(todo.pop(), []):
            if child.id in seen:
                raise _loop(conv_id, child.id)
            seen.add(child.id)
            newest = max(newest, child.id)
            todo.append(child.id)
    return newest


def _path(conv_id: int, messages: list[Message], leaf: int | None) -> set[int]:
    """The ids from the leaf back to the conversation's first message. R1ChatError when the
    parents lead back to a message already passed (a hand-made file): there is no first one."""
    parents = {m.id: m.parent_id for m in messages}
    path: set[int] = set()
    node = leaf
    while node is not None and node in parents:
        path.add(node)
        parent = parents[node]
        if parent in path:
            raise _loop(conv_id, node)
        node = parent
    return path


def _loop(conv_id: int, message_id: int) -> R1ChatError:
    return R1ChatError(
        f"the history file is damaged: conversation {conv_id}'s messages form a loop"
        f" (message {message_id})"
    )


# A lone UTF-16 surrogate: a Python str holds it, UTF-8 (and so SQLite) cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(text: str) -> str:
    """`text` as SQLite can store it: a lone surrogate becomes U+FFFD (a pair becomes the
    character it encodes), so that a reply with one is saved rather than lost to an encoding
    error."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _message(r: tuple[Any, ...]) -> Message:
    files = _load_json(r[10])
    return Message(
        id=r[0],
        conversation_id=r[1],
        role=r[2],
        content=r[3],
        thinking=r[4],
        stats=_load_stats(r[5]),
        finish_reason=r[6],
        created=r[7],
        parent_id=r[8],
        thinking_ended=r[9],
        attachments=files if isinstance(files, list) else None,
    )


def _load_json(blob: str | None) -> Any:
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except ValueError:
        return None


def _load_stats(blob: str | None) -> dict[str, Any] | None:
    value = _load_json(blob)
    return value if isinstance(value, dict) else None


def _live_conversations(model: str | None) -> tuple[str, list[Any]]:
    """The SQL condition (on `c`, the conversations) that keeps the trash out and, given a
    model, what it names."""
    if model:
        return "c.deleted_at IS NULL AND instr(lower(c.model), lower(?))", [_storable(model)]
    return "c.deleted_at IS NULL", []


def _missing(conv_id: int) -> R1ChatError:
    return R1ChatError(f"no conversation {conv_id} in the history")


def _error(path: Path, e: sqlite3.Error) -> R1ChatError:
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and "locked" in text:
        return R1ChatError(
            f"the history database {path} is busy (another r1chat is writing): {text}"
        )
    if isinstance(e, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
        return R1ChatError(f"the history database {path} is damaged ({text}); left untouched")
    return R1ChatError(f"history database {path}: {text}")
