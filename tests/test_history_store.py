"""HistoryStore on real SQLite files: schema, migrations, search, permissions, damage, writers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from r1chat import history
from r1chat.errors import R1ChatError
from r1chat.history import HistoryStore, title_from
from r1chat.prompts import history_messages


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "history.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(db_path)
    yield s
    s.close()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def chat(store: HistoryStore, title: str = "t", *pairs: tuple[str, str, str]) -> int:
    cid = store.new_conversation(title, "r1-7b")
    for q, think, answer in pairs:
        store.add_user_message(cid, q)
        store.add_assistant_message(cid, answer, think, {"seed": 1}, "stop")
    return cid


# --- round trip -----------------------------------------------------------------------------


def test_round_trip_survives_reopening(db_path: Path) -> None:
    with HistoryStore.open(db_path) as s:
        cid = s.new_conversation("Sums", "r1-7b")
        q = s.add_user_message(cid, "What is 2+2?")
        a = s.add_assistant_message(
            cid, "It is 4.", "2 plus 2 is 4", {"decode_tok_s": 31.5, "seed": 7}, "stop"
        )
    with HistoryStore.open(db_path) as s:
        conv = s.get_conversation(cid)
        msgs = s.messages(cid)
    assert (conv.id, conv.title, conv.model, conv.messages) == (cid, "Sums", "r1-7b", 2)
    assert conv.created <= conv.updated
    assert [m.id for m in msgs] == [q, a]
    user, reply = msgs
    assert (user.role, user.content, user.thinking, user.stats, user.finish_reason) == (
        "user",
        "What is 2+2?",
        "",
        None,
        None,
    )
    assert (reply.role, reply.content, reply.thinking) == ("assistant", "It is 4.", "2 plus 2 is 4")
    assert reply.stats == {"decode_tok_s": 31.5, "seed": 7}
    assert reply.finish_reason == "stop" and not reply.stopped


def test_cancelled_reply_is_marked_stopped(store: HistoryStore) -> None:
    cid = store.new_conversation("t", "m")
    store.add_user_message(cid, "q")
    store.add_assistant_message(cid, "", "half a thou", None, "cancelled")
    assert store.messages(cid)[-1].stopped


def test_timestamps_are_utc_iso(store: HistoryStore) -> None:
    from datetime import datetime, timedelta

    cid = store.new_conversation("t", "m")
    created = datetime.fromisoformat(store.get_conversation(cid).created)
    assert created.utcoffset() == timedelta(0)
    assert abs((datetime.now(created.tzinfo) - created).total_seconds()) < 60


def test_list_is_newest_activity_first_with_counts(store: HistoryStore) -> None:
    a = chat(store, "a", ("q1", "t", "a1"))
    b = chat(store, "b")
    assert [c.id for c in store.list_conversations()] == [b, a]
    store.add_user_message(a, "again")
    convs = store.list_conversations()
    assert [(c.id, c.messages) for c in convs] == [(a, 3), (b, 0)]
    assert [c.id for c in store.list_conversations(limit=1)] == [a]
    assert store.latest_conversation_id() == a


def test_latest_conversation_id_is_none_when_empty(store: HistoryStore) -> None:
    assert store.latest_conversation_id() is None
    assert store.list_conversations() == []


def test_each_write_is_committed_at_once(db_path: Path, store: HistoryStore) -> None:
    cid = store.new_conversation("t", "m")
    store.add_user_message(cid, "saved before generation")
    # A second connection sees it while the first is still open, mid-"generation".
    with HistoryStore.open(db_path) as other:
        assert [m.content for m in other.messages(cid)] == ["saved before generation"]


def test_sigkill_after_the_question_keeps_it(db_path: Path) -> None:
    HistoryStore.open(db_path).close()
    script = textwrap.dedent(f"""
        import sys, time
        from r1chat.history import HistoryStore
        s = HistoryStore.open({str(db_path)!r})
        cid = s.new_conversation("kill", "m")
        s.add_user_message(cid, "first")
        s.add_assistant_message(cid, "reply", "think", None, "stop")
        s.add_user_message(cid, "the question")
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with HistoryStore.open(db_path) as s:
        cid = s.latest_conversation_id()
        assert cid is not None
        assert [m.content for m in s.messages(cid)] == ["first", "reply", "the question"]
    with raw(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- turns ------------------------------------------------------------------------------------


def test_turns_drop_thinking_and_skip_unanswered_questions(store: HistoryStore) -> None:
    cid = store.new_conversation("t", "m")
    store.add_user_message(cid, "q1")
    store.add_assistant_message(cid, "a1", "secret reasoning 1", None, "stop")
    store.add_user_message(cid, "q2 (the process died before replying)")
    store.add_user_message(cid, "q3")
    store.add_assistant_message(cid, "", "stopped mid-thought", None, "cancelled")
    store.add_user_message(cid, "q4")
    store.add_assistant_message(cid, "a4", "secret reasoning 4", None, "stop")
    store.add_user_message(cid, "q5 pending")
    turns = store.turns(cid)
    assert turns == [("q1", "a1"), ("q3", ""), ("q4", "a4")]
    sent = " ".join(m.content for m in history_messages(turns))
    assert "secret" not in sent and "stopped mid-thought" not in sent


# --- migrations -------------------------------------------------------------------------------


def test_a_new_file_is_created_at_the_current_version(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with HistoryStore.open(db_path) as s:
        assert s.schema_version == history.SCHEMA_VERSION >= 1
    with raw(db_path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"conversations", "messages", "messages_fts"} <= names


def test_an_empty_file_is_migrated_from_version_0(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch(mode=0o600)
    with HistoryStore.open(db_path) as s:
        assert s.schema_version == history.SCHEMA_VERSION
        assert s.messages(chat(s, "x", ("q", "t", "a"))) != []


def test_a_version_0_sqlite_file_keeps_its_own_tables(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with raw(db_path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('keep me')")
    db.close()
    with HistoryStore.open(db_path) as s:
        assert s.schema_version == history.SCHEMA_VERSION
        chat(s, "x", ("q", "t", "a"))
    with raw(db_path) as db:
        assert db.execute("SELECT body FROM notes").fetchall() == [("keep me",)]


def test_migrations_run_in_order_from_the_stored_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HistoryStore.open(db_path) as s:
        cid = chat(s, "old", ("q", "t", "a"))
    ran: list[int] = []

    n = len(history.MIGRATIONS)

    def pin(db: sqlite3.Connection) -> None:
        ran.append(n + 1)
        db.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")

    def pin_all(db: sqlite3.Connection) -> None:
        ran.append(n + 2)
        db.execute("UPDATE conversations SET pinned = 1")

    monkeypatch.setattr(history, "MIGRATIONS", [*history.MIGRATIONS, pin, pin_all])
    monkeypatch.setattr(history, "SCHEMA_VERSION", n + 2)
    with HistoryStore.open(db_path) as s:
        assert s.schema_version == n + 2
        assert s.get_conversation(cid).title == "old"
    with HistoryStore.open(db_path):
        pass
    assert ran == [n + 1, n + 2]  # once each, in order, and not again on the next open
    with raw(db_path) as db:
        assert db.execute("SELECT pinned FROM conversations").fetchall() == [(1,)]


def test_a_failing_migration_leaves_the_old_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HistoryStore.open(db_path) as s:
        cid = chat(s, "old", ("q", "t", "a"))

    def broken(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER")
        db.execute("SELECT * FROM no_such_table")

    current = history.SCHEMA_VERSION
    monkeypatch.setattr(history, "MIGRATIONS", [*history.MIGRATIONS, broken])
    monkeypatch.setattr(history, "SCHEMA_VERSION", current + 1)
    with pytest.raises(R1ChatError, match="no_such_table"):
        HistoryStore.open(db_path)
    monkeypatch.undo()
    with HistoryStore.open(db_path) as s:
        assert s.schema_version == current
        assert s.get_conversation(cid).title == "old"
    with raw(db_path) as db:
        cols = [r[1] for r in db.execute("PRAGMA table_info(conversations)")]
    assert "pinned" not in cols


def test_a_newer_schema_is_refused_and_left_alone(db_path: Path) -> None:
    with HistoryStore.open(db_path) as s:
        chat(s, "x", ("q", "t", "a"))
    with raw(db_path) as db:
        db.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    db.close()
    before = db_path.read_bytes()
    with pytest.raises(R1ChatError, match="newer") as e:
        HistoryStore.open(db_path)
    assert str(db_path) in str(e.value)
    assert db_path.read_bytes() == before


# --- damage -----------------------------------------------------------------------------------


def test_random_bytes_are_refused_naming_the_file_untouched(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    junk = os.urandom(8192)
    db_path.write_bytes(junk)
    db_path.chmod(0o644)
    with pytest.raises(R1ChatError, match="not an SQLite database") as e:
        HistoryStore.open(db_path)
    assert str(db_path) in str(e.value)
    assert db_path.read_bytes() == junk and mode(db_path) == 0o644
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]


def test_a_damaged_page_is_reported_on_open_untouched(db_path: Path) -> None:
    with HistoryStore.open(db_path) as s:
        for i in range(40):
            chat(s, f"c{i}", (f"question {i} " * 50, "thinking " * 200, f"answer {i} " * 50))
    with raw(db_path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()[
            0
        ]
    db.close()
    data = bytearray(db_path.read_bytes())
    start = (root - 1) * page_size
    data[start : start + page_size] = os.urandom(page_size)
    db_path.write_bytes(bytes(data))
    with pytest.raises(R1ChatError, match="damaged") as e:
        HistoryStore.open(db_path)
    assert str(db_path) in str(e.value)
    assert db_path.read_bytes() == bytes(data)


def test_a_directory_in_place_of_the_file_is_reported(db_path: Path) -> None:
    db_path.mkdir(parents=True)
    with pytest.raises(R1ChatError, match="directory") as e:
        HistoryStore.open(db_path)
    assert str(db_path) in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_reported(db_path: Path) -> None:
    HistoryStore.open(db_path).close()
    db_path.chmod(0)
    try:
        with pytest.raises(R1ChatError, match="Permission denied") as e:
            HistoryStore.open(db_path)
        assert str(db_path) in str(e.value)
    finally:
        db_path.chmod(0o600)


# --- permissions ------------------------------------------------------------------------------


def test_database_wal_and_shm_are_private(db_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with HistoryStore.open(db_path) as s:
            chat(s, "x", ("q", "t", "a"))
            wal, shm = Path(f"{db_path}-wal"), Path(f"{db_path}-shm")
            assert wal.exists() and shm.exists()
            assert (mode(db_path), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    finally:
        os.umask(old)


def test_an_existing_world_readable_database_is_made_private(db_path: Path) -> None:
    HistoryStore.open(db_path).close()
    db_path.chmod(0o644)
    HistoryStore.open(db_path).close()
    assert mode(db_path) == 0o600


# --- search -----------------------------------------------------------------------------------


@pytest.fixture
def searchable(store: HistoryStore) -> dict[str, int]:
    ids = {
        "primes": chat(
            store, "Primes", ("Is 97 prime?", "Try dividing by 2, 3, 5 and 7", "Yes, 97 is prime.")
        ),
        "coffee": chat(
            store,
            "Coffee",
            ("Where is the café?", "The user wants a café", "Around the corner; AND it is open."),
        ),
        "cjk": chat(store, "Chinese", ("你好世界是什么意思", "翻译问题", "It means hello world.")),
    }
    return ids


def test_search_finds_questions_answers_and_thinking(
    store: HistoryStore, searchable: dict[str, int]
) -> None:
    (hit,) = store.search("dividing")
    assert (hit.conversation_id, hit.title, hit.role) == (
        searchable["primes"],
        "Primes",
        "assistant",
    )
    assert "[dividing]" in hit.snippet
    roles = {h.role for h in store.search("97")}
    assert roles == {"user", "assistant"}
    assert {h.message_id for h in store.search("97")} == {
        m.id for m in store.messages(searchable["primes"])
    }


def test_search_needs_every_word(store: HistoryStore, searchable: dict[str, int]) -> None:
    assert [h.conversation_id for h in store.search("97 prime yes")] == [searchable["primes"]]
    assert store.search("97 corner") == []


def test_search_folds_case_and_accents_and_takes_prefixes(
    store: HistoryStore, searchable: dict[str, int]
) -> None:
    coffee = searchable["coffee"]
    assert {h.conversation_id for h in store.search("CAFE")} == {coffee}
    assert {h.conversation_id for h in store.search("café")} == {coffee}
    assert {h.conversation_id for h in store.search("corn*")} == {coffee}


def test_search_finds_text_written_without_spaces(
    store: HistoryStore, searchable: dict[str, int]
) -> None:
    hits = store.search("世界")
    assert [h.conversation_id for h in hits] == [searchable["cjk"]]
    assert "[世界]" in hits[0].snippet


@pytest.mark.parametrize(
    "query",
    [
        '"',
        'a"b',
        "AND",
        "OR",
        "NOT prime",
        "NEAR(prime 97)",
        "*",
        "**",
        "-",
        "prime -97",
        "content:prime",
        "thinking:dividing",
        "(",
        ")",
        "^prime",
        "'",
        "\\",
        '""""',
        "97 AND",
        "{content}: x",
        "prime*)",
        "🙂",
        "\x00",
        "a" * 2000,
        "%",
        "_",
    ],
)
def test_search_accepts_any_text(
    store: HistoryStore, searchable: dict[str, int], query: str
) -> None:
    hits = store.search(query)
    assert isinstance(hits, list)


def test_operators_are_plain_words(store: HistoryStore, searchable: dict[str, int]) -> None:
    # As operators these would be syntax errors or filters; as words they are just words.
    assert {h.conversation_id for h in store.search("AND")} == {
        searchable["primes"],
        searchable["coffee"],
    }
    assert store.search("NOT prime") == []
    # A column filter would match the thinking; nothing contains the words "thinking dividing".
    assert store.search("thinking:dividing") == []


def test_blank_query_finds_nothing(store: HistoryStore, searchable: dict[str, int]) -> None:
    assert store.search("   ") == []
    assert store.search("prime", limit=0) == []


def test_search_respects_limit(store: HistoryStore) -> None:
    for i in range(5):
        chat(store, f"c{i}", ("needle", "", "hay"))
    assert len(store.search("needle", limit=3)) == 3


# --- rename, delete ---------------------------------------------------------------------------


def test_rename(store: HistoryStore) -> None:
    cid = chat(store, "old")
    assert store.get_conversation(store.new_conversation(" a\nb ", "m")).title == "a b"
    store.rename(cid, "  New\n title ")
    assert store.get_conversation(cid).title == "New title"
    with pytest.raises(R1ChatError, match="empty"):
        store.rename(cid, " \n ")


def test_delete_moves_to_the_trash_and_restore_brings_it_back(store: HistoryStore) -> None:
    keep = chat(store, "keep", ("needle kept", "t", "a"))
    gone = chat(store, "gone", ("needle gone", "needle thinking", "a"), ("q2", "t", "a"))
    store.delete(gone)
    with pytest.raises(R1ChatError, match=f"no conversation {gone}"):
        store.get_conversation(gone)
    assert [c.id for c in store.list_conversations()] == [keep]
    assert {h.conversation_id for h in store.search("needle")} == {keep}
    assert {h.conversation_id for h in store.search("thin")} == set()  # substring search too
    assert store.latest_conversation_id() == keep
    [trashed] = store.trash()
    assert trashed.id == gone and trashed.deleted is not None and trashed.messages == 4
    store.restore(gone)
    assert store.get_conversation(gone).title == "gone" and store.trash() == []
    assert {h.conversation_id for h in store.search("needle")} == {keep, gone}
    with pytest.raises(R1ChatError, match="not in the trash"):
        store.restore(gone)


def test_the_trash_empties_itself_after_thirty_days(db_path: Path) -> None:
    with HistoryStore.open(db_path) as s:
        old = chat(s, "old", ("q", "t", "a"))
        recent = chat(s, "recent", ("q", "t", "a"))
        s.delete(old)
        s.delete(recent)
    with raw(db_path) as db:
        db.execute(
            "UPDATE conversations SET deleted_at = '2000-01-01T00:00:00.000Z' WHERE id = ?",
            (old,),
        )
    with HistoryStore.open(db_path) as s:
        assert [c.id for c in s.trash()] == [recent]
        with raw(db_path) as db:
            assert db.execute(
                "SELECT count(*) FROM messages WHERE conversation_id = ?", (old,)
            ).fetchone() == (0,)


def test_conversation_ids_are_never_given_out_twice(store: HistoryStore) -> None:
    first = chat(store, "one", ("q", "t", "a"))
    last = chat(store, "two", ("q", "t", "a"))
    store.purge(last)  # the highest id, gone for good: SQLite alone would give it out again
    again = chat(store, "three", ("q", "t", "a"))
    assert again > last > first


def test_ids_stay_unique_in_a_file_from_before_the_trash(db_path: Path) -> None:
    with HistoryStore.open(db_path) as s:
        cid = chat(s, "old", ("q", "t", "a"))
    with raw(db_path) as db:  # back to schema 2, as an older r1chat left it
        db.execute("DROP TABLE meta")
        db.execute("DROP INDEX conversations_deleted")
        db.execute("ALTER TABLE conversations DROP COLUMN deleted_at")
        db.execute("PRAGMA user_version = 2")
    with HistoryStore.open(db_path) as s:
        assert s.schema_version == history.SCHEMA_VERSION
        assert s.get_conversation(cid).title == "old"
        assert chat(s, "new", ("q", "t", "a")) == cid + 1


def test_purge_cascades_to_messages_and_search(db_path: Path, store: HistoryStore) -> None:
    keep = chat(store, "keep", ("needle kept", "t", "a"))
    gone = chat(store, "gone", ("needle gone", "needle thinking", "a"), ("q2", "t", "a"))
    store.delete(gone)
    store.purge(gone)
    assert store.trash() == []
    with raw(db_path) as db:
        assert (
            db.execute(
                "SELECT count(*) FROM messages WHERE conversation_id = ?", (gone,)
            ).fetchone()[0]
            == 0
        )
        db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    assert {h.conversation_id for h in store.search("needle")} == {keep}


def test_lists_show_sizes_and_filter_by_model(store: HistoryStore) -> None:
    a = store.new_conversation("a", "DeepSeek-R1-Distill-Qwen-7B")
    store.add_user_message(a, "q")
    store.add_assistant_message(a, "x", "t", {"completion_tokens": 120}, "stop")
    store.add_user_message(a, "q2")
    store.add_assistant_message(a, "y", "t", {"completion_tokens": "junk"}, "stop")
    b = store.new_conversation("b", "smollm2")
    [row_b, row_a] = store.list_conversations()
    assert (row_a.id, row_a.messages, row_a.tokens) == (a, 4, 120)
    assert (row_b.id, row_b.messages, row_b.tokens) == (b, 0, 0)
    assert [c.id for c in store.list_conversations(model="qwen-7b")] == [a]
    assert [c.id for c in store.list_conversations(model="SMOL")] == [b]


def test_search_ranks_the_best_match_first_then_the_newest(store: HistoryStore) -> None:
    weak = chat(
        store, "weak", ("a long question that mentions prime once among many words", "t", "a")
    )
    strong = chat(store, "strong", ("prime prime prime", "t", "a"))
    newer = chat(
        store, "newer", ("a long question that mentions prime once among many words", "t", "a")
    )
    hits = [h.conversation_id for h in store.search("prime")]
    assert hits == [strong, newer, weak]
    other = store.new_conversation("other model", "smollm2")
    store.add_user_message(other, "prime prime prime prime")
    assert [h.conversation_id for h in store.search("prime", model="smol")] == [other]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_conversation(999),
        lambda s: s.messages(999),
        lambda s: s.turns(999),
        lambda s: s.add_user_message(999, "q"),
        lambda s: s.add_assistant_message(999, "a"),
        lambda s: s.rename(999, "t"),
        lambda s: s.delete(999),
    ],
)
def test_a_missing_conversation_is_a_user_error(
    store: HistoryStore, call: Callable[[HistoryStore], object]
) -> None:
    with pytest.raises(R1ChatError, match="no conversation 999"):
        call(store)
    assert store.list_conversations() == []


# --- titles -----------------------------------------------------------------------------------


def test_title_from_question() -> None:
    assert title_from("\n  What is   2+2?  \nand more") == "What is 2+2?"
    long = title_from("word " * 40)
    assert long.endswith("…") and len(long) <= 61 and not long[:-1].endswith(" ")
    assert len(title_from("x" * 500)) == 61
    assert title_from("  \n ") == "Untitled"


# --- concurrency ------------------------------------------------------------------------------


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from r1chat.history import HistoryStore
    path, go, tag, n = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    while not go.exists():
        time.sleep(0.001)
    s = HistoryStore.open(path)  # both create, switch to WAL and migrate the new file at once
    for i in range(n):
        cid = s.new_conversation(f"{tag}{i}", "m")
        s.add_user_message(cid, f"{tag} question {i}")
        s.add_assistant_message(cid, f"{tag} answer {i}", "thinking " * 20, {"i": i}, "stop")
    s.close()
""")


def test_two_processes_writing_at_once_both_succeed(db_path: Path, tmp_path: Path) -> None:
    n = 150
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), str(go), tag, str(n)],
            stderr=subprocess.PIPE,
        )
        for tag in ("a", "b")
    ]
    time.sleep(1.0)  # both processes are waiting at the start line
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with HistoryStore.open(db_path) as s:
        convs = s.list_conversations()
        assert len(convs) == 2 * n
        assert sum(c.messages for c in convs) == 4 * n
        assert len(s.search("a", limit=1000)) + len(s.search("b", limit=1000)) == 4 * n
    with raw(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


OPENER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from r1chat.history import HistoryStore
    go, paths = Path(sys.argv[1]), sys.argv[2:]
    while not go.exists():
        time.sleep(0.001)
    for p in paths:
        with HistoryStore.open(Path(p)) as s:
            s.new_conversation("t", "m")
""")


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    files = [str(tmp_path / f"h{i}.sqlite3") for i in range(60)]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(go), *files], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    time.sleep(1.0)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    for f in files:
        with HistoryStore.open(Path(f)) as s:
            assert len(s.list_conversations()) == 3


# --- a file written by the previous release (schema 1) ---------------------------------------

V1_FILE = Path(__file__).parent / "data" / "history-v1.sqlite3"


def test_a_release_1_file_migrates_and_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    shutil.copyfile(V1_FILE, db)
    with raw(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        before = con.execute("SELECT id, role, content, thinking FROM messages").fetchall()
    with HistoryStore.open(db) as s:
        assert s.schema_version == history.SCHEMA_VERSION
        after = [
            (m.id, m.role, m.content, m.thinking)
            for c in s.list_conversations()
            for m in s.messages(c.id, all_branches=True)
        ]
        assert sorted(after) == sorted(before)
        sums, cafe, two, unanswered = 1, 2, 3, 4
        assert s.turns(sums) == [("What is 2+2?", "It is \\boxed{4}."), ("And 3+3?", "")]
        assert s.messages(sums)[-1].stopped
        assert s.turns(cafe) == [("Où est le café? 東京", "Ici.")]
        # Two `ask -c` at once wrote Q Q A A: each answer goes to its own question.
        assert s.turns(two) == [
            ("first", "first answer"),
            ("second (process A)", "answer to A"),
            ("third (process B)", "answer to B"),
        ]
        assert [(q.content, r) for q, r in s.exchanges(unanswered)] == [
            ("a question whose reply never came", None)
        ]
        # And it goes on as a tree: the next question follows the conversation's last message.
        q = s.add_user_message(sums, "And 4+4?")
        s.add_assistant_message(sums, "8", parent_id=q)
        assert s.turns(sums)[-1] == ("And 4+4?", "8")


def test_a_reply_to_an_earlier_question_leaves_the_newer_question_shown(
    store: HistoryStore,
) -> None:
    cid = store.new_conversation("t")
    q1 = store.add_user_message(cid, "one")
    q2 = store.add_user_message(cid, "two")  # asked before "one" was answered
    store.add_assistant_message(cid, "A1", parent_id=q1)
    store.add_assistant_message(cid, "A2", parent_id=q2)
    assert store.turns(cid) == [("one", "A1"), ("two", "A2")]
    assert [m.content for m in store.shown(cid)] == ["one", "A1", "two", "A2"]


def test_an_alternative_reply_becomes_the_one_shown(store: HistoryStore) -> None:
    cid = store.new_conversation("t")
    q = store.add_user_message(cid, "q")
    first = store.add_assistant_message(cid, "first", parent_id=q)
    store.add_assistant_message(cid, "second", parent_id=q, activate=True)
    assert store.turns(cid) == [("q", "second")]
    store.set_leaf(cid, first)
    assert store.turns(cid) == [("q", "first")]
    assert len(store.messages(cid, all_branches=True)) == 3


def test_search_finds_text_on_any_branch_and_opens_that_branch(tmp_path: Path) -> None:
    from r1chat.history import question_versions

    store = HistoryStore.open(tmp_path / "h.sqlite3")
    cid = store.new_conversation("t", "m")
    q1 = store.add_user_message(cid, "first about walruses")
    r1 = store.add_assistant_message(cid, "walrus facts", parent_id=q1)
    store.add_user_message(cid, "and penguins?")
    q1b = store.add_user_message(cid, "first about otters", parent_id=None)  # an edited first
    store.add_assistant_message(cid, "otter facts", parent_id=q1b)
    assert [m.content for m in store.shown(cid)] == ["first about otters", "otter facts"]
    index, leaves = question_versions(store.messages(cid, all_branches=True), store.shown(cid))
    assert index == 1 and len(leaves) == 2
    hit = store.search("penguins")[0]
    assert store.show_branch_of(cid, hit.message_id) is True
    assert [m.content for m in store.shown(cid)] == [
        "first about walruses", "walrus facts", "and penguins?",
    ]  # fmt: skip
    assert store.show_branch_of(cid, r1) is False  # already shown
    store.close()


# --- a hand-made file: parents in a loop, text UTF-8 cannot hold ------------------------------


def ends(call: Callable[[], object], seconds: float = 10) -> object:
    """What `call` returned or raised, failing the test when it runs on: a walk that follows
    parents round a loop never ends (the thread is a daemon, left behind only on failure)."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as e:  # the test judges it
            out.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still running after {seconds} s: a walk round a loop")
    return out[0]


def looped(db_path: Path, store: HistoryStore) -> int:
    """q1 a1 q2 a2 (ids 1-4), then q2's parent set to a2: 3 -> 4 -> 3."""
    cid = chat(store, "t", ("q1", "", "a1"), ("q2", "", "a2"))
    with contextlib.closing(raw(db_path)) as con, con:
        con.execute("UPDATE messages SET parent_id = 4 WHERE id = 3")
    return cid


LOOP_ERROR = "the history file is damaged: conversation 1's messages form a loop (message 3)"


@pytest.mark.parametrize(
    "read",
    [
        lambda s, c: s.turns(c),
        lambda s, c: s.exchanges(c),
        lambda s, c: s.shown(c),
        lambda s, c: s.messages(c),
        lambda s, c: s.versions_shown(c),
        lambda s, c: s.question_versions(c),
        lambda s, c: s.show_branch_of(c, 1),
    ],
    ids=["turns", "exchanges", "shown", "messages", "versions", "question_versions", "show"],
)
def test_parents_in_a_loop_are_a_one_line_error(
    db_path: Path, store: HistoryStore, read: Callable[[HistoryStore, int], object]
) -> None:
    cid = looped(db_path, store)
    error = ends(lambda: read(store, cid))
    assert isinstance(error, R1ChatError) and str(error) == LOOP_ERROR
    # Every message can still be read, loop or not (to export it, to mend the file).
    assert len(store.messages(cid, all_branches=True)) == 4


def test_a_loop_off_the_branch_shown_is_found_when_its_branch_is_opened(
    db_path: Path, store: HistoryStore
) -> None:
    cid = chat(store, "t", ("q1", "", "a1"), ("q2", "", "a2"))
    q2b = store.add_user_message(cid, "q2, edited", parent_id=2)  # a fork: 5, then its reply 6
    store.add_assistant_message(cid, "a2b", parent_id=q2b)
    with contextlib.closing(raw(db_path)) as con, con:
        con.execute("UPDATE messages SET parent_id = 4 WHERE id = 3")
    assert store.turns(cid) == [("q1", "a1"), ("q2, edited", "a2b")]  # the branch shown is whole
    error = ends(lambda: store.show_branch_of(cid, 3))  # a search hit in the loop
    assert isinstance(error, R1ChatError) and str(error) == LOOP_ERROR


def test_a_fork_looped_back_on_itself_cannot_hang_switching_versions(
    db_path: Path, store: HistoryStore
) -> None:
    # Alt+Up asks for the edited question's versions, which walks each version's subtree: with
    # the first reply's parent set to the newest message, that walk went round for ever.
    cid = chat(store, "t", ("q1", "", "a1"), ("q2", "", "a2"))
    q2b = store.add_user_message(cid, "q2, edited", parent_id=2)
    store.add_assistant_message(cid, "a2b", parent_id=q2b)
    with contextlib.closing(raw(db_path)) as con, con:
        con.execute("UPDATE messages SET parent_id = 6 WHERE id = 2")
    error = ends(lambda: store.question_versions(cid))
    assert isinstance(error, R1ChatError)
    assert str(error) == LOOP_ERROR.replace("message 3", "message 2")


def test_a_message_that_is_its_own_parent_is_a_loop(db_path: Path, store: HistoryStore) -> None:
    cid = chat(store, "t", ("q1", "", "a1"))
    with contextlib.closing(raw(db_path)) as con, con:
        con.execute("UPDATE messages SET parent_id = 2 WHERE id = 2")
    error = ends(lambda: store.turns(cid))
    assert isinstance(error, R1ChatError)
    assert str(error) == LOOP_ERROR.replace("message 3", "message 2")


LONE = ["\ud83d", "a\udc00b"]  # what UTF-8, and so SQLite, cannot encode
MENDED = ["\ufffd", "a\ufffdb"]


@pytest.mark.parametrize(("text", "stored"), list(zip(LONE, MENDED, strict=True)))
def test_lone_surrogates_are_saved_as_replacement_characters(
    db_path: Path, store: HistoryStore, text: str, stored: str
) -> None:
    cid = store.new_conversation(f"title {text}", f"model {text}")
    q = store.add_user_message(cid, f"q {text}", attachments=[{"name": text, "size": 1}])
    store.add_assistant_message(
        cid, f"answer {text}", f"thinking {text}", {"note": text, text: 1}, parent_id=q
    )
    with HistoryStore.open(db_path) as other:  # read back from the file, not from memory
        conv = other.get_conversation(cid)
        [question, reply] = other.messages(cid)
    assert (conv.title, conv.model) == (f"title {stored}", f"model {stored}")
    assert question.content == f"q {stored}"
    assert question.attachments == [{"name": stored, "size": 1}]
    assert (reply.content, reply.thinking) == (f"answer {stored}", f"thinking {stored}")
    assert reply.stats == {"note": stored, stored: 1}
    store.rename(cid, f"renamed {text}")
    assert store.get_conversation(cid).title == f"renamed {stored}"
    assert [h.message_id for h in store.search(f"answer {text}")] == [reply.id]
    assert store.list_conversations(model=f"model {text}")[0].id == cid


def test_a_surrogate_pair_held_as_two_code_points_is_saved_as_its_character(
    store: HistoryStore,
) -> None:
    cid = store.new_conversation("t")
    store.add_user_message(cid, "smile \ud83d\ude00")
    assert store.messages(cid)[0].content == "smile \U0001f600"
