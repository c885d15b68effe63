"""GGUF validation: bad files are refused before llama.cpp sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1chat.errors import R1ChatError
from r1chat.gguf_header import read_header


def test_reads_a_real_tiny_model(noise_model: Path) -> None:
    h = read_header(noise_model)
    assert h.architecture == "qwen2"
    assert h.metadata["qwen2.block_count"] == 2
    assert h.expected_size() == noise_model.stat().st_size
    assert h.chat_template and "</think>" in h.chat_template


def test_truncated_file_is_refused(noise_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(noise_model.read_bytes()[: noise_model.stat().st_size // 2])
    with pytest.raises(R1ChatError, match="truncated GGUF"):
        read_header(cut)


def test_header_cut_short_is_refused(noise_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(noise_model.read_bytes()[:5000])
    with pytest.raises(R1ChatError, match="truncated GGUF"):
        read_header(cut)


def test_not_a_gguf(tmp_path: Path) -> None:
    f = tmp_path / "notes.gguf"
    f.write_text("hello, I am not a model" * 10)
    with pytest.raises(R1ChatError, match="not a GGUF"):
        read_header(f)


def test_corrupt_counts_are_refused(noise_model: Path, tmp_path: Path) -> None:
    data = bytearray(noise_model.read_bytes()[:4096])
    data[8:16] = (2**62).to_bytes(8, "little")  # n_tensors
    f = tmp_path / "bad.gguf"
    f.write_bytes(bytes(data))
    with pytest.raises(R1ChatError, match="corrupt GGUF"):
        read_header(f)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(R1ChatError, match="not found"):
        read_header(tmp_path / "nope.gguf")
    with pytest.raises(R1ChatError, match="directory"):
        read_header(tmp_path)
