"""Which GGUF file to run: local paths, catalogue aliases and Hugging Face `REPO:FILE`.

Downloads go through huggingface-hub (progress bar, resumable, offline-aware) into its cache
layout, so a model fetched by another Hugging Face tool is found here too. Every file is checked
to be a complete GGUF of the expected architecture before r1chat accepts it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1chat.errors import R1ChatError

if TYPE_CHECKING:
    from r1chat.gguf_header import GGUFHeader


@dataclass(frozen=True)
class CatalogEntry:
    alias: str
    repo: str
    filename: str
    revision: str = "main"
    size_gb: float = 0.0
    arch: str = "qwen2"
    title: str = ""

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.filename}"

    @property
    def pinned(self) -> bool:
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)


# The DeepSeek-R1 distills in 4-bit GGUF (Q4_K_M). Revisions are commits at which the hub's own
# file listing shows the Q4_K_M file, so a later re-upload cannot change what an alias means.
# No such commit was found for the 14B: it follows `main` of bartowski's repository.
CATALOG: dict[str, CatalogEntry] = {
    e.alias: e
    for e in (
        CatalogEntry(
            "r1-1.5b",
            "unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF",
            "DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf",
            "53d3061d21f4ec2b94f42165101ee7341bad023e",
            1.12,
            "qwen2",
            "DeepSeek-R1-Distill-Qwen-1.5B",
        ),
        CatalogEntry(
            "r1-7b",
            "unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF",
            "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf",
            "a0e93ce6804eb82fedfd4eed8991948654eec8eb",
            4.68,
            "qwen2",
            "DeepSeek-R1-Distill-Qwen-7B",
        ),
        CatalogEntry(
            "r1-8b",
            "unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF",
            "DeepSeek-R1-Distill-Llama-8B-Q4_K_M.gguf",
            "671a7fddf5a9008669395af38bf232c3b7be2503",
            4.92,
            "llama",
            "DeepSeek-R1-Distill-Llama-8B",
        ),
        CatalogEntry(
            "r1-14b",
            "bartowski/DeepSeek-R1-Distill-Qwen-14B-GGUF",
            "DeepSeek-R1-Distill-Qwen-14B-Q4_K_M.gguf",
            "main",
            8.99,
            "qwen2",
            "DeepSeek-R1-Distill-Qwen-14B",
        ),
        CatalogEntry(
            "r1-32b",
            "unsloth/DeepSeek-R1-Distill-Qwen-32B-GGUF",
            "DeepSeek-R1-Distill-Qwen-32B-Q4_K_M.gguf",
            "dd447a74e0d7edc7bb10d1a1d973bd883bf0ea42",
            19.85,
            "qwen2",
            "DeepSeek-R1-Distill-Qwen-32B",
        ),
    )
}
DEFAULT_ALIAS = "r1-7b"
# An owner and a name, as the hub allows them: no path tricks (`REPO:../x.gguf`).
_HUB_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
LOCAL_HINT = "pass a local GGUF file with --model PATH"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference: a local file, or a file to fetch from the hub."""

    name: str
    path: Path | None = None
    repo: str | None = None
    filename: str | None = None
    revision: str = "main"
    arch: str | None = None  # the architecture the file must declare; None: any

    @property
    def where(self) -> str:
        if self.path is not None:
            return str(self.path)
        rev = "" if self.revision == "main" else f"@{self.revision[:12]}"
        return f"{self.repo}{rev}:{self.filename}"


def parse_ref(ref: str | None) -> ModelRef:
    if ref is not None and not ref.strip():
        raise R1ChatError("empty model name: pass a GGUF path, an alias or REPO:FILE.gguf", 2)
    ref = (ref or DEFAULT_ALIAS).strip()
    if ref in CATALOG:
        e = CATALOG[ref]
        return ModelRef(e.alias, repo=e.repo, filename=e.filename, revision=e.revision, arch=e.arch)
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
        if not _HUB_REPO.fullmatch(repo) or any(
            part in ("", ".", "..") for part in filename.split("/")
        ):
            raise R1ChatError(f"{ref!r} is not a Hugging Face REPO:FILE.gguf reference", 2)
        return ModelRef(
            filename.removesuffix(".gguf"), repo=repo, filename=filename, revision=revision
        )
    aliases = ", ".join(CATALOG)
    raise R1ChatError(
        f"unknown model {ref!r}: pass a GGUF file path, REPO:FILE.gguf, or one of {aliases}", 2
    )


def model_cache_dir() -> Path:
    """Where hub models live (r1chat.hub.cache_dir)."""
    from r1chat import hub

    return hub.cache_dir()


def hub_offline() -> bool:
    from r1chat import hub

    return hub.offline()


def validate_gguf(path: Path, arch: str | None = None) -> GGUFHeader:
    """The file's header, if it is a complete GGUF declaring `arch` (any when None)."""
    from r1chat.gguf_checks import read_model_header

    header = read_model_header(path)
    found = header.architecture
    if not found:
        raise R1ChatError(f"{path} is a GGUF without general.architecture: not a model file")
    if arch is not None and found != arch:
        raise R1ChatError(f"{path} is a {found} model, expected {arch}")
    return header


DownloadProgress = Callable[[int, "int | None"], None]
Note = Callable[[str], None]


def resolve(
    ref: str | None,
    *,
    download: bool = True,
    progress: DownloadProgress | None = None,
    on_note: Note | None = None,
) -> tuple[ModelRef, Path]:
    """The local GGUF file for `ref`, fetching it from Hugging Face on first use.

    `progress(done_bytes, total_bytes)` replaces the terminal progress bar (the TUI uses it);
    `on_note` hears a one-line warning (a pinned revision the hub no longer has).
    """
    m = parse_ref(ref)
    if m.path is not None:
        if not m.path.exists():
            raise R1ChatError(f"model file not found: {m.path}")
        return m, m.path
    assert m.repo and m.filename
    cached = cached_path(m)
    if cached is not None:
        return m, cached
    if not download:
        raise R1ChatError(
            f"model {m.name} ({m.where}) is not downloaded: run `r1chat models pull"
            f" {_pull_arg(m)}` or {LOCAL_HINT}"
        )
    return m, _download(m, progress, on_note)


def _reporting_tqdm(progress: DownloadProgress) -> type:
    """A tqdm class that reports to `progress` instead of drawing on the terminal."""
    from tqdm import tqdm

    class Reporting(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["file"] = io.StringIO()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            progress(int(self.n), int(self.total) if self.total else None)
            return shown

    return Reporting


def cached_path(m: ModelRef) -> Path | None:
    """The cached file for a hub reference, without touching the network."""
    assert m.repo and m.filename
    from r1chat import hub

    # A catalogue pin the hub lost was fetched from `main` instead (see _download).
    revisions = dict.fromkeys((m.revision, "main") if m.name in CATALOG else (m.revision,))
    for revision in revisions:
        found = hub.cached(m.repo, m.filename, revision)
        if found is not None:
            return found
    return None


def _pull_arg(m: ModelRef) -> str:
    return m.name if m.name in CATALOG else f"{m.repo}:{m.filename}"


def _download(
    m: ModelRef, progress: DownloadProgress | None = None, on_note: Note | None = None
) -> Path:
    """Fetch a hub file into the cache and check it, removing it again if it is not usable.

    A catalogue pin the hub does not have (the pins could not all be checked against the hub)
    falls back to the repository's `main`, with a warning: a first run must not fail on a pin.
    The file is checked all the same.
    """
    assert m.repo and m.filename
    if hub_offline():
        raise R1ChatError(
            f"model {m.name} ({m.where}) is not downloaded and the hub is offline"
            f" (HF_HUB_OFFLINE); {LOCAL_HINT}"
        )
    from r1chat import hub

    unreachable = hub.unreachable()
    if unreachable:
        raise R1ChatError(
            f"cannot reach the Hugging Face hub to download {m.where}"
            f" ({unreachable}); check the network (or HF_ENDPOINT), or {LOCAL_HINT}"
        )
    # Its retry warnings would break the one-line error; the progress bar is not a log record.
    with hub.quiet_log():
        path = _fetch(m, progress, on_note)
    try:
        validate_gguf(path, m.arch)
    except R1ChatError as e:
        _remove_cached_file(path)
        raise R1ChatError(f"downloaded file rejected and removed from the cache: {e}") from None
    return path


def _fetch(m: ModelRef, progress: DownloadProgress | None, on_note: Note | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RevisionNotFoundError

    from r1chat import hub

    assert m.repo and m.filename
    repo, filename = m.repo, m.filename
    # A progress bar, retries that resume with a ranged GET when the connection drops, and an
    # atomic rename into the cache: a half-written file is never taken for the model.
    tqdm_class = _reporting_tqdm(progress) if progress is not None else None

    def fetch(revision: str) -> Path:
        return Path(
            hf_hub_download(
                repo, filename, revision=revision, cache_dir=hub.cache_dir(), tqdm_class=tqdm_class
            )
        )

    with hub.download_errors(m.where, repo, filename, m.revision, f"or {LOCAL_HINT}"):
        try:
            return fetch(m.revision)
        except RevisionNotFoundError:
            if m.revision == "main" or m.name not in CATALOG:
                raise  # a revision the user named is theirs to fix
            (on_note or _warn)(
                f"{m.repo} has no revision {m.revision[:12]} (the pinned one):"
                " using its main branch instead"
            )
            return fetch("main")


def _warn(line: str) -> None:
    import sys

    sys.stderr.write(f"r1chat: warning: {line}\n")


def pull(ref: str, on_note: Note | None = None) -> tuple[ModelRef, Path, bool]:
    """Download (or find) and check a model; returns (ref, path, downloaded now)."""
    m = parse_ref(ref)
    if m.path is not None:
        if not m.path.exists():
            raise R1ChatError(f"model file not found: {m.path}")
        validate_gguf(m.path, m.arch)
        return m, m.path, False
    cached = cached_path(m)
    if cached is not None:
        try:
            validate_gguf(cached, m.arch)
            return m, cached, False
        except R1ChatError:
            _remove_cached_file(cached)  # a damaged copy: fetch it again
    return m, _download(m, on_note=on_note), True


def _remove_cached_file(path: Path) -> None:
    """Remove a cached file: the snapshot entry and the blob it links to."""
    blob = path.resolve()
    for p in {path, blob}:
        if p.is_file() or p.is_symlink():
            p.unlink()


def remove(ref: str) -> list[Path]:
    """Delete a hub model's cached files (every cached revision); returns what was removed."""
    m = parse_ref(ref)
    if m.path is not None:
        raise R1ChatError(f"{m.path} is your own file, not a downloaded model: delete it yourself")
    assert m.repo and m.filename
    repo_dir = model_cache_dir() / ("models--" + m.repo.replace("/", "--"))
    removed: list[Path] = []
    for snap in sorted(repo_dir.glob(f"snapshots/*/{m.filename}")):
        blob = snap.resolve()
        snap.unlink()
        removed.append(snap)
        if blob != snap and blob.exists() and not _still_linked(repo_dir, blob):
            blob.unlink()
    if not removed:
        raise R1ChatError(f"{m.name} ({m.where}) is not downloaded")
    if not any(p.is_file() for p in repo_dir.glob("snapshots/*/*")):
        import shutil

        shutil.rmtree(repo_dir, ignore_errors=True)
    return removed


def _still_linked(repo_dir: Path, blob: Path) -> bool:
    return any(p.resolve() == blob for p in repo_dir.glob("snapshots/*/**/*") if p.is_symlink())


@dataclass(frozen=True)
class CachedModel:
    repo: str
    filename: str
    revision: str  # the snapshot (commit) folder it sits in
    path: Path
    size: int

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.filename}"


def cached_models() -> list[CachedModel]:
    """Every GGUF file in the model cache."""
    root = model_cache_dir()
    out: list[CachedModel] = []
    for repo_dir in sorted(root.glob("models--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        for snap in sorted(repo_dir.glob("snapshots/*")):
            for f in sorted(snap.rglob("*.gguf")):
                if f.exists():
                    out.append(
                        CachedModel(
                            repo, f.relative_to(snap).as_posix(), snap.name, f, f.stat().st_size
                        )
                    )
    return out


@dataclass(frozen=True)
class ModelRow:
    """One line of `r1chat models list`."""

    name: str  # the alias, or REPO:FILE for other cached files
    ref: str
    revision: str
    size: int  # bytes on disk when downloaded, else the catalogue's estimate
    downloaded: bool
    default: bool
    path: str | None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def model_rows(default: str | None = None) -> list[ModelRow]:
    default = default or DEFAULT_ALIAS
    rows: list[ModelRow] = []
    seen: set[Path] = set()
    for e in CATALOG.values():
        path = cached_path(parse_ref(e.alias))
        if path is not None:
            seen.add(path)
        rows.append(
            ModelRow(
                e.alias,
                e.ref,
                e.revision,
                path.stat().st_size if path else int(e.size_gb * 1e9),
                path is not None,
                e.alias == default,
                str(path) if path else None,
            )
        )
    for c in cached_models():
        if c.path in seen:
            continue
        rows.append(ModelRow(c.ref, c.ref, c.revision, c.size, True, c.ref == default, str(c.path)))
    return rows
