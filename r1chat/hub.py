"""Files from the Hugging Face hub, models and benchmark data alike: one way to fetch them.

Through huggingface-hub, into its cache layout (shared with every other Hugging Face tool), with
its resumable downloads and atomic renames: a half-written file is never taken for a whole one.
A file pinned to a commit is looked up in the cache first, without the network, so everything
fetched once works offline (HF_HUB_OFFLINE, or no network at all). Every failure is one line
naming the file and what to do, never huggingface-hub's retries or a traceback.

r1chat.models adds what is particular to models: the catalogue's fall-back to `main`, the
progress bar, and the GGUF checks of what arrived.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from r1chat.errors import R1ChatError

RepoType = Literal["model", "dataset"]

_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def cache_dir() -> Path:
    """Where hub files live: under $R1CHAT_HOME when set, else Hugging Face's shared cache."""
    if os.environ.get("R1CHAT_HOME"):
        from r1chat.config import paths

        return paths().cache_dir / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    """HF_HUB_OFFLINE, read as huggingface-hub reads it (once, at its import) or set since."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def unreachable() -> str | None:
    """Why the hub's host refuses connections, if it plainly does; None when it may be fine.

    huggingface-hub retries a failed connection for about 25 s before giving up; a refused
    connection or an unknown host will not get better in that time. Behind a proxy the direct
    connection says nothing, so it is not tried.
    """
    if any(os.environ.get(v) for v in _PROXIES):
        return None
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    if not url.hostname:
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=10):
            return None
    except TimeoutError:
        return None  # slow, not necessarily down: let huggingface-hub try
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__


@contextlib.contextmanager
def quiet_log() -> Iterator[None]:
    """huggingface-hub's retry warnings would break a one-line error."""
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def where(repo: str, filename: str, revision: str) -> str:
    """How a message names a hub file: `REPO@COMMIT12:FILE` (no @ for main)."""
    rev = "" if revision == "main" else f"@{revision[:12]}"
    return f"{repo}{rev}:{filename}"


def cached(repo: str, filename: str, revision: str, repo_type: RepoType = "model") -> Path | None:
    """The cached copy of a hub file at `revision`, without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        repo, filename, cache_dir=cache_dir(), revision=revision, repo_type=repo_type
    )
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    return None


def fetch(
    repo: str,
    filename: str,
    revision: str,
    *,
    repo_type: RepoType = "model",
    what: str,
    hint: str,
) -> Path:
    """The local copy of a hub file at `revision`: from the cache, else downloaded into it.

    `what` names the file for the user ("MATH-500"); `hint` ends each error with what they can
    do instead ("or pass a local JSONL file").
    """
    found = cached(repo, filename, revision, repo_type)
    if found is not None:
        return found
    named = f"{what} ({where(repo, filename, revision)})"
    if offline():
        raise R1ChatError(
            f"{named} is not downloaded and the hub is offline (HF_HUB_OFFLINE): run once with"
            f" the network, {hint}"
        )
    why = unreachable()
    if why:
        raise R1ChatError(
            f"cannot reach the Hugging Face hub to download {named} ({why}); check the network"
            f" (or HF_ENDPOINT), {hint}"
        )
    from huggingface_hub import hf_hub_download

    with quiet_log(), download_errors(named, repo, filename, revision, hint):
        return Path(
            hf_hub_download(
                repo,
                filename,
                repo_type=repo_type,
                revision=revision,
                cache_dir=cache_dir(),
                tqdm_class=_silent_tqdm(),
            )
        )


@contextlib.contextmanager
def download_errors(
    named: str, repo: str, filename: str, revision: str, hint: str
) -> Iterator[None]:
    """huggingface-hub's failures while it downloads `named`, each as one line ending with
    what the user can do instead (`hint`)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except LocalEntryNotFoundError:  # the hub could not be reached and nothing is cached
        raise R1ChatError(
            f"cannot reach the Hugging Face hub to download {named}; check the network"
            f" (or HF_ENDPOINT), {hint}"
        ) from None
    except GatedRepoError:
        raise R1ChatError(
            f"{repo} is gated: accept its terms on huggingface.co and log in with `hf auth login`"
        ) from None
    except RevisionNotFoundError:
        raise R1ChatError(f"{repo} has no revision {revision!r}; {hint}") from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise R1ChatError(
            f"{repo}/{filename} does not exist on Hugging Face at {revision[:12]}; {hint}"
        ) from None
    except KeyboardInterrupt:
        raise
    except Exception as e:  # network errors come in many types (httpx, OSError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise R1ChatError(f"could not download {named} ({first[:160]}); {hint}") from None


def _silent_tqdm() -> type:
    """A tqdm class that draws nothing. Data files are small (under a megabyte): a bar would only
    flash by, and it would land in a pipe's stderr, around a --json report."""
    from tqdm import tqdm

    class Silent(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent
