"""k samples of one prompt, decoded side by side in one llama.cpp context.

pass@1 estimates and majority voting (self-consistency) need k independent reasoning chains for
the same question. Run one after another they cost k times one reply. Decoding is memory-bound:
each step streams every weight once, whether it computes one token or eight, so on a GPU (and to
a lesser degree on a CPU) k sequences decoded in one batch cost little more than one.

The prompt is evaluated once, on sequence 0, and its KV cells are shared with sequences 1..k-1
through `llama_memory_seq_cp` in a unified KV cache: the prompt costs its prefill and its cells
once, not k times. Each step then decodes what every live sequence feeds (one sampled token, or
the text r1chat writes into its thinking) in a single `llama_decode`. Every sequence has its own
sampler chain and seed, so sample i is what a single run with seed `seed + i` would write, and
its own per-token step (r1chat.engines.step), so each sample obeys the thinking control on its
own: one may reach its budget while another closes its thinking early.

The batch runs in a context of its own, made from the engine's loaded model and freed at the end:
the engine's context and its KV cache (the chat's prefix reuse) are left as they were.

A sample's Done comes as soon as it ends, not with the others at the end: a vote can count it
while the rest run, and stop them (by `cancel`) once they cannot change the outcome.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any, Protocol

from r1chat.engines.base import BatchDone, BatchStats, Done, ManyEvent, ModelInfo, Started, Stats
from r1chat.engines.llama_backend import init_backend, last_log_error
from r1chat.engines.step import TokenStep
from r1chat.errors import PromptTooLong, R1ChatError
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ThinkingControl
from r1chat.sampling import MAX_SAMPLES, SamplingParams


class Measured(Protocol):
    """The confidence a sampler's stage read for the token it drew last (None: not known)."""

    @property
    def value(self) -> float | None: ...


class Sampler(Protocol):
    """A native sampler chain and its confidence stage (r1chat.engines.llama.NativeSampler)."""

    @property
    def chain(self) -> Any: ...
    @property
    def stage(self) -> Measured | None: ...


class BatchModel(Protocol):
    """What the batch needs of a loaded model (r1chat.engines.llama.LlamaEngine)."""

    info: ModelInfo

    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...
    def steered(
        self, messages: list[ChatMessage], control: ThinkingControl | None
    ) -> tuple[list[int], ThinkingControl | None]: ...
    def new_context(self, n_ctx: int, n_seq_max: int, n_batch: int) -> Any: ...
    def free_context(self, ctx: Any) -> None: ...
    def make_sampler(self, params: SamplingParams, seed: int) -> Sampler: ...
    def free_sampler(self, sampler: Sampler) -> None: ...
    def step_for(
        self, params: SamplingParams, limit: int, control: ThinkingControl | None
    ) -> TokenStep: ...


# Cells beyond prompt + k * max_tokens. Not needed for correctness (each sequence decodes at most
# max_tokens - 1 tokens, and a unified cache places a step's tokens in any free cells), only a
# margin; llama.cpp rounds the context up to a multiple of 256 in any case.
CTX_SLACK = 16
CTX_ROUND = 256


class _Seq:
    """One sequence's decoding state; plain slots, touched once per token."""

    __slots__ = ("chain", "done", "id", "pos", "row", "sampler", "seed", "stage", "stats", "step")

    def __init__(self, seq_id: int, seed: int, sampler: Sampler, step: TokenStep, pos: int) -> None:
        self.id = seq_id
        self.seed = seed
        self.sampler = sampler
        self.chain = sampler.chain
        self.stage = sampler.stage
        self.step = step
        self.pos = pos  # where its next token goes
        self.row = -1  # the batch row holding its logits
        self.stats = Stats(seed=seed)
        self.done = False  # its Done was yielded


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


# A one-line question in R1's template, about: what any prompt needs at least.
SHORT_PROMPT = 32


def _too_big(message: str, prompt_is_why: bool) -> R1ChatError:
    """The prompt is why (a short question would fit: PromptTooLong), or the samples and their
    token limit leave no room for any question."""
    return PromptTooLong(message) if prompt_is_why else R1ChatError(message, 2)


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
            raise _too_big(
                f"{head} need a context of {need:,} tokens; the one asked for holds"
                f" {ctx_tokens:,}: {fits}",
                need - prompt <= ctx_tokens - SHORT_PROMPT,
            )
        return ctx_tokens
    if limit is not None and need > limit:
        fits = _what_fits(prompt, k, max_tokens, limit)
        raise _too_big(
            f"{head} need a context of {need:,} tokens; the model takes {limit:,}: {fits}",
            need - prompt <= limit - SHORT_PROMPT,
        )
    n_ctx = _round_up(need + CTX_SLACK, CTX_ROUND)
    return min(n_ctx, limit) if limit is not None else n_ctx


def _new_context(
    engine: BatchModel, n_ctx: int, k: int, step_tokens: int, prompt: int, max_tokens: int
) -> Any:
    # One ubatch must hold a whole step (what every sequence feeds); 512 at least for the prompt.
    ctx = engine.new_context(n_ctx, k, max(step_tokens, min(512, n_ctx)))
    if ctx is None:
        why = last_log_error() or "out of memory?"
        fits = _what_fits(prompt, k, max_tokens, n_ctx // 2)
        raise R1ChatError(
            f"could not create a context of {n_ctx:,} tokens for {_samples(k)} ({why}): {fits}",
            2,
        )
    return ctx


def _longest_steer(engine: BatchModel, controls: Sequence[ThinkingControl | None]) -> int:
    """The most tokens one sequence can feed in a step: its sampled token and what r1chat
    writes into its thinking (the budget's closing text, or think-min's word)."""
    texts = {
        t for c in controls if c is not None for t in (c.params.closing, "\n\n" + c.params.wait)
    }
    return 1 + max((len(engine.tokenize(t)) for t in texts), default=0)


def stream_batch(
    engine: BatchModel,
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    cancel: threading.Event | None = None,
    controls: Sequence[ThinkingControl | None] | None = None,
    ctx_tokens: int | None = None,
) -> Iterator[ManyEvent]:
    """k replies to `messages`, decoded together; see the module's docstring.

    Sample i uses seed `params.seed + i` when a seed is given, else a fresh random one, and
    `controls[i]` steers its thinking (they share their params: a budget of 0 changes the
    prompt they share). Each sequence streams Started, its Tokens and Done as a single reply
    does; a BatchDone ends the stream. When `cancel` is set every unfinished sample ends
    "cancelled" with what it has so far.
    """
    if not 1 <= k <= MAX_SAMPLES:
        raise R1ChatError(f"the number of samples must be from 1 to {MAX_SAMPLES}, not {k}", 2)
    t0 = time.perf_counter()
    controls = list(controls) if controls is not None else [None] * k
    if len(controls) != k:
        raise ValueError("one control per sample")
    prompt, first = engine.steered(messages, controls[0])
    if first is None:
        controls = [None] * k
    n_prompt = len(prompt)
    max_tokens = params.max_tokens
    n_ctx = context_size(n_prompt, k, max_tokens, engine.info.n_ctx_train, ctx_tokens)
    if params.seed is not None:
        seeds = [params.seed + i for i in range(k)]
    else:
        seeds = random.SystemRandom().sample(range(2**31), k)
    stats = BatchStats(k=k, prompt_tokens=n_prompt, together="batched")

    ll = init_backend()
    step_tokens = k * _longest_steer(engine, controls)
    ctx = _new_context(engine, n_ctx, k, step_tokens, n_prompt, max_tokens)
    stats.n_ctx = int(ll.llama_n_ctx(ctx))
    n_batch = int(ll.llama_n_batch(ctx))
    batch = ll.llama_batch_init(max(n_batch, step_tokens), 0, 1)
    seqs = [
        _Seq(
            i,
            seeds[i],
            engine.make_sampler(params, seeds[i]),
            engine.step_for(params, max_tokens, controls[i]),
            n_prompt,
        )
        for i in range(k)
    ]
    try:
        for s in seqs:
            s.stats.prompt_tokens = n_prompt
            yield s.id, Started(n_prompt)
        last = _prefill(ll, ctx, batch, prompt, n_batch, cancel)
        t_first = 0.0
        if last < 0:
            for s in seqs:
                s.step.finish = "cancelled"
        else:
            stats.prompt_evals = 1
            mem = ll.llama_get_memory(ctx)
            for s in seqs:
                s.row = last
                if s.id:
                    ll.llama_memory_seq_cp(mem, 0, s.id, -1, -1)
            t_first = yield from _decode_all(ctx, mem, batch, seqs, cancel, t0)
        t_end = time.perf_counter()
        for s in seqs:
            if not s.done:
                yield from _ended(s, t0, t_first, t_end)
    finally:
        for s in seqs:
            engine.free_sampler(s.sampler)
        ll.llama_batch_free(batch)
        engine.free_context(ctx)
    stats.completion_tokens = sum(s.step.n for s in seqs)
    stats.total_s = time.perf_counter() - t0
    stats.ttft_s = (t_first or t0 + stats.total_s) - t0
    decoded = stats.completion_tokens
    started = sum(1 for s in seqs if s.step.n)
    if decoded > started and t_first:
        stats.decode_tok_s = (decoded - started) / max(t_end - t_first, 1e-9)
    yield -1, BatchDone(stats)


def _ended(s: _Seq, t0: float, t_first: float, t_end: float) -> Iterator[ManyEvent]:
    """What is left of sequence `s` once it ended: a split character's tail, then its Done."""
    s.done = True
    tail = s.step.close()
    if tail is not None:
        yield s.id, tail
    yield s.id, Done(_finished(s, t0, t_first, t_end))


def _finished(s: _Seq, t0: float, t_first: float, t_end: float) -> Stats:
    stats = s.stats
    s.step.note_confidence(stats)
    n = s.step.n
    stats.completion_tokens = n
    stats.evaluated_tokens = stats.prompt_tokens if t_first else 0
    stats.finish_reason = s.step.finish or "cancelled"
    stats.ttft_s = (t_first or t_end) - t0
    if n > 1 and t_first:
        stats.decode_tok_s = (n - 1) / max(t_end - t_first, 1e-9)
    stats.total_s = t_end - t0
    return stats


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
    ctx: Any,
    mem: Any,
    batch: Any,
    seqs: list[_Seq],
    cancel: threading.Event | None,
    t0: float,
) -> Generator[ManyEvent, None, float]:
    """Decode every sequence to its end, yielding what each shows and each one's Done as it
    ends; returns the time the first token was sampled."""
    ll = init_backend()
    sample = ll.llama_sampler_sample
    decode = ll.llama_decode
    tokens, positions, seq_ids, n_seq, logits = (
        batch.token,
        batch.pos,
        batch.seq_id,
        batch.n_seq_id,
        batch.logits,
    )
    live = list(seqs)
    t_first = 0.0
    while live:
        ended = []
        for s in live:
            step = s.step
            tok = sample(s.chain, ctx, s.row)
            stage = s.stage
            for shown in step.take(tok, stage.value if stage is not None else None):
                yield s.id, shown
            if step.finish is not None:
                ended.append(s)
        if not t_first:
            t_first = time.perf_counter()
        if ended:
            # A finished sequence leaves the batch and frees its own cells (the prompt's stay
            # for the others); its Done goes out now, so the caller may stop the rest.
            t_end = time.perf_counter()
            for s in ended:
                ll.llama_memory_seq_rm(mem, s.id, -1, -1)
            live = [s for s in live if s.step.finish is None]
            for s in ended:
                yield from _ended(s, t0, t_first, t_end)
            if not live:
                break
        # Checked after the Dones: a caller that stops on one stops the rest before another step.
        if cancel is not None and cancel.is_set():
            for s in live:
                s.step.finish = "cancelled"
            break
        # The step's batch: each sequence's fed tokens at its own positions, logits on its last.
        j = 0
        for s in live:
            for t in s.step.feed:
                tokens[j] = t
                positions[j] = s.pos
                n_seq[j] = 1
                seq_ids[j][0] = s.id
                logits[j] = 0
                s.pos += 1
                j += 1
            logits[j - 1] = 1
            s.row = j - 1
        batch.n_tokens = j
        if decode(ctx, batch) != 0:
            # No room left in the cache (the sizing should prevent it): end as the engine does.
            for s in live:
                s.step.finish = "length"
            break
    return t_first or time.perf_counter()
