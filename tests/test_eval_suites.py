"""`r1chat eval math-500` and `eval aime-2024`: the card's benchmarks fetched from the hub at their
pinned commits (the loopback hub of tests/fake_hub.py, through HF_ENDPOINT), solved by the
scripted model (it boxes 4 whatever it is asked), then read offline from the cache; the report
sets the card's figure beside the run's, with its interval."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_support import run_cli
from fake_hub import FakeHub

from r1chat.errors import R1ChatError
from r1chat.evaluate import wilson
from r1chat.suites import SUITES, Suite, grade_integer, load_suite

MATH = SUITES["math-500"]
AIME = SUITES["aime-2024"]

# MATH-500's fields; the scripted model's \boxed{4} is right for all but the second.
MATH_ROWS = [
    {
        "problem": f"What is {i} + {4 - i}?",
        "solution": "Add them: $\\boxed{4}$.",
        "answer": "5" if i == 1 else ("\\frac{8}{2}" if i == 2 else "4"),
        "subject": "Algebra",
        "level": 1,
        "unique_id": f"test/algebra/{i}.json",
    }
    for i in range(6)
]

# AI-MO's columns: AIME 2022-2024 side by side, the contest named by the AoPS url; answers as
# strings, zero-padded in some copies.
AOPS = "https://artofproblemsolving.com/wiki/index.php/{}_AIME_{}_Problems/Problem_{}"
AIME_ROWS = [
    {"id": 0, "answer": "4", "url": AOPS.format(2023, "I", 1)},
    {"id": 60, "answer": "004", "url": AOPS.format(2024, "I", 1)},
    {"id": 61, "answer": "40", "url": AOPS.format(2024, "I", 2)},
    {"id": 75, "answer": "4", "url": AOPS.format(2024, "II", 1)},
]


def parquet(rows: list[dict[str, object]]) -> bytes:
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "problem": [f"Problem {r['id']}: find the number." for r in rows],
            "solution": ["It is $\\boxed{4}$." for _ in rows],
            "answer": [r["answer"] for r in rows],
            "url": [r["url"] for r in rows],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def serve(hub: FakeHub, suite: Suite, data: bytes) -> None:
    """The suite's file on the hub at its pinned commit, and at no other revision."""
    hub.files[f"datasets/{suite.repo}/{suite.filename}"] = data
    hub.commits[f"datasets/{suite.repo}/{suite.filename}"] = suite.revision


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    h = FakeHub()
    serve(h, MATH, "".join(json.dumps(r) + "\n" for r in MATH_ROWS).encode())
    serve(h, AIME, parquet(AIME_ROWS))
    yield h
    h.close()


def closed_port() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def online(endpoint: str) -> dict[str, str]:
    return {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}


def evaluate(
    home: Path, endpoint: str, *args: str, offline: bool = False
) -> subprocess.CompletedProcess[bytes]:
    env = online(endpoint)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return run_cli("eval", *args, home=home, env=env)


# --- the suites, without a model -----------------------------------------------------------------


def test_suites_are_pinned_with_the_card_s_figures() -> None:
    for s in SUITES.values():
        assert len(s.revision) == 40 and all(c in "0123456789abcdef" for c in s.revision)
    assert (MATH.repo, MATH.filename, MATH.card_pass1) == (
        "HuggingFaceH4/MATH-500",
        "test.jsonl",
        0.928,
    )
    assert MATH.revision == "ff5b20257d8185524591543f8ff5993951537bb8"
    assert AIME.card_pass1 == 0.555 and AIME.integer_answers


def test_wilson_interval_stays_honest_at_the_edges() -> None:
    assert wilson(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson(1.0, 5) == pytest.approx((0.5655, 1.0), abs=1e-4)  # not [1, 1]
    assert wilson(0.0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    low, high = wilson(0.928, 500)
    assert low < 0.928 < high and high - low < 0.05


def test_aime_answers_are_compared_as_integers() -> None:
    assert (
        grade_integer("025", "25") and grade_integer("25", "25") and grade_integer(" $25$ ", "25")
    )
    assert grade_integer("\\text{25}", "25")  # not a bare integer: math-verify reads it
    assert not grade_integer("250", "25") and not grade_integer(None, "25")
    assert not grade_integer("2.5", "25") and not grade_integer("-25", "25")
    # Past int()'s 4,300 digits: still compared, not a ValueError.
    assert grade_integer("0" * 6000 + "25", "25") and not grade_integer("9" * 6000, "25")


def test_aime_2024_is_read_from_the_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(parquet(AIME_ROWS))
    problems = load_suite(AIME, path)
    assert [p.id for p in problems] == ["60", "61", "75"]  # the 2023 row left out
    assert [p.answer for p in problems] == ["4", "40", "4"]  # "004" read as the integer 4
    path.write_bytes(parquet([{**AIME_ROWS[1], "answer": "4/3"}]))
    with pytest.raises(R1ChatError, match=r"train.parquet:1: AIME answer '4/3' is not an integer"):
        load_suite(AIME, path)
    path.write_bytes(b"not parquet")
    with pytest.raises(R1ChatError, match=r"cannot read .* as AIME's parquet file"):
        load_suite(AIME, path)


# --- fetching: one line when it cannot be had ----------------------------------------------------


def one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("r1chat: error: ")
    return err


def test_without_network_or_offline_a_suite_not_fetched_is_one_line(
    hub: FakeHub, r1home: Path
) -> None:
    # Before any model loads: the model named here does not exist.
    args = ("math-500", "-m", "none.gguf")
    err = one_line_error(evaluate(r1home, closed_port(), *args))
    assert "cannot reach the Hugging Face hub to download MATH-500" in err
    assert "or pass a local JSONL file" in err
    err = one_line_error(evaluate(r1home, hub.url, *args, offline=True))
    assert "MATH-500 (HuggingFaceH4/MATH-500@ff5b20257d81:test.jsonl) is not downloaded" in err
    assert "HF_HUB_OFFLINE" in err
    hub.commits[f"datasets/{MATH.repo}/{MATH.filename}"] = "f" * 40  # the pin lost on the hub
    err = one_line_error(evaluate(r1home, hub.url, *args))
    assert "has no revision 'ff5b20257d8185524591543f8ff5993951537bb8'" in err
    assert hub.requests and not list(r1home.rglob("test.jsonl"))


# --- whole runs ---------------------------------------------------------------------------------


def test_math_500_on_a_fresh_clone_then_offline_from_the_cache(
    hub: FakeHub, scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    model = ("-m", str(scripted_model), "--max-tokens", "64")
    proc = evaluate(r1home, hub.url, "math-500", "--limit", "5", *model)
    assert proc.returncode == 0, proc.stderr.decode()
    # Fetched at the pinned commit, into the hub cache under R1CHAT_HOME.
    assert {path for _, path, _ in hub.requests} == {
        f"/datasets/{MATH.repo}/resolve/{MATH.revision}/{MATH.filename}"
    }
    [cached] = r1home.rglob("test.jsonl")
    assert f"datasets--HuggingFaceH4--MATH-500/snapshots/{MATH.revision}" in cached.as_posix()
    # Piped: no progress bar, the summary on stdout, the card's figure beside the interval.
    assert proc.stderr == b""
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "problems        5 of 6 (math-500)"
    assert lines[1] == "pass@1          80.0%  (95% interval 37.6% to 96.4%; 1 sample each)"
    assert (
        lines[2] == "card            92.8%  DeepSeek-R1-Distill-Qwen-7B: within this run's interval"
    )
    assert lines[3] == "not the card's  --max-tokens 64 (card 32,768), -k 1 (card 64)"

    # Offline, the hub gone: from the cache; --out goes on where a stopped run ended.
    asked = len(hub.requests)
    out = tmp_path / "out.jsonl"
    gone = closed_port()
    resume = ("math-500", "--out", str(out), *model, "--json")
    first = evaluate(r1home, gone, *resume, "--limit", "3", offline=True)
    assert first.returncode == 0, first.stderr.decode()
    kept = out.read_bytes()
    again = evaluate(r1home, gone, *resume, offline=True)
    assert again.returncode == 0, again.stderr.decode()
    report = json.loads(again.stdout)
    assert len(hub.requests) == asked
    assert out.read_bytes().startswith(kept) and len(out.read_bytes().splitlines()) == 6
    assert report["problems"] == 6 and report["pass@1"] == pytest.approx(5 / 6)
    assert report["suite"] == "math-500" and report["suite_problems"] == 6
    assert report["card_pass@1"] == 0.928 and report["vs_card"] == "level"
    low, high = report["pass@1_ci95"]
    assert low < 5 / 6 < high


def test_aime_2024_grades_zero_padded_answers_as_integers(
    hub: FakeHub, scripted_model: Path, r1home: Path
) -> None:
    proc = evaluate(
        r1home, hub.url, "aime-2024", "-m", str(scripted_model), "--max-tokens", "64",
        "-k", "2", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["problems"] == 3 and report["suite_problems"] == 3
    assert report["pass@1"] == pytest.approx(2 / 3) and report["maj@2"] == pytest.approx(2 / 3)
    assert report["card_pass@1"] == 0.555 and report["unlike_card"]["samples"] == [2, 64]
    assert [p for _, p, _ in hub.requests][-1] == (
        f"/datasets/{AIME.repo}/resolve/{AIME.revision}/{AIME.filename}"
    )
