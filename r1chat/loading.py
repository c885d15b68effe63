"""Settings → a loaded engine: resolve the model (downloading it on first use), check the file,
fit it to the GPU and load it. Shared by `ask`, the TUI and `bench`; no UI code here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.engines.base import Engine
    from r1chat.engines.remote import RemoteEngine
    from r1chat.gguf_header import GGUFHeader

Notes = Callable[[str], None]
DownloadProgress = Callable[[int, "int | None"], None]


def load_engine(
    settings: Settings,
    *,
    on_note: Notes | None = None,
    on_download: DownloadProgress | None = None,
    cancel: threading.Event | None = None,
) -> Engine:
    """The engine the settings ask for, loaded.

    `on_note` hears one line per decision worth telling the user (what auto-fit chose, an
    out-of-memory retry); `on_download(done, total)` reports a first-use download (without it,
    huggingface-hub draws its own bar on the terminal). Setting `cancel` stops a load midway.
    """
    if settings.api_base:
        return load_remote(settings, on_note=on_note, cancel=cancel)
    from r1chat.engines.llama import LlamaEngine
    from r1chat.hardware import load_fitted

    model = find_model(settings.model, download=True, on_download=on_download, on_note=on_note)
    engine: Engine = load_fitted(
        model.path,
        model.header,
        settings,
        name=model.name,
        on_note=on_note,
        factory=functools.partial(LlamaEngine, cancel=cancel),
    )
    return engine


def load_remote(
    settings: Settings, *, on_note: Notes | None = None, cancel: threading.Event | None = None
) -> RemoteEngine:
    """The model `settings.model` names (default: the first listed) on the configured server;
    its key comes from the environment variable `settings.api_key_env`, never from a file.
    Setting `cancel` (or a signal) ends the wait on the server at once."""
    from r1chat.engines.remote import RemoteEngine, key_from_env

    assert settings.api_base is not None
    key, stripped = key_from_env(settings.api_key_env)
    if stripped and on_note is not None:
        on_note(stripped)
    return RemoteEngine(
        settings.api_base,
        settings.model,
        key=key,
        timeout_s=settings.timeout,
        on_note=on_note,
        cancel=cancel,
    )


@dataclass(frozen=True)
class LocalModel:
    path: Path
    header: GGUFHeader
    name: str | None  # the catalogue alias or hub file name; None: the file's own name


def find_model(
    ref: str | None,
    *,
    download: bool,
    on_download: DownloadProgress | None = None,
    on_note: Notes | None = None,
) -> LocalModel:
    """The local GGUF file `ref` names (fetched first when `download`), checked to be usable."""
    from r1chat.models import resolve, validate_gguf

    m, path = resolve(ref, download=download, progress=on_download, on_note=on_note)
    return LocalModel(path, validate_gguf(path, m.arch), m.name if m.path is None else None)
