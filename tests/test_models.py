"""Models: catalogue resolution, offline behaviour, GGUF checks, and downloads from a fake hub.

Downloads run `r1chat models pull` in a subprocess against a tiny HTTP server on 127.0.0.1 that
answers like the hub's resolve endpoint (HEAD metadata, ranged GET), set through HF_ENDPOINT;
huggingface-hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import, hence the subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fake_hub import COMMIT, FakeHub
from typer.testing import CliRunner

from r1chat.commands.models import models_app
from r1chat.errors import R1ChatError
from r1chat.models import (
    CATALOG,
    DEFAULT_ALIAS,
    cached_models,
    model_cache_dir,
    model_rows,
    parse_ref,
    remove,
    resolve,
    validate_gguf,
)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    h = FakeHub()
    yield h
    h.close()


def pull(home: Path, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("R1CHAT_", "HF_")) and k != "TRANSFORMERS_OFFLINE"
    }
    env.update(
        {
            "R1CHAT_HOME": str(home),
            "HF_ENDPOINT": endpoint,
            "NO_COLOR": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "r1chat", "models", "pull", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def gguf_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.gguf") if p.is_file()]


def put_in_cache(alias: str, source: Path) -> Path:
    """Lay a file out in the hub cache as huggingface-hub does: a snapshot link to a blob."""
    e = CATALOG[alias]
    repo_dir = model_cache_dir() / ("models--" + e.repo.replace("/", "--"))
    blob = repo_dir / "blobs" / ("0" * 64)
    blob.parent.mkdir(parents=True)
    shutil.copyfile(source, blob)
    snap = repo_dir / "snapshots" / e.revision / e.filename
    snap.parent.mkdir(parents=True)
    snap.symlink_to(os.path.relpath(blob, snap.parent))
    return snap


# --- the catalogue and references --------------------------------------------------------------


def test_catalogue_covers_the_r1_distills_in_q4_k_m() -> None:
    assert DEFAULT_ALIAS == "r1-7b"
    assert set(CATALOG) == {"r1-1.5b", "r1-7b", "r1-8b", "r1-14b", "r1-32b"}
    for e in CATALOG.values():
        assert e.filename.endswith("-Q4_K_M.gguf")
        assert e.revision == "main" or e.pinned
    assert CATALOG["r1-8b"].arch == "llama"
    assert CATALOG["r1-7b"].pinned


def test_alias_resolves_to_its_pinned_hub_file() -> None:
    m = parse_ref("r1-7b")
    e = CATALOG["r1-7b"]
    assert (m.repo, m.filename, m.revision, m.arch) == (e.repo, e.filename, e.revision, "qwen2")
    assert parse_ref(None) == m


def test_repo_file_with_and_without_revision() -> None:
    m = parse_ref("someone/Some-GGUF:model-Q4_K_M.gguf")
    assert (m.repo, m.filename, m.revision, m.arch) == (
        "someone/Some-GGUF",
        "model-Q4_K_M.gguf",
        "main",
        None,
    )
    assert parse_ref("someone/Some-GGUF@v2:model.gguf").revision == "v2"


def test_local_path_and_bad_references(noise_model: Path) -> None:
    m = parse_ref(str(noise_model))
    assert m.path == noise_model and m.repo is None
    with pytest.raises(R1ChatError, match="unknown model 'r1-9000'") as e:
        parse_ref("r1-9000")
    assert e.value.exit_code == 2
    with pytest.raises(R1ChatError, match=r"must be a \.gguf"):
        parse_ref("someone/repo:weights.bin")


# --- offline ----------------------------------------------------------------------------------


def test_offline_and_not_downloaded_says_what_is_missing_in_one_line(r1home: Path) -> None:
    with pytest.raises(R1ChatError) as e:
        resolve("r1-7b")
    msg = str(e.value)
    assert "\n" not in msg
    assert "r1-7b" in msg and CATALOG["r1-7b"].filename in msg
    assert "offline" in msg and "--model PATH" in msg


def test_not_downloaded_without_download_names_the_pull_command(r1home: Path) -> None:
    with pytest.raises(R1ChatError, match="r1chat models pull r1-7b"):
        resolve("r1-7b", download=False)


def test_cached_model_is_found_offline(r1home: Path, noise_model: Path) -> None:
    snap = put_in_cache("r1-7b", noise_model)
    m, path = resolve("r1-7b")
    assert path == snap and m.name == "r1-7b"


# --- GGUF validation --------------------------------------------------------------------------


def test_valid_gguf_with_the_expected_architecture(noise_model: Path) -> None:
    assert validate_gguf(noise_model, "qwen2").architecture == "qwen2"
    assert validate_gguf(noise_model).architecture == "qwen2"


def test_wrong_architecture_is_refused(noise_model: Path) -> None:
    with pytest.raises(R1ChatError, match="is a qwen2 model, expected llama"):
        validate_gguf(noise_model, "llama")


def test_truncated_and_non_gguf_files_are_refused(noise_model: Path, tmp_path: Path) -> None:
    half = tmp_path / "half.gguf"
    half.write_bytes(noise_model.read_bytes()[: noise_model.stat().st_size // 2])
    with pytest.raises(R1ChatError, match="truncated GGUF"):
        validate_gguf(half, "qwen2")
    text = tmp_path / "readme.gguf"
    text.write_text("<html>rate limited</html>\n" * 20)
    with pytest.raises(R1ChatError, match="not a GGUF"):
        validate_gguf(text)


# --- the cache: list, path, rm ----------------------------------------------------------------


def test_list_shows_catalogue_and_what_is_downloaded(r1home: Path, noise_model: Path) -> None:
    snap = put_in_cache("r1-1.5b", noise_model)
    rows = {r.name: r for r in model_rows()}
    assert rows["r1-1.5b"].downloaded and rows["r1-1.5b"].path == str(snap)
    assert rows["r1-1.5b"].size == noise_model.stat().st_size
    assert not rows["r1-7b"].downloaded and rows["r1-7b"].default
    assert rows["r1-7b"].size == int(CATALOG["r1-7b"].size_gb * 1e9)

    app = typer.Typer()
    app.add_typer(models_app, name="models")
    out = CliRunner().invoke(app, ["models", "list", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["cache_dir"] == str(model_cache_dir())
    assert [m["name"] for m in data["models"] if m["downloaded"]] == ["r1-1.5b"]


def test_other_cached_ggufs_are_listed_by_repo_and_file(r1home: Path, noise_model: Path) -> None:
    d = model_cache_dir() / "models--someone--Tiny-GGUF" / "snapshots" / COMMIT
    d.mkdir(parents=True)
    shutil.copyfile(noise_model, d / "tiny.gguf")
    assert [c.ref for c in cached_models()] == ["someone/Tiny-GGUF:tiny.gguf"]
    assert "someone/Tiny-GGUF:tiny.gguf" in {r.name for r in model_rows()}


def test_rm_deletes_snapshot_and_blob(r1home: Path, noise_model: Path) -> None:
    snap = put_in_cache("r1-7b", noise_model)
    blob = snap.resolve()
    removed = remove("r1-7b")
    assert removed == [snap]
    assert not snap.exists() and not blob.exists()
    with pytest.raises(R1ChatError, match="not downloaded"):
        remove("r1-7b")


def test_rm_refuses_a_local_file(noise_model: Path) -> None:
    with pytest.raises(R1ChatError, match="your own file"):
        remove(str(noise_model))
    assert noise_model.exists()


def test_path_command(r1home: Path, noise_model: Path) -> None:
    app = typer.Typer()
    app.add_typer(models_app, name="models")
    runner = CliRunner()
    missing = runner.invoke(app, ["models", "path", "r1-7b"])
    assert missing.exit_code == 1 and "models pull r1-7b" in missing.stderr
    snap = put_in_cache("r1-7b", noise_model)
    found = runner.invoke(app, ["models", "path", "r1-7b"])
    assert found.exit_code == 0 and found.stdout.strip() == str(snap)


# --- downloads from the fake hub --------------------------------------------------------------


def test_pull_downloads_checks_and_caches(hub: FakeHub, tmp_path: Path, noise_model: Path) -> None:
    data = noise_model.read_bytes()
    hub.files["someone/Tiny-GGUF/tiny.gguf"] = data
    r = pull(tmp_path, hub.url, "someone/Tiny-GGUF:tiny.gguf")
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path.read_bytes() == data
    assert path.is_relative_to(tmp_path / "cache" / "hub")
    assert "downloaded, checked" in r.stderr
    # Pulled again: found in the cache, nothing downloaded.
    gets = sum(1 for m, _, _ in hub.requests if m == "GET")
    again = pull(tmp_path, hub.url, "someone/Tiny-GGUF:tiny.gguf")
    assert again.returncode == 0 and "already here" in again.stderr
    assert sum(1 for m, _, _ in hub.requests if m == "GET") == gets


def test_pull_resumes_after_the_connection_drops(
    hub: FakeHub, tmp_path: Path, noise_model: Path
) -> None:
    data = noise_model.read_bytes()
    hub.files["someone/Tiny-GGUF/tiny.gguf"] = data
    hub.drop_after = half = len(data) // 2
    r = pull(tmp_path, hub.url, "someone/Tiny-GGUF:tiny.gguf")
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).read_bytes() == data
    gets = [rng for method, _, rng in hub.requests if method == "GET"]
    assert len(gets) == 2 and gets[0] is None and gets[1] is not None
    # Resumed from the last whole chunk written, not from the start.
    assert 0 < int(gets[1].removeprefix("bytes=").rstrip("-")) <= half


def test_pull_rejects_the_wrong_architecture_and_removes_it(
    hub: FakeHub, tmp_path: Path, noise_model: Path
) -> None:
    e = CATALOG["r1-8b"]  # a llama model: the qwen2 file served is refused
    hub.files[f"{e.repo}/{e.filename}"] = noise_model.read_bytes()
    r = pull(tmp_path, hub.url, "r1-8b")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "rejected and removed" in r.stderr and "expected llama" in r.stderr
    assert gguf_files(tmp_path) == []


def test_pull_rejects_a_non_gguf_and_removes_it(hub: FakeHub, tmp_path: Path) -> None:
    hub.files["someone/Tiny-GGUF/tiny.gguf"] = b"<html>not a model</html>" * 100
    r = pull(tmp_path, hub.url, "someone/Tiny-GGUF:tiny.gguf")
    assert r.returncode == 1 and "not a GGUF" in r.stderr
    assert gguf_files(tmp_path) == [] and list((tmp_path / "cache").rglob("blobs/*")) == []


def test_pull_of_a_missing_file_says_so(hub: FakeHub, tmp_path: Path) -> None:
    r = pull(tmp_path, hub.url, "someone/Tiny-GGUF:nope.gguf")
    assert r.returncode == 1
    assert "someone/Tiny-GGUF/nope.gguf does not exist on Hugging Face" in r.stderr


def test_pull_without_network_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = pull(tmp_path, f"http://127.0.0.1:{port}", "r1-7b")
    assert r.returncode == 1
    assert r.stderr.startswith("r1chat: error: cannot reach the Hugging Face hub")
    assert r.stderr.count("\n") == 1 and "--model PATH" in r.stderr


def test_pull_of_a_local_file_only_checks_it(tmp_path: Path, noise_model: Path) -> None:
    r = pull(tmp_path, "http://127.0.0.1:9", str(noise_model))
    assert r.returncode == 0 and r.stdout.strip() == str(noise_model)


PROGRESS_SCRIPT = """
import json
from r1chat.models import resolve
seen = []
ref, path = resolve("someone/Tiny-GGUF:tiny.gguf", progress=lambda d, t: seen.append((d, t)))
print(json.dumps({"path": str(path), "seen": seen}))
"""


def test_download_progress_is_reported_to_a_callback(
    hub: FakeHub, tmp_path: Path, noise_model: Path
) -> None:
    data = noise_model.read_bytes()
    hub.files["someone/Tiny-GGUF/tiny.gguf"] = data
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("R1CHAT_", "HF_")) and k != "TRANSFORMERS_OFFLINE"
    }
    env.update(
        {"R1CHAT_HOME": str(tmp_path), "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    )
    r = subprocess.run(
        [sys.executable, "-c", PROGRESS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert Path(out["path"]).read_bytes() == data
    seen = out["seen"]
    assert seen and seen[-1] == [len(data), len(data)]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "%|" not in r.stderr  # no terminal progress bar drawn


def test_a_pin_the_hub_lost_falls_back_to_main_with_a_warning(
    hub: FakeHub, tmp_path: Path, noise_model: Path
) -> None:
    e = CATALOG["r1-1.5b"]
    assert e.pinned
    hub.files[f"{e.repo}/{e.filename}"] = noise_model.read_bytes()
    hub.missing_revisions.add(e.revision)
    r = pull(tmp_path, hub.url, "r1-1.5b")
    assert r.returncode == 0, r.stderr
    warning, done = r.stderr.splitlines()
    assert warning == (
        f"r1chat: warning: {e.repo} has no revision {e.revision[:12]} (the pinned"
        " one): using its main branch instead"
    )
    assert done == "r1chat: r1-1.5b: downloaded, checked"
    gets = [path for method, path, _ in hub.requests if method == "GET"]
    assert gets and all("/resolve/main/" in p for p in gets)
    # Found in the cache afterwards, offline too: the pin is tried first, then main.
    env_home = {"R1CHAT_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "r1chat", "models", "path", "r1-1.5b"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("R1CHAT_", "HF_"))},
            **env_home,
        },
    )
    assert r.returncode == 0 and r.stdout.strip().endswith(e.filename), r.stderr


def test_a_lost_pin_still_checks_the_file_it_falls_back_to(hub: FakeHub, tmp_path: Path) -> None:
    e = CATALOG["r1-1.5b"]
    hub.files[f"{e.repo}/{e.filename}"] = b"<html>not a model</html>" * 100
    hub.missing_revisions.add(e.revision)
    r = pull(tmp_path, hub.url, "r1-1.5b")
    assert r.returncode == 1
    assert "using its main branch" in r.stderr and "not a GGUF" in r.stderr
    assert gguf_files(tmp_path) == []


def test_a_missing_revision_the_user_asked_for_is_an_error(
    hub: FakeHub, tmp_path: Path, noise_model: Path
) -> None:
    hub.files["someone/Tiny-GGUF/tiny.gguf"] = noise_model.read_bytes()
    hub.missing_revisions.add("v9")
    r = pull(tmp_path, hub.url, "someone/Tiny-GGUF@v9:tiny.gguf")
    assert r.returncode == 1 and "has no revision 'v9'" in r.stderr
