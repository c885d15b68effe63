"""Read a GGUF file's header without loading it, to refuse bad files before llama.cpp sees them.

llama.cpp aborts the process on some malformed files instead of returning an error, so r1chat checks
the magic, the metadata and that every tensor's bytes are really in the file first.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1chat.errors import R1ChatError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# ggml type id -> (elements per block, bytes per block), as gguf-py's GGML_QUANT_SIZES.
GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}

# GGUF metadata value types -> struct format for the fixed-size ones.
_SCALAR = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
MAX_NESTING = 8
# Kept even when arrays are skipped: llama.cpp aborts on a vocabulary with a repeated token.
ALWAYS_KEPT = {"tokenizer.ggml.tokens"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def nbytes(self) -> int | None:
        block = GGML_BLOCKS.get(self.ggml_type)
        if block is None:
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n // block[0] * block[1]


@dataclass
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def chat_template(self) -> str | None:
        tpl = self.metadata.get("tokenizer.chat_template")
        return tpl if isinstance(tpl, str) else None

    def expected_size(self) -> int:
        """Bytes the file needs to hold all of its tensors' data."""
        end = self.data_offset
        for t in self.tensors:
            n = t.nbytes
            if n is not None:
                end = max(end, self.data_offset + t.offset + n)
        return end


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def take(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise EOFError
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > self.size:
            raise EOFError
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool, depth: int = 0) -> Any:
        if depth > MAX_NESTING:
            # Real files nest arrays once at most; a deep nest is an attack on the reader.
            raise ValueError(f"arrays nested more than {MAX_NESTING} deep")
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.take("I")
            count = self.take("Q")
            if etype in _SCALAR and not keep:
                size = struct.calcsize(_SCALAR[etype]) * count
                if self.pos + size > self.size:
                    raise EOFError
                self.pos += size
                return None
            if etype in _SCALAR:
                fmt = f"<{count}{_SCALAR[etype]}"
                size = struct.calcsize(fmt)
                if self.pos + size > self.size:
                    raise EOFError
                values = list(struct.unpack_from(fmt, self.buf, self.pos))
                self.pos += size
                return values
            items = [self.value(etype, keep, depth + 1) for _ in range(count)]
            return items if keep else None
        raise ValueError(f"unknown metadata type {vtype}")


def read_header(
    path: str | Path, *, keep_arrays: bool = False, check_size: bool = True
) -> GGUFHeader:
    """Parse the header of the GGUF file at `path`; raise R1ChatError if it is not a usable GGUF.

    Arrays (the vocabulary, merges) are skipped unless `keep_arrays`, which keeps validation quick;
    `check_size=False` reads the header of a file whose tensor data is cut off.
    """
    p = Path(path)
    if not p.exists():
        raise R1ChatError(f"model file not found: {p}")
    if p.is_dir():
        raise R1ChatError(f"model path is a directory, not a GGUF file: {p}")
    if not p.is_file():  # a FIFO or a device would hang the reader or never end
        raise R1ChatError(f"model path is not a regular file: {p}")
    try:
        with p.open("rb") as f:
            size = p.stat().st_size
            if size < 24:
                raise R1ChatError(f"not a GGUF model file (too small, {size} bytes): {p}")
            if f.read(4) != GGUF_MAGIC:
                raise R1ChatError(f"not a GGUF model file (bad magic bytes): {p}")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(p, mm, size, keep_arrays, check_size)
    except PermissionError as e:
        raise R1ChatError(f"cannot read model file {p}: permission denied") from e
    except OSError as e:
        raise R1ChatError(f"cannot read model file {p}: {e.strerror or e}") from e


def _parse(p: Path, mm: mmap.mmap, size: int, keep_arrays: bool, check_size: bool) -> GGUFHeader:
    cur = _Cursor(mm, size)
    cur.pos = 4
    try:
        version = cur.take("I")
        if version not in (2, 3):
            raise R1ChatError(f"unsupported GGUF version {version} in {p}")
        n_tensors = cur.take("Q")
        n_kv = cur.take("Q")
        if n_tensors > 1_000_000 or n_kv > 1_000_000:
            raise R1ChatError(f"corrupt GGUF header (implausible counts) in {p}")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            vtype = cur.take("I")
            metadata[key] = cur.value(vtype, keep_arrays or key in ALWAYS_KEPT)
        tensors = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.take("I")
            if n_dims > 8:
                raise R1ChatError(f"corrupt GGUF tensor info ({name}) in {p}")
            shape = tuple(cur.take("Q") for _ in range(n_dims))
            ggml_type = cur.take("I")
            offset = cur.take("Q")
            tensors.append(TensorInfo(name, shape, ggml_type, offset))
    except EOFError:
        raise R1ChatError(f"truncated GGUF file (header cut short): {p}") from None
    except ValueError as e:
        raise R1ChatError(f"corrupt GGUF header in {p} ({e})") from None
    except (UnicodeDecodeError, struct.error, MemoryError, OverflowError, RecursionError):
        raise R1ChatError(f"corrupt GGUF header in {p}") from None
    align = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0:
        align = DEFAULT_ALIGNMENT
    data_offset = (cur.pos + align - 1) // align * align
    header = GGUFHeader(p, version, metadata, tensors, data_offset, size)
    need = header.expected_size()
    if check_size and need > size:
        raise R1ChatError(
            f"truncated GGUF file: {p} has {size:,} bytes, its tensors need {need:,}"
            " (an interrupted download? fetch it again)"
        )
    return header
