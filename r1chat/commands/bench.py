"""`r1chat bench`: load time, time to first token, prefill and decode speed, peak memory."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from r1chat.commands.options import ApiBaseOpt
from r1chat.sampling import limit

TokensOpt = Annotated[
    int,
    typer.Option(
        "--tokens",
        "-n",
        help="Tokens to decode, end of sequence ignored (as llama-bench does)",
        min=2,
    ),
]
PromptOpt = Annotated[
    int,
    typer.Option(
        "--prompt-tokens",
        "-p",
        help="Prompt length in tokens for time to first token and prefill speed",
        min=16,
    ),
]


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key.endswith("_s") and not key.endswith("tok_s"):
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if key.endswith("tok_s"):
        return f"{value:,.1f} tok/s"
    if key.endswith("_mb"):
        return f"{value:,.0f} MiB"
    return f"{value:,}" if isinstance(value, int) else str(value)


ROWS = (
    ("model", "model"),
    ("backend", "backend"),
    ("n_gpu_layers", "GPU layers"),
    ("n_ctx", "context"),
    ("n_threads", "threads"),
    ("load_s", "load"),
    ("prompt_tokens", "prompt tokens"),
    ("ttft_s", "time to first token"),
    ("prefill_tok_s", "prefill"),
    ("tokens", "decoded tokens"),
    ("samples", "samples decoded together"),
    ("decode_tok_s", "decode"),
    ("peak_rss_mb", "peak RSS"),
    ("gpu_mem_mb", "GPU memory (delta)"),
)


def _table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text("r1chat bench"), show_header=False)
    table.add_column(Text("what"))
    table.add_column(Text("value"), justify="right")
    for key, label in ROWS:
        value = _fmt(key, result.get(key))
        if key == "tokens" and "tokens_asked" in result:
            # A server may stop short of what was asked: both numbers, so a short run shows.
            value = f"asked {result['tokens_asked']:,}, got {result['tokens_got']:,}"
        # Plain Text cells: the model name comes from the GGUF file and is not markup.
        table.add_row(Text(label), Text(value))
    Console().print(table)


def bench(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="GGUF file path, alias or "
            "REPO:FILE.gguf (must be downloaded already) [env R1CHAT_MODEL]",
        ),
    ] = None,
    tokens: TokensOpt = 1024,
    prompt_tokens: PromptOpt = 512,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ctx: Annotated[
        int | None,
        typer.Option("--ctx", help="Context size (default: prompt + tokens + 64)", min=64),
    ] = None,
    gpu_layers: Annotated[
        int | None,
        typer.Option("--gpu-layers", help="Layers to offload (default: all that fit)", min=0),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: all cores)", min=1)
    ] = None,
    api_base: ApiBaseOpt = None,
    samples: Annotated[
        int,
        typer.Option(
            "--samples",
            "-k",
            **limit("samples"),
            help="Decode k sequences together; decode speed is their aggregate",
        ),
    ] = 1,
) -> None:
    """Measure load time, time to first token, prefill and decode speed on this machine."""
    from r1chat.commands.errors import user_errors

    with user_errors():
        if api_base:
            result = _run_remote(api_base, model, tokens, prompt_tokens)
        elif samples > 1:
            result = _run_samples(model, tokens, prompt_tokens, samples, gpu_layers, threads)
        else:
            result = _run(model, tokens, prompt_tokens, ctx, gpu_layers, threads, quiet=json_out)
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _table(result)
    from r1chat.bench import shortfall

    short = shortfall(result)
    if short:
        # On stderr, with --json too: the figures stand, but not over the tokens asked.
        sys.stderr.write(f"r1chat: warning: {short}\n")


def _run_remote(
    api_base: str, model: str | None, tokens: int, prompt_tokens: int
) -> dict[str, Any]:
    from r1chat.bench import run_remote_bench
    from r1chat.config import load_settings
    from r1chat.loading import load_remote

    settings = load_settings().with_flags(model=model, api_base=api_base)
    engine = load_remote(settings)
    try:
        return run_remote_bench(engine, tokens=tokens, prompt_tokens=prompt_tokens)
    finally:
        engine.close()


def _run_samples(
    model: str | None,
    tokens: int,
    prompt_tokens: int,
    k: int,
    gpu_layers: int | None,
    threads: int | None,
) -> dict[str, Any]:
    from r1chat.bench import run_samples_bench
    from r1chat.config import load_settings
    from r1chat.hardware import plan_load
    from r1chat.loading import find_model

    settings = load_settings().with_flags(
        model=model, ctx=512, gpu_layers=gpu_layers, threads=threads
    )
    m = find_model(settings.model, download=False)
    # The engine's own context stays small: the k sequences get a context of their own.
    opts = plan_load(m.header, settings).options
    return run_samples_bench(
        m.path, opts, k=k, tokens=tokens, prompt_tokens=prompt_tokens, name=m.name, header=m.header
    )


def _run(
    model: str | None,
    tokens: int,
    prompt_tokens: int,
    ctx: int | None,
    gpu_layers: int | None,
    threads: int | None,
    *,
    quiet: bool,
) -> dict[str, Any]:
    from r1chat.bench import required_ctx, run_bench
    from r1chat.config import load_settings
    from r1chat.hardware import plan_load
    from r1chat.loading import find_model

    need = required_ctx(prompt_tokens, tokens)
    settings = load_settings().with_flags(
        model=model, ctx=ctx or need, gpu_layers=gpu_layers, threads=threads
    )
    # No download from a benchmark: a missing model is an error that says how to pull it.
    m = find_model(settings.model, download=False)
    opts = plan_load(m.header, settings).options
    if quiet or not sys.stderr.isatty():
        return run_bench(
            m.path, opts, tokens=tokens, prompt_tokens=prompt_tokens, name=m.name, header=m.header
        )
    from rich.console import Console
    from rich.text import Text

    shown = m.name or m.path.name
    what = Text(f"Benchmarking {shown}: {prompt_tokens}-token prompt, {tokens} tokens…")
    with Console(stderr=True).status(what):
        return run_bench(
            m.path, opts, tokens=tokens, prompt_tokens=prompt_tokens, name=m.name, header=m.header
        )
