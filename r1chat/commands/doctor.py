"""`r1chat doctor`: check the installation, the hardware and the model, with a fix for each fault.

Each check is ok, warn or fail; the command exits 1 when any check fails, 0 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from r1chat.commands.options import ApiBaseOpt, ModelOpt

if TYPE_CHECKING:
    from r1chat.config import Settings

Status = Literal["ok", "warn", "fail"]


def llama_pin() -> str | None:
    """The llama-cpp-python release r1chat pins (pyproject.toml, the one place it is set), as
    the installed package's metadata says; None when r1chat runs uninstalled."""
    import importlib.metadata
    import re

    try:
        requires = importlib.metadata.requires("r1chat") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for req in requires:
        m = re.fullmatch(r"llama-cpp-python\s*==\s*([\w.]+)", req.strip())
        if m:
            return m.group(1)
    return None


LLAMA_PIN = llama_pin()
REINSTALL = (
    'CMAKE_ARGS="{flag}" pip install --force-reinstall --no-cache-dir'
    f" llama-cpp-python{'==' + LLAMA_PIN if LLAMA_PIN else ''}"
)
PACKAGES = (
    "llama-cpp-python",
    "textual",
    "rich",
    "typer",
    "huggingface-hub",
    "platformdirs",
    "jinja2",
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def check_python() -> Check:
    v = sys.version_info
    text = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return Check("python", "fail", text, "r1chat needs Python 3.11 or newer")
    return Check("python", "ok", text)


def check_packages() -> Check:
    found, missing = [], []
    for name in ("r1chat", *PACKAGES):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return Check(
            "packages", "fail", f"missing: {', '.join(missing)}", f"pip install {' '.join(missing)}"
        )
    from r1chat.hardware import package_version

    llama = package_version("llama-cpp-python")
    if LLAMA_PIN is not None and llama != LLAMA_PIN:
        return Check(
            "packages",
            "warn",
            "; ".join(found),
            f"r1chat is tested with llama-cpp-python {LLAMA_PIN}, found {llama}:"
            f" pip install llama-cpp-python=={LLAMA_PIN}",
        )
    return Check("packages", "ok", "; ".join(found))


def check_build_and_gpus() -> tuple[Check, Check]:
    """The llama.cpp build's backend, and the GPUs seen against what the build can use."""
    from r1chat.hardware import GiB, build_info, detect_gpus

    build = build_info()
    gpus = detect_gpus()
    if build.error:
        llama = Check(
            "llama.cpp",
            "fail",
            f"cannot load llama-cpp-python: {build.error}",
            REINSTALL.format(
                flag="-DGGML_CUDA=on"
                if any(g.vendor == "nvidia" for g in gpus)
                else "-DGGML_NATIVE=OFF"
            ),
        )
    else:
        offload = "GPU offload supported" if build.gpu_offload else "no GPU offload"
        llama = Check("llama.cpp", "ok", f"backend {build.backend}, {offload}")

    if not gpus:
        return llama, Check("gpu", "ok", "no GPU found: the model runs on the CPU")
    shown = "; ".join(
        f"{g.name}: {g.free_bytes / GiB:.1f} of {g.total_bytes / GiB:.1f} GiB free" for g in gpus
    )
    vendor = gpus[0].vendor
    if build.error:
        return llama, Check("gpu", "warn", shown, "fix llama-cpp-python first (see above)")
    if vendor == "nvidia" and build.backend != "CUDA":
        return llama, Check(
            "gpu",
            "warn",
            f"{shown}; but llama-cpp-python was built without CUDA",
            "an NVIDIA GPU is present but llama-cpp-python was built without CUDA: reinstall"
            " with " + REINSTALL.format(flag="-DGGML_CUDA=on"),
        )
    if vendor == "apple" and build.backend != "Metal":
        return llama, Check(
            "gpu",
            "warn",
            f"{shown}; but llama-cpp-python was built without Metal",
            "reinstall with " + REINSTALL.format(flag="-DGGML_METAL=on"),
        )
    return llama, Check("gpu", "ok", shown)


def check_paths() -> tuple[Check, Check]:
    """The data and config locations, and the config file itself."""
    from r1chat.config import load_file, paths
    from r1chat.errors import R1ChatError

    p = paths()
    where = f"data {p.data_dir}; config {p.config_file}"
    problems = [d for d in (p.data_dir, p.config_dir) if d.exists() and not _writable(d)]
    dirs = (
        Check(
            "paths",
            "fail",
            f"{where}; not writable: {', '.join(map(str, problems))}",
            "fix the permissions or set R1CHAT_HOME to a writable folder",
        )
        if problems
        else Check("paths", "ok", where)
    )
    try:
        n = len(load_file(p.config_file))
    except R1ChatError as e:
        return dirs, Check("config", "fail", str(e), f"fix or remove {p.config_file}")
    state = f"{n} settings" if p.config_file.exists() else "no file (defaults)"
    return dirs, Check("config", "ok", f"{p.config_file}: {state}")


def _writable(d: Path) -> bool:
    return os.access(d, os.W_OK)


def check_cache() -> Check:
    from r1chat.models import model_cache_dir, model_rows

    cache = model_cache_dir()
    rows = [r for r in model_rows() if r.downloaded]
    names = ", ".join(r.name for r in rows) or "none"
    detail = f"{cache}: {len(rows)} model(s): {names}"
    if cache.exists() and not _writable(cache):
        return Check(
            "model cache",
            "fail",
            detail + "; not writable",
            "fix its permissions, or set HF_HUB_CACHE or R1CHAT_HOME",
        )
    return Check("model cache", "ok", detail)


def check_model(settings: Settings | None, load: bool = True) -> Check:
    """Whether the configured (or default) model is here, is a valid GGUF, and loads."""
    from r1chat.errors import R1ChatError
    from r1chat.models import DEFAULT_ALIAS, resolve, validate_gguf

    if settings is None:
        return Check("model", "warn", "not checked: the config file is invalid (see above)")
    ref = settings.model or DEFAULT_ALIAS
    try:
        m, path = resolve(ref, download=False)
    except R1ChatError as e:
        if "not downloaded" in str(e):
            return Check(
                "model",
                "warn",
                f"{ref} is not downloaded; loading skipped",
                f"r1chat models pull {ref}  (or pass a local GGUF with --model PATH)",
            )
        return Check("model", "fail", str(e), "pass a valid GGUF with --model PATH")
    try:
        header = validate_gguf(path, m.arch)
    except R1ChatError as e:
        return Check(
            "model",
            "fail",
            str(e),
            f"r1chat models rm {ref}; r1chat models pull {ref}"
            if m.path is None
            else "pass a valid GGUF with --model PATH",
        )
    if not load:
        return Check("model", "ok", f"{ref}: {path} ({header.architecture}); loading skipped")
    from r1chat.engines.llama import LlamaEngine, LoadOptions
    from r1chat.hardware import plan_load

    try:
        plan = plan_load(header, settings)
        # A small context: this checks that the weights load, not how much context fits.
        opts = LoadOptions(
            n_ctx=min(plan.options.n_ctx or 2048, 2048),
            n_gpu_layers=plan.options.n_gpu_layers,
            flash_attn=plan.options.flash_attn,
            n_threads=settings.threads,
            kv_type=settings.kv_type,
        )
        t0 = time.perf_counter()
        engine = LlamaEngine(path, opts, header=header)
        took = time.perf_counter() - t0
        info = engine.info
        engine.close()
    except R1ChatError as e:
        return Check(
            "model",
            "fail",
            f"{ref}: {e}",
            "try --gpu-layers 0, or r1chat models rm/pull to fetch it again",
        )
    return Check(
        "model",
        "ok",
        f"{ref}: loads in {took:.1f} s ({info.backend},"
        f" {info.n_gpu_layers}/{info.n_layers} layers on the GPU)",
    )


def check_server(settings: Settings | None) -> Check | None:
    """The configured server (`--api-base`, `[engine] api_base`, R1CHAT_API_BASE): reachable,
    its models, how long a request takes. None when none is configured."""
    from r1chat.errors import R1ChatError

    if settings is None or not settings.api_base:
        return None
    from r1chat.engines.remote import host_of, normalize_base
    from r1chat.loading import load_remote

    try:
        where = host_of(normalize_base(settings.api_base))
        t0 = time.perf_counter()
        engine = load_remote(settings)
        took = time.perf_counter() - t0
        t1 = time.perf_counter()
        models = engine.models()
        latency = time.perf_counter() - t1
        engine.close()
    except R1ChatError as e:
        return Check(
            "server",
            "fail",
            str(e),
            "start the server, check --api-base / [engine] api_base, and the key in"
            f" ${settings.api_key_env}",
        )
    listed = ", ".join(models[:5]) + (" …" if len(models) > 5 else "")
    return Check(
        "server",
        "ok",
        f"{engine.kind.name} at {where}: model {engine.model} (of {listed});"
        f" connected in {took * 1000:.0f} ms, /v1/models in {latency * 1000:.0f} ms",
    )


def run_checks(
    load: bool = True, *, model: str | None = None, api_base: str | None = None
) -> list[Check]:
    """Every check; `model` and `api_base` as the flags of the other commands give them."""
    from r1chat.config import load_settings
    from r1chat.errors import R1ChatError

    settings: Settings | None
    try:
        settings = load_settings().with_flags(model=model, api_base=api_base)
    except R1ChatError:
        settings = None
    checks = [
        check_python(),
        check_packages(),
        *check_build_and_gpus(),
        *check_paths(),
        check_cache(),
    ]
    server = check_server(settings)
    if server is not None:
        return [*checks, server]  # the model is the server's: nothing to load here
    if any(c.name == "llama.cpp" and c.status == "fail" for c in checks):
        checks.append(Check("model", "warn", "not loaded: llama-cpp-python is broken"))
    else:
        checks.append(check_model(settings, load))
    return checks


def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    no_load: Annotated[
        bool, typer.Option("--no-load", help="Do not try loading the model")
    ] = False,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
) -> None:
    """Check Python, packages, llama.cpp's GPU support, GPUs, paths and the model (or the
    server): the one the other commands would use, or the one -m / --api-base names."""
    checks = run_checks(load=not no_load, model=model, api_base=api_base)
    failed = any(c.status == "fail" for c in checks)
    if json_out:
        out = {"ok": not failed, "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        for c in checks:
            sys.stdout.write(f"{c.status:<4}  {c.name:<11}  {c.detail}\n")
            if c.fix:
                sys.stdout.write(f"{'':<4}  {'':<11}  fix: {c.fix}\n")
    raise typer.Exit(1 if failed else 0)
