"""`r1chat eval --out` on a rerun, and the benchmark files it reads: a line cut by a kill, ids
that repeat, another benchmark or other settings in the same file, a problem longer than the
context, and files that are odd (a BOM, deep nesting, lone surrogates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import run_cli
from test_samples_eval import PROBLEMS, write

from r1chat.errors import R1ChatError
from r1chat.evaluate import load_problems


def evaluate(model: Path, home: Path, data: Path, out: Path, *more: str) -> dict[str, object]:
    proc = run_cli(
        "eval", str(data), "-m", str(model), "--max-tokens", "64", "-k", "2",
        "--out", str(out), "--json", *more, home=home,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    report: dict[str, object] = json.loads(proc.stdout)
    return report


def rows(out: Path) -> list[dict[str, object]]:
    """Every line of --out as JSON: a line that is not whole JSON fails the test here."""
    return [json.loads(line) for line in out.read_bytes().split(b"\n") if line]


def test_a_last_line_cut_by_a_kill_is_done_again_and_nothing_glued(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    data = write(tmp_path / "set.jsonl", PROBLEMS)
    out = tmp_path / "out.jsonl"
    evaluate(scripted_model, r1home, data, out, "--limit", "2")
    whole = out.read_bytes()
    # Killed mid-write of the third result, inside a two-byte UTF-8 character.
    out.write_bytes(whole + '{"index": 2, "id": "p3", "answer": "\u00e9'.encode()[:-1])
    report = evaluate(scripted_model, r1home, data, out)
    assert report["problems"] == 4 and report["pass@1"] == 0.75
    assert out.read_bytes().startswith(whole)  # the finished lines as they were
    assert [r["id"] for r in rows(out)] == ["p1", "p2", "p3", "p4"]


def test_a_whole_last_line_without_its_newline_is_kept(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    data = write(tmp_path / "set.jsonl", PROBLEMS)
    out = tmp_path / "out.jsonl"
    evaluate(scripted_model, r1home, data, out, "--limit", "2")
    out.write_bytes(out.read_bytes().rstrip(b"\n"))  # killed between the "}" and the "\n"
    report = evaluate(scripted_model, r1home, data, out)
    assert report["problems"] == 4 and report["pass@1"] == 0.75
    assert [r["id"] for r in rows(out)] == ["p1", "p2", "p3", "p4"]  # p2 not done again


def test_repeated_ids_keep_each_problem_s_own_result(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    data = write(tmp_path / "set.jsonl", [{**p, "unique_id": "same"} for p in PROBLEMS])
    out = tmp_path / "out.jsonl"
    first = evaluate(scripted_model, r1home, data, out)
    assert first["pass@1"] == 0.75
    written = out.read_bytes()
    again = evaluate(scripted_model, r1home, data, out)
    assert again["pass@1"] == 0.75 and again["maj@2"] == 0.75
    assert out.read_bytes() == written  # nothing solved again


def test_true_duplicates_are_each_solved_once(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    data = write(tmp_path / "set.jsonl", [PROBLEMS[0], PROBLEMS[0], PROBLEMS[3]])
    out = tmp_path / "out.jsonl"
    evaluate(scripted_model, r1home, data, out, "--limit", "1")
    report = evaluate(scripted_model, r1home, data, out)
    assert report["problems"] == 3 and report["pass@1"] == pytest.approx(2 / 3)
    assert len(rows(out)) == 3 and len({r["key"] for r in rows(out)}) == 3


def test_another_benchmark_in_the_same_out_is_not_counted(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    # No ids: both files' problems are "0" and "1".
    right = write(tmp_path / "a.jsonl", [{"problem": "2+2?", "answer": "4"}] * 2)
    wrong = write(
        tmp_path / "b.jsonl",
        [{"problem": "3+3?", "answer": "6"}, {"problem": "5+5?", "answer": "10"}],
    )
    out = tmp_path / "out.jsonl"
    assert evaluate(scripted_model, r1home, right, out)["pass@1"] == 1.0
    report = evaluate(scripted_model, r1home, wrong, out)
    assert report["problems"] == 2 and report["pass@1"] == 0.0
    assert len(rows(out)) == 4
    assert evaluate(scripted_model, r1home, right, out)["pass@1"] == 1.0  # still there


def test_other_settings_for_the_same_out_are_refused_in_one_line(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    data = write(tmp_path / "set.jsonl", PROBLEMS)
    out = tmp_path / "out.jsonl"
    evaluate(scripted_model, r1home, data, out, "--limit", "1")
    written = out.read_bytes()
    proc = run_cli(
        "eval", str(data), "-m", str(scripted_model), "--max-tokens", "80", "-k", "3",
        "--out", str(out), home=r1home,
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert "-k 2 there, 3 here" in err and "--max-tokens 64 there, 80 here" in err
    assert "use another --out" in err and "Traceback" not in err
    assert out.read_bytes() == written


@pytest.mark.parametrize(
    "text",
    [
        # An older r1chat's results: no settings with them.
        '{"index": 0, "id": "p1", "answer": "4", "boxed": ["4"], "correct": [true]}\n',
        # The benchmark itself given as --out by mistake: it must not be appended to.
        json.dumps(PROBLEMS[0]) + "\n",
        "not json at all\n" + json.dumps(PROBLEMS[0]) + "\n",
    ],
)
def test_an_out_file_that_is_not_this_eval_s_is_left_alone(
    r1home: Path, tmp_path: Path, text: str
) -> None:
    data = write(tmp_path / "set.jsonl", PROBLEMS)
    out = tmp_path / "out.jsonl"
    out.write_text(text)
    proc = run_cli(
        "eval", str(data), "-m", str(tmp_path / "none.gguf"), "-o", str(out), home=r1home
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "use another --out" in err, err
    assert out.read_text() == text


def test_a_problem_longer_than_the_context_is_skipped_and_counted_wrong(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    long = {"problem": "Add these: " + " + ".join(["2"] * 200), "answer": "400", "unique_id": "L"}
    data = write(tmp_path / "set.jsonl", [PROBLEMS[0], long, *PROBLEMS[1:]])
    out = tmp_path / "out.jsonl"
    report = evaluate(scripted_model, r1home, data, out, "--ctx", "256")
    assert report["problems"] == 5 and report["skipped"] == 1
    assert report["pass@1"] == 0.6 and report["maj@2"] == 0.6  # 3 of 5: the long one is wrong
    [skipped] = [r for r in rows(out) if r["id"] == "L"]
    assert "the one asked for holds 256" in str(skipped["skipped"])
    assert skipped["correct"] == [False, False]
    # A rerun tries it again (the context may be larger now), and keeps one line for it.
    proc = run_cli(
        "eval", str(data), "-m", str(scripted_model), "--max-tokens", "64", "-k", "2",
        "--ctx", "256", "--out", str(out), "--stats", home=r1home,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "skipped         1 longer than the context (counted as wrong" in text
    assert "pass@1          60.0%" in text
    assert "problem L: skipped, counted as wrong: " in proc.stderr.decode()
    assert len(rows(out)) == 5


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(PROBLEMS[0]).encode() + b"\n")
    [p] = load_problems(path)
    assert (p.id, p.question, p.answer) == ("p1", "What is 2+2?", "4")


def test_line_separators_inside_a_problem_do_not_split_its_line(tmp_path: Path) -> None:
    path = tmp_path / "sep.jsonl"
    row = {"problem": "One\u2028two\x1cthree?", "answer": "4"}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\r\n" + json.dumps(PROBLEMS[1]) + "\n")
    first, second = load_problems(path)
    assert first.question == row["problem"] and second.id == "p2"


def test_deep_nesting_is_a_one_line_error_naming_the_line(r1home: Path, tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(PROBLEMS[0]) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(R1ChatError, match=r"deep\.jsonl:2: ") as e:
        load_problems(path)
    assert e.value.exit_code == 2
    proc = run_cli("eval", str(path), home=r1home)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "deep.jsonl:2:" in err, err


def test_lone_surrogates_become_replacement_characters(
    scripted_model: Path, r1home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "sur.jsonl"
    path.write_text(
        '{"problem": "What is 2+2? \\ud800", "answer": "4\\udfff", "unique_id": "x\\ud800"}\n'
        '{"problem": "Pair: \\ud83d\\ude00 2+2?", "answer": "4"}\n'
    )
    first, second = load_problems(path)
    assert (first.question, first.answer, first.id) == (
        "What is 2+2? \ufffd",
        "4\ufffd",
        "x\ufffd",
    )
    assert second.question == "Pair: \U0001f600 2+2?"  # a real pair stays what it is
    out = tmp_path / "out.jsonl"
    evaluate(scripted_model, r1home, path, out, "--stats")
    assert [r["id"] for r in rows(out)] == ["x\ufffd", "1"]
