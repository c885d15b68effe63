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
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from r1chat.commands.options import ApiBaseOpt, ModelOpt
from r1chat.sanitize import sanitize

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.engines.remote import RemoteEngine

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


def check_grading(load: bool = True) -> Check:
    """Where votes and `eval` compare answers: worker processes with a hard limit, or this
    process (and why). `load`: one real comparison, which starts a worker."""
    import time

    from r1chat import answers

    if not load:
        return Check("grading", "ok", answers.grading_mode() + "; not tried (--no-load)")
    t0 = time.perf_counter()
    verdict = answers.compare("\\frac{1}{2}", "0.5")
    took = time.perf_counter() - t0
    mode = answers.grading_mode()
    if not verdict.equal:
        why = "ran out of time" if verdict.timed_out else "said they differ"
        return Check(
            "grading", "fail", f"{mode}: comparing 1/2 with 0.5 {why}", "reinstall math-verify"
        )
    detail = f"{mode}; first comparison {took:.1f} s"
    if mode.startswith("in this process"):
        return Check("grading", "warn", detail)
    return Check("grading", "ok", detail)


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


# A probe asks for so few tokens that it costs the server next to nothing; a reasoning field or a
# tag shows in its first events (the reading stops there, and closing the stream stops the server).
PROBE_TOKENS = 32
PROBE_QUESTION = "What is 2 + 2?"
# The field names, in the order the remote engine reads them (r1chat.engines.wire.chunk).
REASONING_FIELDS = ("reasoning_content", "reasoning")


def check_server(
    settings: Settings | None, *, probe: bool = True
) -> tuple[list[Check], dict[str, Any] | None] | None:
    """The configured server (`--api-base`, `[engine] api_base`, R1CHAT_API_BASE): reachable,
    its models, how long a request takes, then what it supports (one check each) and the same
    as fields for --json; `probe` sends it a request of a few tokens to see how the thinking
    comes. None when no server is configured; no fields when it cannot be reached."""
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
        try:
            t1 = time.perf_counter()
            models = engine.models()
            latency = time.perf_counter() - t1
        except R1ChatError:
            engine.close()
            raise
    except R1ChatError as e:
        failed = Check(
            "server",
            "fail",
            str(e),
            "start the server, check --api-base / [engine] api_base, and the key in"
            f" ${settings.api_key_env}",
        )
        return [failed], None
    try:
        listed = ", ".join(engine.shown(m) for m in models[:5]) + (" …" if len(models) > 5 else "")
        reached = Check(
            "server",
            "ok",
            f"{engine.kind.name} at {where}: model {engine.info.name} (of {listed});"
            f" connected in {took * 1000:.0f} ms, /v1/models in {latency * 1000:.0f} ms",
        )
        support, facts = server_support(engine)
        reasoning, how, error = probe_check(engine, settings.api_key_env, probe)
    finally:
        engine.close()
    facts["reasoning"] = how
    facts["probe"] = {"max_tokens": PROBE_TOKENS, "error": error} if probe else None
    return [reached, *support, reasoning], facts


def server_support(engine: RemoteEngine) -> tuple[list[Check], dict[str, Any]]:
    """What the server does for r1chat, as it said when the engine connected (`engine.kind`)."""
    kind = engine.kind
    name = kind.name
    context = Check("context", "ok", f"{kind.n_ctx:,} tokens" if kind.n_ctx else "not said")
    if kind.slots is None:
        parallel = Check("parallel", "ok", "not said")
    elif name == "llama_cpp.server":
        parallel = Check(
            "parallel", "ok", "1: it serves one request at a time (samples go one after another)"
        )
    else:
        plural = "request" if kind.slots == 1 else "requests"
        parallel = Check("parallel", "ok", f"{kind.slots} {plural} at once ({name}'s slots)")
    # Budget and answer now both end the thinking mid-reply: on the server itself, or by
    # cutting the stream and asking the server to continue; a server that can do neither stops.
    fix = "serve the model with llama-server or vLLM, which continue a reply"
    cannot = f"not available: {name} cannot continue a reply, so the reply stops there"
    budget_how: str | None
    if kind.budget_field:
        budget_how = "server"
        budget = Check("budget", "ok", f"on the server ({kind.budget_field})")
    elif kind.continues:
        budget_how = "cut_and_continue"
        budget = Check("budget", "ok", "r1chat cuts and continues")
    else:
        budget_how = None
        budget = Check("budget", "warn", cannot, fix)
    answer_how: str | None
    if kind.control:
        answer_how = "control_endpoint"
        answer = Check("answer now", "ok", "on the server (POST /v1/chat/completions/control)")
    elif kind.continues:
        answer_how = "cut_and_continue"
        answer = Check("answer now", "ok", "r1chat cuts and continues")
    else:
        answer_how = None
        answer = Check("answer now", "warn", cannot, fix)
    facts: dict[str, Any] = {
        "kind": name,
        "host": engine.host,
        "model": engine.info.name,
        "n_ctx": kind.n_ctx or None,
        "parallel_requests": kind.slots,
        "thinking_budget": budget_how,
        "budget_field": kind.budget_field,
        "answer_now": answer_how,
    }
    return [context, parallel, budget, answer], facts


def probe_check(
    engine: RemoteEngine, key_env: str, probe: bool
) -> tuple[Check, str | None, str | None]:
    """The "reasoning" check, how the thinking came (a --json value; None: not known) and why
    the probe failed (None: it did not)."""
    from r1chat.errors import R1ChatError

    if not probe:
        return Check("reasoning", "ok", "not probed (--no-load)"), None, None
    what = f"a probe request of at most {PROBE_TOKENS} tokens"
    try:
        how = probe_reasoning(engine, key_env)
    except R1ChatError as e:
        return Check("reasoning", "warn", f"{what} failed: {e}"), None, str(e)
    if how == "none":
        detail = (
            f"no thinking seen in {what}: no reasoning field, no <think> tag (the model may not"
            " think, or its </think> comes later)"
        )
    else:
        shown = {
            "reasoning_content": "reasoning_content field",
            "reasoning": "reasoning field",
            "inline": "inline <think> tags",
        }[how]
        if how == "inline" and engine.kind.template_thinks:
            shown += " (the template opens the thinking)"
        detail = f"{shown}, from {what}"
    return Check("reasoning", "ok", detail), how, None


def probe_reasoning(engine: RemoteEngine, key_env: str) -> str:
    """How the server sends the thinking: "reasoning_content" or "reasoning" (a field of its
    own), "inline" (`<think>` tags in the content) or "none" seen. The engine folds the two
    fields into one, so the probe reads the events itself; a failure is one R1ChatError line."""
    import httpx
    import httpx_sse

    from r1chat.engines import wire
    from r1chat.engines.remote import key_from_env
    from r1chat.errors import R1ChatError
    from r1chat.reasoning import CLOSE_TAG, OPEN_TAG

    def line(text: str) -> str:
        # Masked before it is cut, so no part of the key survives the cut; no lone surrogate
        # (which no terminal takes) nor escape sequence gets through.
        text = sanitize(" ".join(engine.mask(wire.text(text)).split()))
        return text if len(text) <= 200 else text[:199] + "…"

    key, _ = key_from_env(key_env)
    headers = {"Authorization": f"Bearer {key.value}"} if key else {}
    body = {
        "model": engine.model,
        "messages": [{"role": "user", "content": PROBE_QUESTION}],
        "stream": True,
        "max_tokens": PROBE_TOKENS,
    }
    timeout = httpx.Timeout(engine.timeout_s, connect=min(10.0, engine.timeout_s))
    content = ""
    try:
        with (
            httpx.Client(headers=headers, timeout=timeout, follow_redirects=True) as client,
            httpx_sse.connect_sse(
                client, "POST", engine.base + "/chat/completions", json=body
            ) as source,
        ):
            response = source.response
            if response.status_code != 200:
                reason = _error_text(response.read())
                raise R1ChatError(
                    f"the server refused it ({response.status_code}"
                    f"{': ' + line(reason) if reason else ''})"
                )
            for sse in source.iter_sse():
                data = sse.data.strip()
                if data == "[DONE]":
                    break
                if not data:
                    continue
                raw = json.loads(data)
                event = wire.chunk(raw)  # every field checked before one is read here
                if event.error is not None:
                    raise R1ChatError(f"the server failed: {line(event.error)}")
                field = _reasoning_field(raw)
                if field is not None:
                    return field
                content += "".join(t for k, t in event.pieces if k == "content")
                if OPEN_TAG in content or CLOSE_TAG in content:
                    return "inline"
    except httpx_sse.SSEError:
        raise R1ChatError("the server did not send an event stream") from None
    except httpx.ConnectTimeout:
        raise R1ChatError("timed out connecting") from None
    except httpx.TimeoutException:
        raise R1ChatError(f"the server sent nothing for {engine.timeout_s:g} s") from None
    except httpx.HTTPError as e:
        raise R1ChatError(f"the request failed: {line(str(e) or type(e).__name__)}") from None
    except wire.WireError as e:
        raise R1ChatError(f"the server sent an event r1chat cannot read: {e}") from None
    except (ValueError, RecursionError):
        raise R1ChatError("the server sent malformed JSON in its stream") from None
    # Content with no tag is thinking when the template opened it (llama-server shows its
    # template); any other server's could as well be an answer.
    return "inline" if content.strip() and engine.kind.template_thinks else "none"


def _reasoning_field(event: dict[str, Any]) -> str | None:
    """The reasoning field a (checked) event carries text in, if any."""
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        for name in REASONING_FIELDS:
            value = delta.get(name)
            if isinstance(value, str) and value:
                return name
    return None


def _error_text(body: bytes) -> str:
    """The message of an error response, whatever its shape (masked and cut by the caller)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace")[:2000]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    return str(err)[:2000]


def run_checks(
    load: bool = True, *, model: str | None = None, api_base: str | None = None
) -> list[Check]:
    """Every check; `model` and `api_base` as the flags of the other commands give them."""
    return run_doctor(load, model=model, api_base=api_base)[0]


def run_doctor(
    load: bool = True, *, model: str | None = None, api_base: str | None = None
) -> tuple[list[Check], dict[str, Any] | None]:
    """Every check, and what the server supports as --json fields (None: no server, or not
    reached). `load` False: no model loaded, no probe sent to a server."""
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
        check_grading(load),
    ]
    server = check_server(settings, probe=load)
    if server is not None:
        # The model is the server's: nothing to load here.
        return [*checks, *server[0]], server[1]
    if any(c.name == "llama.cpp" and c.status == "fail" for c in checks):
        checks.append(Check("model", "warn", "not loaded: llama-cpp-python is broken"))
    else:
        checks.append(check_model(settings, load))
    return checks, None


def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    no_load: Annotated[
        bool,
        typer.Option(
            "--no-load", help="Do not try loading the model (nor send a server a probe request)"
        ),
    ] = False,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
) -> None:
    """Check Python, packages, llama.cpp's GPU support, GPUs, paths and the model (or the
    server, with what it supports and how it sends the thinking): the one the other commands
    would use, or the one -m / --api-base names."""
    checks, server = run_doctor(load=not no_load, model=model, api_base=api_base)
    failed = any(c.status == "fail" for c in checks)
    if json_out:
        out: dict[str, Any] = {"ok": not failed, "checks": [asdict(c) for c in checks]}
        if server is not None:
            out["server"] = server
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        for c in checks:
            sys.stdout.write(f"{c.status:<4}  {c.name:<11}  {c.detail}\n")
            if c.fix:
                sys.stdout.write(f"{'':<4}  {'':<11}  fix: {c.fix}\n")
    raise typer.Exit(1 if failed else 0)
