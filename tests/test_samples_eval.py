"""`ask --samples` and `r1chat eval` through the real commands on real llama.cpp: the scripted
model answers the same every time, so the vote and the grades are known exactly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_support import run_cli, user_env
from tiny_models import SCRIPT_ANSWER

from r1chat.history import HistoryStore


def test_ask_samples_votes_and_keeps_every_sample(scripted_model: Path, r1home: Path) -> None:
    out = run_cli(
        "ask", "--json", "-m", str(scripted_model), "--max-tokens", "64", "-k", "3", "2+2?",
        home=r1home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    data = json.loads(out.stdout)
    assert data["vote"] == {"answer": "4", "count": 3, "of": 3, "timed_out": 0}
    assert data["answer"] == SCRIPT_ANSWER and len(data["samples"]) == 3
    assert all(s["boxed"] == "4" and s["finish_reason"] == "stop" for s in data["samples"])
    assert data["stats"]["prompt_evals"] == 1
    plain = run_cli(
        "ask", "-m", str(scripted_model), "--max-tokens", "64", "-k", "2", "again?", home=r1home
    )
    assert plain.returncode == 0 and plain.stdout.decode().strip() == SCRIPT_ANSWER
    with HistoryStore.open(r1home / "history.sqlite3") as store:
        every = store.messages(1, all_branches=True)
        assert [m.role for m in every] == ["user"] + ["assistant"] * 3
        assert len(store.shown(1)) == 2  # the question and the chosen reply


PROBLEMS = [
    {"problem": "What is 2+2?", "answer": "4", "unique_id": "p1"},
    {"problem": "Twice two?", "answer": "4.0", "unique_id": "p2"},
    {"problem": "Half of eight?", "answer": "\\frac{8}{2}", "unique_id": "p3"},
    {"question": "Three plus three?", "answer": "6", "unique_id": "p4"},
]


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_grades_equivalent_forms_and_goes_on_from_its_results(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    data = write(tmp_path / "set.jsonl", PROBLEMS)
    results = tmp_path / "out.jsonl"
    args = ("eval", str(data), "-m", str(scripted_model), "--max-tokens", "64", "-k", "2")
    first = run_cli(*args, "--limit", "2", "--out", str(results), "--json", home=r1home)
    assert first.returncode == 0, first.stderr.decode()
    assert json.loads(first.stdout)["pass@1"] == 1.0
    assert len(results.read_text().splitlines()) == 2
    again = run_cli(*args, "--out", str(results), "--json", home=r1home)
    report = json.loads(again.stdout)
    assert report["problems"] == 4 and report["maj@2"] == 0.75 and report["pass@1"] == 0.75
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p1", "p2", "p3", "p4"]  # the first two not redone
    assert [r["vote_correct"] for r in rows] == [True, True, True, False]


def test_eval_bad_files_are_one_line(r1home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x", "answer": "1"}\nnot json\n')
    out = run_cli("eval", str(bad), home=r1home)
    assert out.returncode == 2 and out.stderr.decode().strip().endswith(
        "bad.jsonl:2: not a JSON object"
    )
    out = run_cli("eval", str(tmp_path / "none.jsonl"), home=r1home)
    assert out.returncode == 2 and "no such file" in out.stderr.decode()


def test_ctrl_c_in_an_eval_keeps_what_is_done(
    noise_model: Path, r1home: Path, tmp_path: Path
) -> None:
    rows = [{"problem": f"q{i}", "answer": "1", "unique_id": f"n{i}"} for i in range(50)]
    data = write(tmp_path / "set.jsonl", rows)
    results = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1chat", "eval", str(data), "-m", str(noise_model),
         "--max-tokens", "8", "--out", str(results), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=user_env(r1home),
    )  # fmt: skip
    end = time.monotonic() + 120
    while not results.exists() or len(results.read_text().splitlines()) < 2:
        assert proc.poll() is None and time.monotonic() < end, "no problem finished"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    report = json.loads(out)
    assert report["stopped"] is True and 2 <= report["problems"] < 50
    assert len(results.read_text().splitlines()) == report["problems"]
    assert b"Traceback" not in err


def test_bench_samples_reports_the_aggregate(noise_model: Path, r1home: Path) -> None:
    out = run_cli(
        "bench", "-m", str(noise_model), "--samples", "3", "--tokens", "16",
        "--prompt-tokens", "32", "--json", home=r1home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    result = json.loads(out.stdout)
    assert result["samples"] == 3 and result["prompt_evals"] == 1
    assert result["tokens"] == 48 and result["decode_tok_s"] > 0
