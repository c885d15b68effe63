"""Settings, built once: defaults < TOML config file < environment (R1CHAT_*) < command-line flags.

Paths come from platformdirs, or all live under $R1CHAT_HOME when it is set.

The config file takes flat keys (`temperature = 0.6`) or the same keys grouped in tables, which
read better in a longer file:

    model = "r1-7b"
    theme = "textual-dark"
    [sampling]
    temperature = 0.6
    [gpu]
    gpu_layers = 28
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from r1chat.errors import R1ChatError
from r1chat.reasoning import DEFAULT_BUDGET_MESSAGE, DEFAULT_WAIT, LOOP_ACTIONS, ReasoningParams
from r1chat.sampling import LIMITS, SamplingParams

# A budget must leave the closing text and at least a short answer inside max_tokens.
ANSWER_ROOM = 64

APP = "r1chat"


@dataclass(frozen=True)
class Paths:
    data_dir: Path
    config_dir: Path
    cache_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "history.sqlite3"


def paths() -> Paths:
    home = os.environ.get("R1CHAT_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(root, root, root / "cache")
    import platformdirs

    return Paths(
        Path(platformdirs.user_data_dir(APP)),
        Path(platformdirs.user_config_dir(APP)),
        Path(platformdirs.user_cache_dir(APP)),
    )


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # a GGUF path, a catalogue alias or REPO:FILE; None: the default
    temperature: float = SamplingParams.temperature
    top_p: float = SamplingParams.top_p
    top_k: int = SamplingParams.top_k
    max_tokens: int = SamplingParams.max_tokens
    ctx: int | None = None
    gpu_layers: int | None = None
    flash_attn: bool | None = None
    kv_type: str = "f16"
    threads: int | None = None
    seed: int | None = None
    samples: int = 1  # replies sampled at once, with a vote over their answers (ask -k, eval)
    # Thinking pane in the TUI: "auto" (open while thinking, folded after), "open", "folded".
    thinking: str = "auto"
    theme: str = "textual-dark"
    # LaTeX in answers shown as readable Unicode on a terminal ("unicode") or as written ("raw").
    math: str = "unicode"
    # Steering the thinking (r1chat.reasoning): None leaves it alone.
    think_budget: int | None = None
    think_min: int | None = None
    budget_message: str = DEFAULT_BUDGET_MESSAGE
    think_wait: str = DEFAULT_WAIT
    on_loop: str = "answer"
    # An OpenAI-compatible server instead of a local model (r1chat.remote).
    api_base: str | None = None
    api_key_env: str = "R1CHAT_API_KEY"  # the variable holding its key, never the key itself
    timeout: float = 120.0  # seconds a server may stay silent mid-reply
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def with_flags(self, **flags: Any) -> Settings:
        """Flags over everything else; checked as the file and environment are (NaN passes
        Click's range checks, for one)."""
        given = {
            k: _check(k, v, f"--{k.replace('_', '-')}") for k, v in flags.items() if v is not None
        }
        src = dict(self.sources)
        src.update({k: "flag" for k in given})
        return replace(self, **given, sources=src)

    def reasoning_params(self) -> ReasoningParams:
        return ReasoningParams(
            budget=self.think_budget,
            min_tokens=self.think_min,
            budget_message=self.budget_message,
            wait=self.think_wait,
            on_loop=self.on_loop,
        )

    def check_reasoning(self) -> None:
        """The thinking settings must leave room for an answer; one-line errors (exit 2)."""
        b, m = self.think_budget, self.think_min
        if b is not None and m is not None and m > b:
            raise R1ChatError(f"--think-min ({m:,}) is larger than --think-budget ({b:,})", 2)
        if b is not None and b + ANSWER_ROOM > self.max_tokens:
            raise R1ChatError(_no_room(f"a thinking budget of {b:,} tokens", b, self.max_tokens), 2)
        # Thinking at least m tokens within max_tokens leaves no answer either (an empty reply).
        if m is not None and m + ANSWER_ROOM > self.max_tokens:
            raise R1ChatError(_no_room(f"--think-min {m:,}", m, self.max_tokens), 2)

    def parse_budget(self, text: str) -> int | None:
        """A thinking budget as typed (the app's dialog): a number of tokens that leaves room
        for an answer within max_tokens, or empty for none; R1ChatError otherwise."""
        text = text.strip().replace(",", "").replace("_", "")
        if not text:
            return None
        if text.isdigit() and int(text) + ANSWER_ROOM <= self.max_tokens:
            return int(text)
        if self.max_tokens < ANSWER_ROOM:
            # No budget fits (not even 0): say so rather than give a negative bound.
            raise R1ChatError(
                f"max_tokens ({self.max_tokens:,}) leaves no room for a budget: the closing text"
                f" and the answer need {ANSWER_ROOM} tokens. Leave it empty.",
                2,
            )
        raise R1ChatError(
            f"A budget is a number of tokens up to {self.max_tokens - ANSWER_ROOM:,}"
            f" (max_tokens {self.max_tokens:,} less {ANSWER_ROOM} for the answer), or empty.",
            2,
        )

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )

    def values(self) -> dict[str, Any]:
        """Every setting by name, without the bookkeeping."""
        out = asdict(self)
        out.pop("sources")
        return out

    def source(self, key: str) -> str:
        """Where a value came from: "default", "file", "env" or "flag"."""
        return self.sources.get(key, "default")


_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "temperature": (float, int),
    "top_p": (float, int),
    "top_k": (int,),
    "max_tokens": (int,),
    "ctx": (int,),
    "gpu_layers": (int,),
    "flash_attn": (bool,),
    "kv_type": (str,),
    "threads": (int,),
    "seed": (int,),
    "samples": (int,),
    "thinking": (str,),
    "theme": (str,),
    "math": (str,),
    "think_budget": (int,),
    "think_min": (int,),
    "budget_message": (str,),
    "think_wait": (str,),
    "on_loop": (str,),
    "api_base": (str,),
    "api_key_env": (str,),
    "timeout": (float, int),
}
_CHOICES = {
    "thinking": ("auto", "open", "folded"),
    "kv_type": ("f16", "q8_0", "q4_0"),
    "on_loop": LOOP_ACTIONS,
    "math": ("unicode", "raw"),
}
# Optional tables in the file, and the keys each may hold.
TABLES: dict[str, tuple[str, ...]] = {
    "sampling": ("temperature", "top_p", "top_k", "max_tokens", "seed", "samples"),
    "context": ("ctx",),
    "gpu": ("gpu_layers", "flash_attn", "kv_type", "threads"),
    "tui": ("thinking", "theme", "math"),
    "reasoning": ("budget", "min", "budget_message", "wait", "on_loop"),
    "engine": ("api_base", "api_key_env", "timeout"),
}
# Keys a table spells more briefly than the setting: `[reasoning] budget` is `think_budget`.
TABLE_NAMES = {
    ("reasoning", "budget"): "think_budget",
    ("reasoning", "min"): "think_min",
    ("reasoning", "wait"): "think_wait",
}


def _no_room(what: str, tokens: int, max_tokens: int) -> str:
    """Why `tokens` of thinking leave no answer within max_tokens, with bounds that can be met
    (max_tokens - ANSWER_ROOM is negative below ANSWER_ROOM: no bound to give then)."""
    need = f"raise --max-tokens to at least {tokens + ANSWER_ROOM:,}"
    if max_tokens < ANSWER_ROOM:
        return (
            f"{what} leaves no room for an answer within --max-tokens {max_tokens:,}: the"
            f" closing text and the answer need {ANSWER_ROOM} tokens after the thinking; {need}"
        )
    return (
        f"{what} leaves no room for an answer within --max-tokens {max_tokens:,}:"
        f" keep it at most {max_tokens - ANSWER_ROOM:,}, or {need}"
    )


def _check(key: str, value: Any, where: str) -> Any:
    kinds = _TYPES.get(key)
    if kinds is None:
        known = ", ".join(_TYPES)
        raise R1ChatError(f"{where}: unknown setting {key!r} (known: {known})", 2)
    if isinstance(value, bool) and bool not in kinds:
        raise R1ChatError(f"{where}: {key} must be {kinds[0].__name__}, not a boolean", 2)
    if not isinstance(value, kinds):
        raise R1ChatError(f"{where}: {key} must be {kinds[0].__name__}", 2)
    checked: Any = value  # isinstance against a tuple of types narrows to object
    if isinstance(checked, float) and not math.isfinite(checked):
        raise R1ChatError(f"{where}: {key} must be a number, not {value}", 2)
    if key in _CHOICES and value not in _CHOICES[key]:
        raise R1ChatError(f"{where}: {key} must be one of {', '.join(_CHOICES[key])}", 2)
    lo, hi = LIMITS.get(key, (None, None))
    if (lo is not None and checked < lo) or (hi is not None and checked > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise R1ChatError(f"{where}: {key} must be {bound}, not {value}", 2)
    return float(checked) if kinds[0] is float else checked


_TABLE_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]")


def _line_of(text: str, key: str, table: str | None = None) -> int:
    """The line that sets `key` (inside `[table]` when given), 0 when it cannot be told."""
    current: str | None = None
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for n, line in enumerate(text.splitlines(), 1):
        m = _TABLE_RE.match(line)
        if m:
            current = m.group(1)
            if table is None and current == key:
                return n
            continue
        if current == table and key_re.match(line):
            return n
    return 0


def _flatten(data: dict[str, Any], text: str, path: Path) -> dict[str, Any]:
    def where(key: str, table: str | None = None) -> str:
        line = _line_of(text, key, table)
        return f"{path}:{line}" if line else str(path)

    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            allowed = TABLES.get(key)
            if allowed is None:
                tables = ", ".join(f"[{t}]" for t in TABLES)
                raise R1ChatError(f"{where(key)}: unknown table [{key}] (known: {tables})", 2)
            for sub, subvalue in value.items():
                if sub not in allowed:
                    raise R1ChatError(
                        f"{where(sub, key)}: {sub!r} does not belong in [{key}]"
                        f" (it takes {', '.join(allowed)})",
                        2,
                    )
                name = TABLE_NAMES.get((key, str(sub))) or str(sub)
                if name in out:
                    raise R1ChatError(f"{where(sub, key)}: {sub} is set twice", 2)
                out[name] = _check(name, subvalue, where(sub, key))
        else:
            if key in out:
                raise R1ChatError(f"{where(key)}: {key} is set twice", 2)
            out[key] = _check(key, value, where(key))
    return out


def load_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML config file, checked; {} when there is no file."""
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise R1ChatError(f"invalid config file {path}: {e}", 2) from None
    except (OSError, UnicodeDecodeError) as e:
        raise R1ChatError(f"cannot read config file {path}: {e}", 2) from None
    return _flatten(data, text, path)


def _from_env(key: str, raw: str) -> Any:
    kinds = _TYPES[key]
    name = f"R1CHAT_{key.upper()}"
    try:
        if kinds[0] is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return _check(key, kinds[0](raw), name)
    except ValueError:
        raise R1ChatError(f"{name}={raw!r} is not a valid {kinds[0].__name__}", 2) from None


def load_settings(config_file: Path | None = None) -> Settings:
    """Defaults, then the config file, then R1CHAT_* environment variables."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in load_file(config_file or paths().config_file).items():
        values[key], sources[key] = value, "file"
    for f in fields(Settings):
        if f.name == "sources":
            continue
        raw = os.environ.get(f"R1CHAT_{f.name.upper()}")
        if raw:
            values[f.name], sources[f.name] = _from_env(f.name, raw), "env"
    return Settings(**values, sources=sources)
