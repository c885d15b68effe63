"""`ask --retry`: the last reply sampled again on real llama.cpp; the earlier reply stays as an
alternative of that turn, the new one is shown and continued."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import run_cli

from r1chat.history import HistoryStore


def ask(home: Path, model: Path, *args: str, status: int = 3) -> dict[str, object]:
    out = run_cli("ask", "--json", "-m", str(model), "--max-tokens", "6", *args, home=home)
    # Six tokens end the noise model's reply while it thinks: no answer, exit status 3.
    assert out.returncode == status, out.stderr.decode()
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_retry_keeps_the_earlier_reply_as_an_alternative(noise_model: Path, r1home: Path) -> None:
    first = ask(r1home, noise_model, "--seed", "1", "What is 2+2?")
    again = ask(r1home, noise_model, "--seed", "2", "--retry", "-c")
    assert again["question"] == "What is 2+2?"
    assert again["thinking"] != first["thinking"]
    with HistoryStore.open(r1home / "history.sqlite3") as store:
        every = store.messages(1, all_branches=True)
        assert [m.role for m in every] == ["user", "assistant", "assistant"]
        q, r1, r2 = every
        assert r1.parent_id == q.id and r2.parent_id == q.id
        assert [m.id for m in store.shown(1)] == [q.id, r2.id]
    shown = run_cli("history", "show", "1", "--all", home=r1home).stdout.decode()
    assert f"(message {r1.id}, another branch)" in shown
    # The next question follows the reply shown.
    ask(r1home, noise_model, "--seed", "3", "-c", "And 3+3?")
    with HistoryStore.open(r1home / "history.sqlite3") as store:
        assert store.messages(1, all_branches=True)[-1].parent_id is not None
        shown_ids = [m.id for m in store.shown(1)]
        assert shown_ids[:2] == [q.id, r2.id] and len(shown_ids) == 4


def test_retry_needs_a_conversation_and_no_new_question(noise_model: Path, r1home: Path) -> None:
    out = run_cli("ask", "-m", str(noise_model), "--retry", home=r1home)
    assert out.returncode == 2 and "needs the conversation" in out.stderr.decode()
    out = run_cli("ask", "-m", str(noise_model), "--retry", "-c", home=r1home)
    assert out.returncode == 2 and "no conversation to retry" in out.stderr.decode()
    ask(r1home, noise_model, "q")
    out = run_cli("ask", "-m", str(noise_model), "--retry", "-c", "new?", home=r1home)
    assert out.returncode == 2 and "give no new one" in out.stderr.decode()


def test_export_with_or_without_the_thinking(scripted_model: Path, r1home: Path) -> None:
    ask(r1home, scripted_model, "--max-tokens", "64", "2+2?", status=0)
    full = run_cli("history", "export", "1", home=r1home).stdout.decode()
    bare = run_cli("history", "export", "1", "--no-think", home=r1home).stdout.decode()
    assert "Two plus two makes four." in full and "<details>" in full
    assert "Two plus two" not in bare and "<details>" not in bare
    assert "\\boxed{4}" in bare  # the raw LaTeX, as written
    data = json.loads(
        run_cli("history", "export", "1", "-f", "json", "--no-think", home=r1home).stdout
    )
    assert all(m["thinking"] == "" for m in data["messages"])
