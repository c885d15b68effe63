"""`r1chat bench` on a real (tiny) GGUF: the figures it reports and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import run_cli

from r1chat.bench import build_prompt, question_of_length
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.prompts import ChatMessage

FIGURES = ("load_s", "ttft_s", "prefill_tok_s", "decode_tok_s", "peak_rss_mb")


def _registered() -> bool:
    from r1chat.cli import app

    return any(c.name == "bench" for c in app.registered_commands)


def bench_cli(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`r1chat bench ARGS` in a subprocess; the command alone until cli.py registers it."""
    if _registered():
        return run_cli("bench", *args, home=home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("R1CHAT_")}
    env.update({"R1CHAT_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"})
    code = "import typer; from r1chat.commands.bench import bench; typer.run(bench)"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, env=env, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def engine(noise_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(noise_model, LoadOptions(n_ctx=512))
    yield eng
    eng.close()


def test_json_reports_every_figure(noise_model: Path, r1home: Path) -> None:
    proc = bench_cli(
        r1home, "--model", str(noise_model), "--tokens", "24", "--prompt-tokens", "64", "--json"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    for key in FIGURES:
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["backend"] == "CPU"
    assert out["tokens"] == 24
    assert out["prompt_tokens"] == 64
    assert out["n_ctx"] >= 64 + 24
    assert out["n_gpu_layers"] == 0
    assert out["model"] == "tiny-r1-noise"


def test_table_is_printed_without_json(noise_model: Path, r1home: Path) -> None:
    proc = bench_cli(r1home, "--model", str(noise_model), "--tokens", "8", "--prompt-tokens", "32")
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "time to first token" in text
    assert "tok/s" in text
    assert "tiny-r1-noise" in text


def test_missing_model_is_a_one_line_error(r1home: Path, tmp_path: Path) -> None:
    proc = bench_cli(r1home, "--model", str(tmp_path / "nope.gguf"), "--json")
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert err.startswith("r1chat: error:") and "nope.gguf" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert proc.stdout == b""


def test_a_file_that_is_not_gguf_is_a_one_line_error(r1home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all" * 100)
    proc = bench_cli(r1home, "--model", str(junk))
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert err.startswith("r1chat: error:") and err.count("\n") == 1


def test_a_context_too_small_for_the_run_is_refused(noise_model: Path, r1home: Path) -> None:
    proc = bench_cli(
        r1home,
        "--model",
        str(noise_model),
        "--ctx",
        "64",
        "--tokens",
        "100",
        "--prompt-tokens",
        "64",
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert "--ctx" in err and err.count("\n") == 1


def test_prompt_has_the_exact_length_inside_the_chat_template(engine: LlamaEngine) -> None:
    prompt = build_prompt(engine, 100)
    assert len(prompt) == 100
    assert prompt[0] == engine.bos_id and prompt[1] != engine.bos_id
    # It ends as a real chat prompt does, with the model about to think.
    template_end = engine.prompt_tokens([ChatMessage("user", "hi")])[-3:]
    assert prompt[-3:] == template_end


def test_question_fills_the_prompt_to_about_the_length(engine: LlamaEngine) -> None:
    question = question_of_length(engine, 200)
    n = engine.count_tokens([ChatMessage("user", question)])
    assert 190 <= n <= 200
