"""GGUF files built to make llama.cpp abort (GGML_ASSERT), written at test time.

Each is a small qwen2 header with one bad value and no weights: llama.cpp reads the
hyperparameters (and the vocabulary) before it looks for tensors, so the assert fires first.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARCH = "qwen2"


def _base(w: Any) -> None:
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-6)


def write_model(path: Path, tweak: Callable[[Any], object], *, layers: int | None = 2) -> Path:
    """A header-only qwen2 GGUF; `tweak(writer)` adds the bad value."""
    import gguf

    w = gguf.GGUFWriter(str(path), ARCH)
    w.add_name("hostile")
    _base(w)
    if layers is not None:
        w.add_block_count(layers)
    tweak(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _vocab(tokens: list[str]) -> Callable[[Any], None]:
    def add(w: Any) -> None:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_types([1] * len(tokens))
        w.add_token_merges(["a b"])

    return add


# name -> (how to build it, a word the one-line error must contain)
HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "no layers": (lambda p: write_model(p, lambda w: None, layers=0), "block_count"),
    "2^31 layers": (lambda p: write_model(p, lambda w: None, layers=2**31), "block_count"),
    "more experts used than there are": (
        lambda p: write_model(p, lambda w: (w.add_expert_count(4), w.add_expert_used_count(8))),
        "expert_used_count",
    ),
    "experts used without experts": (
        lambda p: write_model(p, lambda w: w.add_expert_used_count(2)),
        "expert_used_count",
    ),
    "unknown rope scaling": (
        lambda p: write_model(p, lambda w: w.add_string(f"{ARCH}.rope.scaling.type", "bogus")),
        "rope.scaling.type",
    ),
    "a token listed twice": (
        lambda p: write_model(p, _vocab(["a", "b", "a", "\u010a"])),
        "token twice",
    ),
}


def write_nested(path: Path, depth: int) -> Path:
    """A GGUF whose one extra key holds arrays nested `depth` deep (GGUF v3, no tensors)."""

    def string(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<Q", len(raw)) + raw

    arch = string("general.architecture") + struct.pack("<I", 8) + string(ARCH)
    value = struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQ", 4, 0)
    nested = string("evil.nested") + value
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + arch + nested)
    return path
