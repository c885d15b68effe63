"""Every TUI test keeps its history under a temporary R1CHAT_HOME, never the user's own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "r1home"
    monkeypatch.setenv("R1CHAT_HOME", str(home))
    return home
