"""What llama.cpp asserts about a model's metadata, checked before llama.cpp sees the file.

llama.cpp reports most bad files with an error, but some conditions are `GGML_ASSERT`s that abort
the whole process (exit 134, a debugger backtrace on the terminal, a TUI's terminal left in its
alternate screen). These are the ones its loader (src/llama-model.cpp `load_hparams`,
llama-model-loader.cpp, llama-vocab.cpp, as vendored by llama-cpp-python 0.3.36) can reach from
a file's contents; each becomes one sentence here instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r1chat.errors import R1ChatError
from r1chat.gguf_header import GGUFHeader, read_header

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def _int(meta: dict[str, Any], key: str) -> int | None:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _max_of(meta: dict[str, Any], key: str) -> int | None:
    """An int key, or the largest of a per-layer array of them."""
    value = meta.get(key)
    if isinstance(value, list):
        ints = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        return max(ints) if ints else None
    return _int(meta, key)


def check_model(header: GGUFHeader) -> str | None:
    """Why llama.cpp would abort on this file, in one sentence; None when it would not."""
    return _check_hparams(header) or _check_tensors(header) or _check_vocab(header)


def _check_hparams(header: GGUFHeader) -> str | None:
    meta = header.metadata
    arch = header.architecture
    if arch is None:
        return None  # llama.cpp refuses it with an error of its own
    key = f"{arch}."
    layers = _int(meta, key + "block_count")
    if layers is not None and not 0 < layers <= MAX_LAYERS:
        return f"{key}block_count is {layers}, llama.cpp takes 1 to {MAX_LAYERS}"
    nextn = _int(meta, key + "nextn_predict_layers")
    if nextn is not None and layers is not None and nextn > layers:
        return f"{key}nextn_predict_layers ({nextn}) exceeds the block count ({layers})"
    experts = _int(meta, key + "expert_count") or 0
    used = _max_of(meta, key + "expert_used_count") or 0
    groups = _int(meta, key + "expert_group_count") or 0
    group_used = _int(meta, key + "expert_group_used_count") or 0
    if experts > MAX_EXPERTS:
        return f"{key}expert_count is {experts}, llama.cpp takes at most {MAX_EXPERTS}"
    if used > experts:
        return f"{key}expert_used_count ({used}) exceeds the expert count ({experts})"
    if experts > 0:
        if used == 0:
            return f"{key}expert_used_count must be set for a model with experts"
        if groups >= experts:
            return f"{key}expert_group_count ({groups}) must be below the expert count"
        if groups > 1 and (experts % groups or not 0 < group_used < groups):
            return f"{key}expert groups do not divide the experts as llama.cpp requires"
    elif groups:
        return f"{key}expert_group_count is set for a model without experts"
    scaling = meta.get(key + "rope.scaling.type")
    if isinstance(scaling, str) and scaling not in ROPE_SCALING_TYPES:
        return f"unknown {key}rope.scaling.type {scaling!r}"
    return None


def _check_tensors(header: GGUFHeader) -> str | None:
    for t in header.tensors:
        if any(d < 1 for d in t.shape):
            return f"tensor {t.name} has an empty dimension {list(t.shape)}"
    return None


def _check_vocab(header: GGUFHeader) -> str | None:
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list) and len(set(tokens)) != len(tokens):
        return "the vocabulary lists a token twice"
    return None


def read_model_header(
    path: str | Path, *, keep_arrays: bool = False, check_size: bool = True
) -> GGUFHeader:
    """The header of a GGUF file llama.cpp can load without aborting (see read_header);
    R1ChatError naming what it would have asserted on otherwise."""
    header = read_header(path, keep_arrays=keep_arrays, check_size=check_size)
    problem = check_model(header)
    if problem is not None:
        raise R1ChatError(f"{header.path} cannot be loaded: {problem}")
    return header
