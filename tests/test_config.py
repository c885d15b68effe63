"""Config: defaults < file < environment < flags, tables, and errors that name key and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from cli_support import run_cli
from typer.testing import CliRunner

from r1chat.commands.config_cmd import config_app
from r1chat.config import Settings, load_settings, paths
from r1chat.errors import R1ChatError


def write(home: Path, text: str) -> Path:
    path = paths().config_file
    assert path.parent == home
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(r1home: Path) -> None:
    s = load_settings()
    assert s == Settings()
    assert (s.temperature, s.top_p, s.kv_type, s.thinking) == (0.6, 0.95, "f16", "auto")
    assert s.source("temperature") == "default"


def test_file_values_flat_and_in_tables(r1home: Path) -> None:
    write(
        r1home,
        'model = "r1-1.5b"\ntheme = "nord"\n'
        "[sampling]\ntemperature = 0.5\ntop_k = 20\nmax_tokens = 8000\n"
        "[context]\nctx = 16384\n"
        '[gpu]\ngpu_layers = 20\nflash_attn = true\nkv_type = "q8_0"\n'
        '[tui]\nthinking = "folded"\n',
    )
    s = load_settings()
    assert (s.model, s.theme, s.temperature, s.top_k, s.max_tokens) == (
        "r1-1.5b",
        "nord",
        0.5,
        20,
        8000,
    )
    assert (s.ctx, s.gpu_layers, s.flash_attn, s.kv_type, s.thinking) == (
        16384,
        20,
        True,
        "q8_0",
        "folded",
    )
    assert s.source("ctx") == "file" and s.source("top_p") == "default"


def test_precedence_flags_over_env_over_file_over_defaults(
    r1home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(r1home, "temperature = 0.3\ntop_p = 0.8\nctx = 4096\n")
    monkeypatch.setenv("R1CHAT_TOP_P", "0.7")
    monkeypatch.setenv("R1CHAT_CTX", "2048")
    monkeypatch.setenv("R1CHAT_FLASH_ATTN", "off")
    s = load_settings().with_flags(ctx=1024, gpu_layers=None)
    assert (s.temperature, s.top_p, s.ctx, s.flash_attn, s.top_k) == (0.3, 0.7, 1024, False, 40)
    assert [s.source(k) for k in ("temperature", "top_p", "ctx", "flash_attn", "top_k")] == [
        "file",
        "env",
        "flag",
        "env",
        "default",
    ]
    assert s.gpu_layers is None  # an unset flag changes nothing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("temperature = 0.6\ntemprature = 0.7\n", r":2: unknown setting 'temprature'"),
        ('model = "x"\n\n[gpu]\nkv_type = "q5"\n', r":4: kv_type must be one of f16, q8_0, q4_0"),
        ('[sampling]\ntop_k = "many"\n', r":2: top_k must be int"),
        ("[sampling]\ntemperature = 9.0\n", r":2: temperature must be between 0.0 and 5.0"),
        ("ctx = 0\n", r":1: ctx must be at least 64, not 0"),
        ("[gpu]\nflash_attn = 1\n", r":2: flash_attn must be bool"),
        ("top_k = true\n", r":1: top_k must be int, not a boolean"),
        ("[colors]\nx = 1\n", r":1: unknown table \[colors\]"),
        ("[gpu]\ntemperature = 0.5\n", r":2: 'temperature' does not belong in \[gpu\]"),
        ("temperature = 0.5\n[sampling]\ntemperature = 0.6\n", r":3: temperature is set twice"),
        ("temperature = \n", r"invalid config file .*line 1"),
    ],
)
def test_invalid_file_names_key_and_line(r1home: Path, text: str, message: str) -> None:
    path = write(r1home, text)
    with pytest.raises(R1ChatError, match=message) as e:
        load_settings()
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("R1CHAT_TEMPERATURE", "hot", "R1CHAT_TEMPERATURE='hot' is not a valid float"),
        ("R1CHAT_FLASH_ATTN", "maybe", "is not a valid bool"),
        ("R1CHAT_THINKING", "sideways", "thinking must be one of auto, open, folded"),
    ],
)
def test_invalid_environment(
    r1home: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(R1ChatError, match=message):
        load_settings()


def app() -> typer.Typer:
    a = typer.Typer()
    a.add_typer(config_app, name="config")
    return a


def test_config_path_command(r1home: Path) -> None:
    out = CliRunner().invoke(app(), ["config", "path"])
    assert out.exit_code == 0 and out.stdout == f"{r1home / 'config.toml'}\n"


def test_config_show_json_and_text(r1home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(r1home, "[sampling]\ntemperature = 0.4\n")
    monkeypatch.setenv("R1CHAT_MODEL", "r1-1.5b")
    out = CliRunner().invoke(app(), ["config", "show", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["exists"] and data["config_file"] == str(r1home / "config.toml")
    assert data["settings"]["temperature"] == 0.4 and data["sources"]["temperature"] == "file"
    assert data["settings"]["model"] == "r1-1.5b" and data["sources"]["model"] == "env"
    assert data["settings"]["ctx"] is None and data["sources"]["ctx"] == "default"
    text = CliRunner().invoke(app(), ["config", "show"]).stdout
    assert "temperature = 0.4  # file\n" in text and 'model = "r1-1.5b"  # env\n' in text


def test_config_show_with_a_broken_file_is_one_line(r1home: Path) -> None:
    write(r1home, "top_p = 3\n")
    out = CliRunner().invoke(app(), ["config", "show"])
    assert out.exit_code == 2
    assert out.stderr.startswith("r1chat: error: ") and "config.toml:1: top_p" in out.stderr


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        # --think-min at or above --max-tokens: the thinking would take every token, no answer.
        (Settings(max_tokens=100, think_min=5000), "--think-min 5,000 leaves no room"),
        (Settings(max_tokens=100, think_min=100), "keep it at most 36"),
        (Settings(max_tokens=100, think_budget=90), "keep it at most 36"),
        # Below ANSWER_ROOM no budget fits: the bound to give is on --max-tokens, never negative.
        (Settings(max_tokens=10, think_budget=0), "raise --max-tokens to at least 64"),
        (Settings(max_tokens=10, think_min=5), "raise --max-tokens to at least 69"),
    ],
)
def test_thinking_that_leaves_no_answer_is_refused_with_a_bound_that_can_be_met(
    settings: Settings, says: str
) -> None:
    with pytest.raises(R1ChatError, match="no room for an answer") as e:
        settings.check_reasoning()
    message = str(e.value)
    assert says in message and "\n" not in message and e.value.exit_code == 2
    assert not re.search(r"-\d", message), message  # no negative bound
    Settings(max_tokens=164, think_min=100, think_budget=100).check_reasoning()  # room left


def test_the_app_s_budget_dialog_gives_a_bound_that_can_be_met() -> None:
    assert Settings(max_tokens=100).parse_budget("36") == 36
    with pytest.raises(R1ChatError, match="up to 36 "):
        Settings(max_tokens=100).parse_budget("37")
    with pytest.raises(R1ChatError, match="no room for a budget") as e:
        Settings(max_tokens=10).parse_budget("0")
    assert not re.search(r"-\d", str(e.value))


@pytest.mark.parametrize(
    "command",
    [("ask", "q"), ("ask", "-k", "2", "q"), ("eval", "none.jsonl")],
)
def test_think_min_above_max_tokens_is_refused_by_every_command(
    r1home: Path, command: tuple[str, ...]
) -> None:
    proc = run_cli(*command, "--max-tokens", "100", "--think-min", "200", home=r1home)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert "--think-min 200 leaves no room for an answer within --max-tokens 100" in err
