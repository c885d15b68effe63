"""Which GGUF file to run: local paths, catalogue aliases and Hugging Face `REPO:FILE`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from r1chat.errors import R1ChatError


@dataclass(frozen=True)
class CatalogEntry:
    alias: str
    repo: str
    filename: str
    revision: str = "main"
    size_gb: float = 0.0
    arch: str = "qwen2"

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.filename}"


# The DeepSeek-R1 distills in 4-bit GGUF from a maintained quantizer (bartowski).
CATALOG: dict[str, CatalogEntry] = {
    e.alias: e
    for e in (
        CatalogEntry("r1-1.5b", "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF",
                     "DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf", size_gb=1.12),
        CatalogEntry("r1-7b", "bartowski/DeepSeek-R1-Distill-Qwen-7B-GGUF",
                     "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf", size_gb=4.68),
        CatalogEntry("r1-8b", "bartowski/DeepSeek-R1-Distill-Llama-8B-GGUF",
                     "DeepSeek-R1-Distill-Llama-8B-Q4_K_M.gguf", size_gb=4.92, arch="llama"),
        CatalogEntry("r1-14b", "bartowski/DeepSeek-R1-Distill-Qwen-14B-GGUF",
                     "DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf", size_gb=8.99),
        CatalogEntry("r1-32b", "bartowski/DeepSeek-R1-Distill-Qwen-32B-GGUF",
                     "DeepSeek-R1-Distill-Qwen-32B-Q4_K_M.gguf", size_gb=19.85),
    )
}
DEFAULT_ALIAS = "r1-7b"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference: a local file, or a file to fetch from the hub."""

    name: str
    path: Path | None = None
    repo: str | None = None
    filename: str | None = None
    revision: str = "main"


def parse_ref(ref: str | None) -> ModelRef:
    ref = (ref or DEFAULT_ALIAS).strip()
    if not ref:
        raise R1ChatError("empty --model", 2)
    if ref in CATALOG:
        e = CATALOG[ref]
        return ModelRef(e.alias, repo=e.repo, filename=e.filename, revision=e.revision)
    path = Path(ref).expanduser()
    looks_local = (ref.endswith(".gguf") and ":" not in ref) or ref.startswith((".", "/", "~"))
    if path.exists() or looks_local:
        return ModelRef(path.name, path=path)
    if ":" in ref and "/" in ref.split(":", 1)[0]:
        repo, filename = ref.split(":", 1)
        revision = "main"
        if "@" in repo:
            repo, revision = repo.split("@", 1)
        if not filename.endswith(".gguf"):
            raise R1ChatError(f"{ref!r}: the file after ':' must be a .gguf file", 2)
        return ModelRef(filename.removesuffix(".gguf"), repo=repo, filename=filename,
                        revision=revision)
    aliases = ", ".join(CATALOG)
    raise R1ChatError(
        f"unknown model {ref!r}: pass a GGUF file path, REPO:FILE.gguf, or one of {aliases}", 2)


def resolve(ref: str | None, *, download: bool = True) -> tuple[ModelRef, Path]:
    """The local GGUF file for `ref`, fetching it from Hugging Face on first use."""
    m = parse_ref(ref)
    if m.path is not None:
        if not m.path.exists():
            raise R1ChatError(f"model file not found: {m.path}")
        return m, m.path
    assert m.repo and m.filename
    return m, _hub_file(m, download=download)


def _hub_file(m: ModelRef, *, download: bool) -> Path:
    assert m.repo and m.filename
    hint = "pass a local GGUF file with --model PATH"
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise R1ChatError(f"huggingface-hub is not installed; {hint}") from None
    try:
        # Cached files are found without the network (Llama.from_pretrained lists the repo first).
        return Path(hf_hub_download(m.repo, m.filename, revision=m.revision,
                                    local_files_only=True))
    except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError, OSError):
        pass
    if not download or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise R1ChatError(f"model {m.name} ({m.repo}/{m.filename}) is not downloaded and the hub"
                          f" is offline; {hint}")
    try:
        return Path(hf_hub_download(m.repo, m.filename, revision=m.revision))
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise R1ChatError(
            f"{m.repo}/{m.filename} does not exist on Hugging Face; {hint}") from None
    except KeyboardInterrupt:
        raise
    except Exception as e:  # network errors come in many types (requests, httpx, OSError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise R1ChatError(f"could not download {m.repo}/{m.filename} ({first[:120]}); {hint}"
                          ) from None
