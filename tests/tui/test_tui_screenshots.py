"""The README's pictures show the app as it is: each committed one's footer (the keys it shows)
is the footer the app draws today in the same scene. Rebuild them with scripts/screenshot.py."""

from __future__ import annotations

import asyncio
import html
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import screenshot  # noqa: E402

_TEXT = re.compile(r'<text[^>]* y="([\d.]+)"[^>]*>([^<]*)</text>')


def footer(svg: str) -> str:
    """The bottom row of a Textual screenshot, as text."""
    rows: dict[float, list[str]] = {}
    for y, text in _TEXT.findall(svg):
        rows.setdefault(float(y), []).append(html.unescape(text))
    bottom = rows[max(rows)]
    return " ".join("".join(bottom).split())


@pytest.mark.parametrize("scene", ["hero", "budget", "samples"])
def test_a_committed_picture_shows_the_keys_the_app_shows(scene: str, tmp_path: Path) -> None:
    committed = (ROOT / "assets" / screenshot.SCENES[scene]).read_text(encoding="utf-8")
    now = tmp_path / "now.svg"
    asyncio.run(screenshot.shoot(scene, now))
    assert footer(committed) == footer(now.read_text(encoding="utf-8")), (
        f"assets/{screenshot.SCENES[scene]} is out of date: scripts/screenshot.py {scene}"
    )
    assert "^p" in footer(committed)  # the parse found the footer


def test_the_live_session_picture_too(smollm2_model: Path, tmp_path: Path) -> None:
    committed = (ROOT / "assets" / "live-session.svg").read_text(encoding="utf-8")
    now = tmp_path / "now.svg"
    asyncio.run(screenshot.shoot("live", now, str(smollm2_model), "Hello!"))
    assert footer(committed) == footer(now.read_text(encoding="utf-8"))
