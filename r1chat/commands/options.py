"""Options shared by the chat, `ask` and `bench`, with bounds from r1chat.sampling."""

from __future__ import annotations

from typing import Annotated

import typer

from r1chat.sampling import SamplingParams, limit

_D = SamplingParams()
# Conversation ids are SQLite integers: a larger number is no id (and SQLite cannot take it).
ID_RANGE: dict[str, int] = {"min": 1, "max": 2**63 - 1}

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="GGUF file path, alias (r1-7b, r1-1.5b, …) or REPO:FILE.gguf; default "
        "r1-7b [env R1CHAT_MODEL]",
    ),
]
ApiBaseOpt = Annotated[
    str | None,
    typer.Option(
        "--api-base",
        help="An OpenAI-compatible server (vLLM, llama-server, Ollama), e.g."
        " http://host:8000/v1; --model then names its model; the key comes from"
        " $R1CHAT_API_KEY [env R1CHAT_API_BASE]",
    ),
]
TempOpt = Annotated[
    float | None,
    typer.Option(
        "--temperature",
        "-t",
        help=f"Sampling temperature (model card: {_D.temperature})",
        **limit("temperature"),
    ),
]
TopPOpt = Annotated[
    float | None, typer.Option("--top-p", help=f"Nucleus sampling ({_D.top_p})", **limit("top_p"))
]
MaxTokOpt = Annotated[
    int | None,
    typer.Option("--max-tokens", help=f"Most new tokens ({_D.max_tokens})", **limit("max_tokens")),
]
CtxOpt = Annotated[
    int | None,
    typer.Option(
        "--ctx", help="Context size in tokens (32768 with a GPU, 8192 without)", **limit("ctx")
    ),
]
GpuOpt = Annotated[
    int | None,
    typer.Option(
        "--gpu-layers",
        help="Layers to offload (default: all when the build supports a GPU)",
        **limit("gpu_layers"),
    ),
]
ThinkBudgetOpt = Annotated[
    int | None,
    typer.Option(
        "--think-budget",
        help="End the thinking after this many tokens and answer (0: no thinking)"
        " [env R1CHAT_THINK_BUDGET]",
        **limit("think_budget"),
    ),
]
ThinkMinOpt = Annotated[
    int | None,
    typer.Option(
        "--think-min",
        help="Think at least this many tokens: an earlier end of the thinking becomes"
        " 'Wait' [env R1CHAT_THINK_MIN]",
        **limit("think_min"),
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Fixed seed (default: fresh per request)", **limit("seed")),
]
SamplesOpt = Annotated[
    int | None,
    typer.Option(
        "--samples",
        "-k",
        help="Sample k replies at once and vote over their \\boxed{} answers (1)"
        " [env R1CHAT_SAMPLES]",
        **limit("samples"),
    ),
]
TopKOpt = Annotated[
    int | None, typer.Option("--top-k", help=f"Top-k cut ({_D.top_k})", **limit("top_k"))
]
