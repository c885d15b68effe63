"""The set-up scripts: nothing on stdout but what the command prints (`./scripts/chat ask --json
… | jq` works on a fresh clone), each step one line on stderr, its output in a log file whose
path is printed when it fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bash(script: str, log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"source scripts/bootstrap.sh; {script}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "HOME": str(Path.home()),
            "R1CHAT_SETUP_LOG": str(log),
        },
        check=False,
    )


def test_a_step_writes_nothing_to_stdout_and_its_output_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "setup.log"
    done = bash('step "a quiet step" sh -c "echo to-stdout; echo to-stderr >&2"', log)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "a quiet step: done in 0m 0" in done.stderr
    assert "to-stdout" in log.read_text() and "to-stderr" in log.read_text()
    assert "to-stdout" not in done.stderr


def test_a_failing_step_says_where_its_log_is_and_keeps_its_status(tmp_path: Path) -> None:
    log = tmp_path / "setup.log"
    failed = bash('step "a failing step" sh -c "echo the reason; exit 3"', log)
    assert failed.returncode == 3 and failed.stdout == ""
    assert "a failing step failed after" in failed.stderr
    assert "the reason" in failed.stderr and f"the whole log: {log}" in failed.stderr


def test_chat_with_the_set_up_done_prints_only_what_r1chat_prints(tmp_path: Path) -> None:
    done = subprocess.run(
        ["./scripts/chat", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "R1CHAT_HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("r1chat ") and done.stdout.count("\n") == 1
