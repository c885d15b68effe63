"""`r1chat bench`: how fast this machine loads and runs a model, measured as llama-bench does.

Load time, time to first token and prefill speed on a prompt of a fixed length, decode speed
over a fixed number of tokens with the end-of-sequence token ignored, and peak memory. The prompt
is ordinary English text tokenized by the model's own tokenizer, inside its own chat template.
No UI code here: the command in r1chat.commands.bench prints what `run_bench` returns.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1chat.engines.base import Done, Token
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage
from r1chat.sampling import SamplingParams

if TYPE_CHECKING:
    from r1chat.gguf_header import GGUFHeader

# Prose rather than random token ids: a prompt of real words tokenizes (and attends) like the
# text users send.
PASSAGE = (
    "A careful reader checks each step of an argument before accepting its conclusion. Suppose a "
    "train leaves the station at nine in the morning and travels at sixty miles an hour, while a "
    "second train leaves two hours later at ninety miles an hour along the same track. The second "
    "train catches the first when both have covered the same distance, so we write an equation "
    "for each and solve for the time. Prime numbers, sorting algorithms, the boiling point of "
    "water at altitude, the rules of chess and the history of the printing press are all fair "
    "questions; the model should think them through, state its assumptions, and then answer. "
)

# Room for a BOS, the chat template's markers and a few tokens of slack.
CTX_SLACK = 64


def filler_text(n_words: int) -> str:
    words = PASSAGE.split()
    reps = n_words // len(words) + 1
    return " ".join((words * reps)[:n_words])


def question_of_length(engine: LlamaEngine, n_tokens: int) -> str:
    """A question whose chat prompt is as close to `n_tokens` tokens as whole words allow."""
    lo, hi = 1, max(2, n_tokens)
    while lo < hi:  # the largest word count whose prompt fits
        mid = (lo + hi + 1) // 2
        if engine.count_tokens([ChatMessage("user", filler_text(mid))]) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return filler_text(lo)


def build_prompt(engine: LlamaEngine, n_tokens: int) -> list[int]:
    """Exactly `n_tokens` prompt tokens: the chat template around a user turn of prose."""
    marker = "\u2063FILL\u2063"
    rendered = engine.render([ChatMessage("user", marker)])
    before, sep, after = rendered.partition(marker)
    if not sep:  # a template that mangles the content: prose alone
        before, after = "", ""
    head = engine.with_bos(engine.tokenize(before) if before else [])
    tail = engine.tokenize(after) if after else []
    need = n_tokens - len(head) - len(tail)
    if need < 1:
        raise R1ChatError(
            f"a prompt of {n_tokens} tokens is too short for this chat template"
            f" (it needs at least {len(head) + len(tail) + 1})",
            2,
        )
    body: list[int] = []
    words = 64
    while len(body) < need:
        body = engine.tokenize(" " + filler_text(words), special=False)
        words *= 2
    return head + body[:need] + tail


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def gpu_used_mb() -> float | None:
    """Memory in use on the NVIDIA GPUs (all processes), or None when none can be queried."""
    from r1chat.hardware import detect_gpus

    gpus = [g for g in detect_gpus() if g.vendor == "nvidia"]
    if not gpus:
        return None
    return sum(g.total_bytes - g.free_bytes for g in gpus) / (1024 * 1024)


def _loaded(engine: LlamaEngine, options: LoadOptions) -> dict[str, Any]:
    """What every benchmark result says of the model as loaded."""
    info = engine.info
    return {
        "model": info.name,
        "path": info.path,
        "backend": info.backend,
        "n_gpu_layers": info.n_gpu_layers,
        "n_layers": info.n_layers,
        "n_ctx": info.n_ctx,
        "n_threads": options.n_threads or os.cpu_count() or 1,
    }


def required_ctx(prompt_tokens: int, tokens: int) -> int:
    return prompt_tokens + tokens + CTX_SLACK


def run_bench(
    model_path: str | Path,
    options: LoadOptions,
    *,
    tokens: int = 1024,
    prompt_tokens: int = 512,
    name: str | None = None,
    header: GGUFHeader | None = None,
    seed: int = 42,
    warmup: bool = True,
) -> dict[str, Any]:
    """Load the model, prefill `prompt_tokens`, decode `tokens`; return the figures as a dict."""
    if tokens < 2:
        raise R1ChatError("--tokens must be at least 2", 2)
    need = required_ctx(prompt_tokens, tokens)
    if options.n_ctx is not None and options.n_ctx < need - CTX_SLACK + 1:
        raise R1ChatError(
            f"the context ({options.n_ctx} tokens) cannot hold a {prompt_tokens}"
            f"-token prompt and {tokens} new tokens: pass --ctx {need} or more",
            2,
        )
    gpu_before = gpu_used_mb()
    t0 = time.perf_counter()
    engine = LlamaEngine(model_path, options, name=name, header=header)
    load_s = time.perf_counter() - t0
    try:
        if engine.info.n_ctx < need - CTX_SLACK + 1:
            raise R1ChatError(
                f"the model's context ({engine.info.n_ctx} tokens) cannot hold a"
                f" {prompt_tokens}-token prompt and {tokens} new tokens",
                2,
            )
        prompt = build_prompt(engine, prompt_tokens)
        params = SamplingParams(max_tokens=tokens, seed=seed, ignore_eos=True)
        if warmup:
            # As llama-bench does: a short run first, so one-time set-up (GPU kernels, buffers)
            # is not billed to the prompt. It starts with a different token, so it shares no
            # KV-cache prefix with the measured prompt.
            warm = [t for t in prompt[1:9] if t != prompt[0]] or [prompt[-1]]
            for _ in engine.stream_tokens(
                warm, SamplingParams(max_tokens=2, seed=seed, ignore_eos=True)
            ):
                pass
        produced = 0
        stats = None
        for ev in engine.stream_tokens(prompt, params):
            if isinstance(ev, Token):
                if ev.id >= 0:
                    produced += 1
            elif isinstance(ev, Done):
                stats = ev.stats
        assert stats is not None
        if stats.evaluated_tokens != len(prompt):
            raise R1ChatError(
                "the prompt was partly served from the KV cache; the figures would be wrong", 1
            )
        gpu_after = gpu_used_mb()
        return {
            **_loaded(engine, options),
            "prompt_tokens": len(prompt),
            "tokens": produced,
            "load_s": load_s,
            "ttft_s": stats.ttft_s,
            "prefill_tok_s": stats.prefill_tok_s,
            "decode_tok_s": stats.decode_tok_s,
            "decode_s": stats.total_s - stats.ttft_s,
            "peak_rss_mb": peak_rss_mb(),
            "gpu_mem_mb": (
                gpu_after - gpu_before if gpu_after is not None and gpu_before is not None else None
            ),
            "warmup": warmup,
        }
    finally:
        engine.close()


def run_remote_bench(
    engine: Any, *, tokens: int = 1024, prompt_tokens: int = 512
) -> dict[str, Any]:
    """Time to first token and decode speed through a server (`r1chat.engines.remote.RemoteEngine`):
    a question of about `prompt_tokens` tokens, `tokens` new ones (end of sequence ignored where
    the server allows it, as vLLM and llama-server do). The server's own figures may differ:
    these include the network and the client, as a user sees them.

    A server may stop before `tokens` (llama_cpp.server takes no `ignore_eos`; a server caps a
    reply at its context): `tokens_asked` and `tokens_got` say so, and `shortfall` words it."""
    if tokens < 2:
        raise R1ChatError("--tokens must be at least 2", 2)
    # About 1.3 tokens a word for this English passage; the server counts the real figure.
    question = filler_text(max(1, prompt_tokens * 3 // 4))
    params = SamplingParams(max_tokens=tokens, seed=42, ignore_eos=True)
    stats = None
    streamed = 0
    for ev in engine.stream([ChatMessage("user", question)], params):
        if isinstance(ev, Token):
            # Held text (not yet known to be thinking or answer) was decoded all the same;
            # r1chat's own markers and forced text were not.
            if ev.id >= 0 and not ev.forced:
                streamed += 1
        elif isinstance(ev, Done):
            stats = ev.stats
    assert stats is not None
    # The server's usage count when it sends one: a streamed event may carry several tokens.
    got = stats.completion_tokens or streamed
    decode_s = stats.total_s - stats.ttft_s
    decode_tok_s = (got - 1) / decode_s if got > 1 and decode_s > 0 else stats.decode_tok_s
    info = engine.info
    return {
        "model": info.name,
        "path": info.path,
        "backend": info.backend,
        "n_ctx": info.n_ctx or None,
        "prompt_tokens": stats.prompt_tokens or None,
        "tokens": got,
        "tokens_asked": tokens,
        "tokens_got": got,
        "tokens_streamed": streamed,
        "finish_reason": stats.finish_reason,
        "ttft_s": stats.ttft_s,
        "decode_tok_s": decode_tok_s,
        "decode_s": decode_s,
        "peak_rss_mb": peak_rss_mb(),
    }


def shortfall(result: dict[str, Any]) -> str | None:
    """One line when a run decoded another number of tokens than it asked for: its speed is
    then measured on what came, which a reader comparing runs must know. None when they match."""
    asked, got = result.get("tokens_asked"), result.get("tokens_got")
    if asked is None or got is None or asked == got:
        return None
    on = f"its speed is measured on {got:,}"
    if got > asked:
        return f"the server counted {got:,} tokens for the {asked:,} asked: {on}"
    why = {
        # It ended the reply itself: the end of sequence (ignore_eos not taken) or a stop string.
        "stop": " (it ended the reply: it may not take ignore_eos)",
        "length": " (it capped the reply: its context or a token limit of its own)",
    }.get(result.get("finish_reason") or "", "")
    return f"the server stopped after {got:,} of {asked:,} tokens{why}: {on}"


def run_samples_bench(
    model_path: str | Path,
    options: LoadOptions,
    *,
    k: int,
    tokens: int = 256,
    prompt_tokens: int = 512,
    name: str | None = None,
    header: GGUFHeader | None = None,
    seed: int = 42,
) -> dict[str, Any]:
    """k sequences decoded together (r1chat.engines.batch), `tokens` each after one shared
    prompt: `decode_tok_s` is the aggregate over all k. The prompt is evaluated once."""
    from r1chat.engines.base import BatchDone

    if tokens < 2:
        raise R1ChatError("--tokens must be at least 2", 2)
    t0 = time.perf_counter()
    engine = LlamaEngine(model_path, options, name=name, header=header)
    load_s = time.perf_counter() - t0
    try:
        question = question_of_length(engine, prompt_tokens)
        params = SamplingParams(max_tokens=tokens, seed=seed, ignore_eos=True)
        done = [
            ev
            for _, ev in engine.stream_many([ChatMessage("user", question)], params, k)
            if isinstance(ev, BatchDone)
        ]
        stats = done[-1].stats
        return {
            **_loaded(engine, options),
            "n_ctx": stats.n_ctx,  # the samples' own context
            "samples": k,
            "prompt_tokens": stats.prompt_tokens,
            "tokens": stats.completion_tokens,
            "load_s": load_s,
            "ttft_s": stats.ttft_s,
            "decode_tok_s": stats.decode_tok_s,
            "decode_tok_s_per_sample": stats.decode_tok_s / k,
            "decode_s": stats.total_s - stats.ttft_s,
            "prompt_evals": stats.prompt_evals,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        engine.close()
