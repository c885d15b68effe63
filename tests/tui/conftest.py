"""Every TUI test keeps its history under a temporary R1CHAT_HOME, never the user's own; tests
that drive a real terminal ask for `tmux` (which marks them, see tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "r1home"
    monkeypatch.setenv("R1CHAT_HOME", str(home))
    return home


@pytest.fixture
def tmux() -> str:
    """The tmux binary; the test is skipped where there is none."""
    from terminal import TMUX

    if not Path(TMUX).exists():
        pytest.skip("tmux is not installed")
    return TMUX
