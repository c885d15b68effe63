"""How a reply is sampled: the defaults and the allowed ranges, in one place.

The settings, the config file's checks, the command-line options and the engines all read these,
so a default or a bound is changed here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    # The model card's recommendation: 0.6 (0.5-0.7) and top-p 0.95.
    temperature: float = 0.6
    top_p: float = 0.95
    # A top-k cut before top-p keeps sampling cheap at a 152k vocabulary (~15 ms/token without).
    top_k: int = 40
    max_tokens: int = 4096
    seed: int | None = None
    # Benchmarks decode a fixed number of tokens whatever the model says, as llama-bench does.
    ignore_eos: bool = False


# Replies sampled at once (ask -k, eval, bench, the app): each holds max_tokens of context.
MAX_SAMPLES = 64

# Inclusive bounds of each setting that has them; None is open.
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "temperature": (0.0, 5.0),
    "top_p": (0.0, 1.0),
    "top_k": (0, None),
    "max_tokens": (1, None),
    "seed": (0, None),
    "ctx": (64, None),
    "gpu_layers": (0, None),
    # More threads than cores only slow llama.cpp down; 100,000 made it crash.
    "threads": (1, 4 * (os.cpu_count() or 1)),
    "think_budget": (0, None),
    "think_min": (1, None),
    "timeout": (1.0, 3600.0),
    "samples": (1, MAX_SAMPLES),
}


def limit(key: str) -> dict[str, float | None]:
    """`LIMITS[key]` as Typer's `min=`/`max=` keyword arguments."""
    lo, hi = LIMITS[key]
    return {"min": lo, "max": hi}


def parse_samples(text: str) -> int:
    """A number of samples as typed (the app's dialog): empty is 1; R1ChatError otherwise."""
    from r1chat.errors import R1ChatError

    text = text.strip().replace(",", "").replace("_", "") or "1"
    if not text.isdigit() or not 1 <= int(text) <= MAX_SAMPLES:
        raise R1ChatError(f"Samples: a number from 1 to {MAX_SAMPLES}.", 2)
    return int(text)
