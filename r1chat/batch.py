"""k samples of one prompt, decoded side by side in one llama.cpp context.

pass@1 estimates and majority voting (self-consistency) need k independent reasoning chains for
the same question. Run one after another they cost k times one reply. Decoding is memory-bound:
each step streams every weight once, whether it computes one token or eight, so on a GPU (and to
a lesser degree on a CPU) k sequences decoded in one batch cost little more than one.

The prompt is evaluated once, on sequence 0, and its KV cells are shared with sequences 1..k-1
through `llama_memory_seq_cp` in a unified KV cache: the prompt costs its prefill and its cells
once, not k times. Each step then decodes one token of every live sequence in a single
`llama_decode`. Every sequence has its own sampler chain and seed, so sample i is what a single
run with seed `seed + i` would write.

The batch runs in a context of its own, made from the engine's loaded model and freed at the end:
the engine's context and its KV cache (the chat's prefix reuse) are left as they were.
"""

from __future__ import annotations

import codecs
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from r1chat.engine import FinishReason, LlamaEngine, last_log_error
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage
from r1chat.reasoning import Kind, ThinkSplitter, extract_boxed
from r1chat.sampling import SamplingParams

# llama.cpp's LLAMA_MAX_SEQ: a sequence id must be below it.
MAX_SAMPLES = 256
# Cells beyond prompt + k * max_tokens. Not needed for correctness (each sequence decodes at most
# max_tokens - 1 tokens, and a unified cache places a step's tokens in any free cells), only a
# margin; llama.cpp rounds the context up to a multiple of 256 in any case.
CTX_SLACK = 16
CTX_ROUND = 256


@dataclass
class Sample:
    index: int
    seed: int
    thinking: str
    answer: str
    boxed: str | None
    finish_reason: FinishReason
    thinking_tokens: int
    answer_tokens: int

    @property
    def completion_tokens(self) -> int:
        return self.thinking_tokens + self.answer_tokens


@dataclass(frozen=True, slots=True)
class SampleProgress:
    """New text of sample `index`, with its token counts so far."""

    index: int
    kind: Kind
    text: str
    thinking_tokens: int
    answer_tokens: int


@dataclass
class BatchStats:
    k: int
    prompt_tokens: int
    completion_tokens: int = 0  # all samples together
    ttft_s: float = 0.0  # from the call to the first sampled token (context, prefill included)
    decode_tok_s: float = 0.0  # all sequences together, after the first token of each
    total_s: float = 0.0
    prompt_evals: int = 0  # times the prompt went through the model: 1 unless stopped during it
    n_ctx: int = 0  # the batch context's size in tokens


class _Seq:
    """One sequence's decoding state; plain slots, touched once per token."""

    __slots__ = (
        "answer",
        "decoder",
        "finish",
        "id",
        "n",
        "n_answer",
        "n_think",
        "sampler",
        "seed",
        "splitter",
        "think",
    )

    def __init__(self, seq_id: int, seed: int, sampler: Any, in_think: bool) -> None:
        self.id = seq_id
        self.seed = seed
        self.sampler = sampler
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.splitter = ThinkSplitter(in_think=in_think)
        self.think: list[str] = []
        self.answer: list[str] = []
        self.n = 0
        self.n_think = 0
        self.n_answer = 0
        self.finish: FinishReason | None = None

    def result(self) -> Sample:
        answer = "".join(self.answer)
        return Sample(
            index=self.id,
            seed=self.seed,
            thinking="".join(self.think),
            answer=answer,
            boxed=extract_boxed(answer),
            finish_reason=self.finish or "cancelled",
            thinking_tokens=self.n_think,
            answer_tokens=self.n_answer,
        )


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def _samples(k: int) -> str:
    return f"{k:,} sample" if k == 1 else f"{k:,} samples"


def _what_fits(prompt: int, k: int, max_tokens: int, room: int) -> str:
    """'try --samples K or --max-tokens N' for a context of `room` tokens."""
    free = room - prompt
    tries = []
    if free // max_tokens >= 1:
        tries.append(f"--samples {free // max_tokens:,}")
    if free // k >= 1:
        tries.append(f"--max-tokens {free // k:,}")
    if not tries:
        return f"the prompt alone takes {prompt:,} of {room:,} tokens"
    return "try " + " or ".join(tries)


def context_size(
    prompt: int, k: int, max_tokens: int, n_ctx_train: int, ctx_tokens: int | None = None
) -> int:
    """The batch context's size in tokens, or R1ChatError (exit 2) saying what would fit.

    With a unified KV cache the prompt's cells are shared and each sequence adds at most
    `max_tokens`: prompt + k * max_tokens cells, whatever k.
    """
    need = prompt + k * max_tokens
    head = f"{_samples(k)} of {max_tokens:,} tokens after a {prompt:,}-token prompt"
    # Policy, not a llama.cpp limit: no position goes past prompt + max_tokens, but a context
    # larger than the model was trained for is a memory size no one planned for.
    limit = n_ctx_train if n_ctx_train > 0 else None
    if ctx_tokens is not None:
        if limit is not None and ctx_tokens > limit:
            raise R1ChatError(
                f"a batch context of {ctx_tokens:,} tokens is more than the model takes"
                f" ({limit:,}): ask for {limit:,} or less",
                2,
            )
        if need > ctx_tokens:
            fits = _what_fits(prompt, k, max_tokens, ctx_tokens)
            raise R1ChatError(
                f"{head} need a context of {need:,} tokens; the one asked for holds"
                f" {ctx_tokens:,}: {fits}",
                2,
            )
        return ctx_tokens
    if limit is not None and need > limit:
        fits = _what_fits(prompt, k, max_tokens, limit)
        raise R1ChatError(
            f"{head} need a context of {need:,} tokens; the model takes {limit:,}: {fits}", 2
        )
    n_ctx = _round_up(need + CTX_SLACK, CTX_ROUND)
    return min(n_ctx, limit) if limit is not None else n_ctx


def _new_context(engine: LlamaEngine, n_ctx: int, k: int, prompt: int, max_tokens: int) -> Any:
    ll = engine._ll
    cparams = ll.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_seq_max = k
    # One pool of cells for all sequences: seq_cp then marks the prompt's cells as belonging to
    # every sequence instead of copying them into k separate streams.
    cparams.kv_unified = True
    # One ubatch must hold a whole step (k tokens); 512 at least for the prompt.
    n_batch = max(k, min(512, n_ctx))
    cparams.n_batch = cparams.n_ubatch = n_batch
    # The engine's own thread count (its --threads), so both contexts behave alike.
    threads = int(ll.llama_n_threads(engine._ctx)) or os.cpu_count() or 1
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.flash_attn_type = (
        ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if engine.info.n_gpu_layers
        else ll.LLAMA_FLASH_ATTN_TYPE_AUTO
    )
    cparams.type_k = cparams.type_v = ll.GGML_TYPE_F16
    cparams.no_perf = True
    ctx = ll.llama_init_from_model(engine._model, cparams)
    if not ctx:
        why = last_log_error() or "out of memory?"
        fits = _what_fits(prompt, k, max_tokens, n_ctx // 2)
        raise R1ChatError(
            f"could not create a context of {n_ctx:,} tokens for {_samples(k)} ({why}): {fits}",
            2,
        )
    return ctx


def sample_many(
    engine: LlamaEngine,
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    *,
    cancel: threading.Event | None = None,
    on_progress: Callable[[SampleProgress], None] | None = None,
    ctx_tokens: int | None = None,
) -> tuple[list[Sample], BatchStats]:
    """k replies to `messages`, decoded together; see the module's docstring.

    Sample i uses seed `params.seed + i` when a seed is given, else a fresh random one.
    `on_progress` is called from this thread for each new piece of text. When `cancel` is set
    every unfinished sample ends "cancelled" with the text it has so far.
    """
    if not 1 <= k <= MAX_SAMPLES:
        raise R1ChatError(f"the number of samples must be from 1 to {MAX_SAMPLES}, not {k}", 2)
    if engine._ctx is None or engine._model is None:
        raise R1ChatError("the model is closed")
    t0 = time.perf_counter()
    prompt = engine.prompt_tokens(messages)
    n_prompt = len(prompt)
    max_tokens = params.max_tokens
    n_ctx = context_size(n_prompt, k, max_tokens, engine.info.n_ctx_train, ctx_tokens)
    if params.seed is not None:
        seeds = [params.seed + i for i in range(k)]
    else:
        seeds = random.SystemRandom().sample(range(2**31), k)
    stats = BatchStats(k=k, prompt_tokens=n_prompt)

    ll = engine._ll
    ctx = _new_context(engine, n_ctx, k, n_prompt, max_tokens)
    stats.n_ctx = int(ll.llama_n_ctx(ctx))
    n_batch = int(ll.llama_n_batch(ctx))
    batch = ll.llama_batch_init(max(n_batch, k), 0, 1)
    in_think = engine.info.thinks
    seqs = [_Seq(i, seeds[i], engine._make_sampler(params, seeds[i]), in_think) for i in range(k)]
    try:
        last = _prefill(ll, ctx, batch, prompt, n_batch, cancel)
        if last < 0:
            for s in seqs:
                s.finish = "cancelled"
        else:
            stats.prompt_evals = 1
            mem = ll.llama_get_memory(ctx)
            for s in seqs[1:]:
                ll.llama_memory_seq_cp(mem, 0, s.id, -1, -1)
            t_first = _decode_all(
                engine, ctx, mem, batch, seqs, n_prompt, last, params, cancel, on_progress
            )
            t_end = time.perf_counter()
            stats.ttft_s = t_first - t0
            decoded = sum(s.n for s in seqs)
            started = sum(1 for s in seqs if s.n)
            if decoded > started:
                stats.decode_tok_s = (decoded - started) / max(t_end - t_first, 1e-9)
    finally:
        for s in seqs:
            ll.llama_sampler_free(s.sampler)
        ll.llama_batch_free(batch)
        ll.llama_free(ctx)
    samples = [s.result() for s in seqs]
    stats.completion_tokens = sum(s.completion_tokens for s in samples)
    stats.total_s = time.perf_counter() - t0
    if not stats.ttft_s:
        stats.ttft_s = stats.total_s
    return samples, stats


def _prefill(
    ll: Any,
    ctx: Any,
    batch: Any,
    prompt: list[int],
    n_batch: int,
    cancel: threading.Event | None,
) -> int:
    """Evaluate `prompt` on sequence 0; the batch index of its last token's logits, or -1 when
    stopped."""
    # A long prompt takes seconds per batch on a CPU: a stop request aborts it mid-batch. Only
    # here: llama.cpp calls the callback between graph nodes, far too often for every step.
    abort = None
    if cancel is not None:
        abort = ll.ggml_abort_callback(lambda _data: cancel.is_set())
        ll.llama_set_abort_callback(ctx, abort, None)
    try:
        last = 0
        for start in range(0, len(prompt), n_batch):
            chunk = prompt[start : start + n_batch]
            for j, tok in enumerate(chunk):
                batch.token[j] = tok
                batch.pos[j] = start + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = 0
            last = len(chunk) - 1
            batch.logits[last] = 1
            batch.n_tokens = len(chunk)
            rc = 2 if cancel is not None and cancel.is_set() else ll.llama_decode(ctx, batch)
            if rc == 2:
                return -1
            if rc != 0:
                raise R1ChatError(
                    f"llama.cpp could not evaluate the prompt (llama_decode returned {rc})"
                )
        return last
    finally:
        if abort is not None:
            ll.llama_set_abort_callback(ctx, ll.ggml_abort_callback(), None)


def _decode_all(
    engine: LlamaEngine,
    ctx: Any,
    mem: Any,
    batch: Any,
    seqs: list[_Seq],
    n_prompt: int,
    last: int,
    params: SamplingParams,
    cancel: threading.Event | None,
    on_progress: Callable[[SampleProgress], None] | None,
) -> float:
    """Decode every sequence to its end; the time the first token was sampled."""
    ll = engine._ll
    vocab = engine._vocab
    is_eog = ll.llama_vocab_is_eog
    sample = ll.llama_sampler_sample
    decode = ll.llama_decode
    pieces = engine._pieces
    eog = engine._eog
    budget = params.max_tokens
    ignore_eos = params.ignore_eos
    tokens, positions, seq_ids = batch.token, batch.pos, batch.seq_id
    live = list(seqs)
    for j, s in enumerate(live):
        batch.n_seq_id[j] = 1
        batch.seq_id[j][0] = s.id
        batch.logits[j] = 1
    # Every sequence samples its first token from the prompt's last logits; after that sequence
    # j of the step's batch reads row j.
    rows = [last] * len(live)
    first = True
    pos = n_prompt
    t_first = 0.0
    while live:
        ended = False
        for j, s in enumerate(live):
            tok = sample(s.sampler, ctx, rows[j])
            end = eog.get(tok)
            if end is None:
                end = eog[tok] = bool(is_eog(vocab, tok))
            if end and not ignore_eos:
                s.finish = "stop"
                ended = True
                continue
            s.n += 1
            piece = pieces.get(tok)
            if piece is None:
                piece = engine._piece(tok)
            # A token counts as thinking while the splitter is inside <think>, the one that
            # closes it included (as in r1chat.turn).
            if s.splitter.in_think:
                s.n_think += 1
            else:
                s.n_answer += 1
            text = s.decoder.decode(piece)
            if text:
                _feed(s, s.splitter.feed(text), on_progress)
            if s.n >= budget:
                s.finish = "length"
                ended = True
            tokens[j] = tok
        if not t_first:
            t_first = time.perf_counter()
        if cancel is not None and cancel.is_set():
            for s in live:
                if s.finish is None:
                    s.finish = "cancelled"
            break
        if ended:
            # A finished sequence leaves the batch and frees its own cells (the prompt's stay
            # for the others); the rest close up, keeping their sampled tokens in order.
            keep: list[_Seq] = []
            for j, s in enumerate(live):
                if s.finish is None:
                    tokens[len(keep)] = tokens[j]
                    keep.append(s)
                else:
                    ll.llama_memory_seq_rm(mem, s.id, -1, -1)
            live = keep
            for j, s in enumerate(live):
                seq_ids[j][0] = s.id
            if not live:
                break
        n = len(live)
        if first or len(rows) != n:
            rows = list(range(n))
            first = False
        for j in range(n):
            positions[j] = pos
        batch.n_tokens = n
        if decode(ctx, batch) != 0:
            # No room left in the cache (the sizing should prevent it): end as the engine does.
            for s in live:
                s.finish = "length"
            break
        pos += 1
    for s in seqs:
        tail = s.decoder.decode(b"", final=True)
        parts = s.splitter.feed(tail) if tail else []
        _feed(s, parts + s.splitter.close(), on_progress)
    return t_first or time.perf_counter()


def _feed(
    s: _Seq,
    parts: list[tuple[Kind, str]],
    on_progress: Callable[[SampleProgress], None] | None,
) -> None:
    for kind, text in parts:
        (s.think if kind == "think" else s.answer).append(text)
        if on_progress is not None:
            on_progress(SampleProgress(s.id, kind, text, s.n_think, s.n_answer))
