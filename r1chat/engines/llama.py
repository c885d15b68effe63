"""A GGUF model on llama.cpp, streaming one token at a time.

The decode loop drives llama.cpp's low-level API directly (llama_decode plus the native sampler
chain) with incremental detokenization, so the work per token stays flat over replies of thousands
of tokens; llama-cpp-python's `create_completion` re-detokenizes the whole reply on every token.
What each sampled token means (its text, the end of the reply, the thinking control) is decided
by the per-token step (r1chat.engines.step), which the batched decoder runs for each sample too.

Each sampled token's confidence (DeepConf's, r1chat.confidence) comes from a stage in the sampler
chain right after the top-k cut, which reads the 40 candidates llama.cpp already holds there and
changes nothing: no copy of the 152k logits, no second softmax over them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1chat.confidence import ConfidenceOptions, TraceConfidence, token_confidence
from r1chat.engines.base import (
    Done,
    Event,
    FinishReason,
    ManyEvent,
    ModelInfo,
    Started,
    Stats,
    check_fits,
)
from r1chat.engines.batch import Sampler, stream_batch
from r1chat.engines.llama_backend import backend_name, init_backend, last_log_error
from r1chat.engines.step import TokenStep, Vocabulary
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage, render_prompt, template_wants_think
from r1chat.reasoning import ThinkingControl
from r1chat.sampling import SamplingParams

if TYPE_CHECKING:
    from r1chat.gguf_header import GGUFHeader

DEFAULT_CTX_GPU = 32768
DEFAULT_CTX_CPU = 8192
ALL_LAYERS = 0x7FFFFFFF


@dataclass(frozen=True)
class LoadOptions:
    n_ctx: int | None = None  # None: 32768 with a GPU, 8192 without (capped at the model's own)
    n_gpu_layers: int | None = None  # None: every layer when the build can offload
    flash_attn: bool | None = None  # None: on with a GPU, llama.cpp's auto otherwise
    n_threads: int | None = None
    n_batch: int = 512
    kv_type: str = "f16"


def _kv_type(llama_cpp: Any, name: str) -> int:
    types = {
        "f16": llama_cpp.GGML_TYPE_F16,
        "q8_0": llama_cpp.GGML_TYPE_Q8_0,
        "q4_0": llama_cpp.GGML_TYPE_Q4_0,
        "f32": llama_cpp.GGML_TYPE_F32,
    }
    try:
        return int(types[name])
    except KeyError:
        choices = ", ".join(types)
        raise R1ChatError(f"unknown KV cache type {name!r} (choose from {choices})", 2) from None


# A stage reads at most this many candidates (a top-k above it is rare): the confidence takes its
# normaliser from them, and its cost is Python's, a few microseconds per 40.
MAX_CANDIDATES = 256
# llama_token_data: int32 id, float logit, float p.
_CANDIDATE_BYTES = 12


class ConfidenceStage:
    """A stage of a native sampler chain that changes nothing: it reads the candidates the top-k
    cut before it left (sorted, largest logit first) and keeps their token confidence in
    `value` for the token the chain is about to draw.

    The candidates' bytes are read in one copy (480 bytes for 40) and their logits taken as a
    float array's every third item; per token this costs about 10 us against the chain's
    ~225 us at a 152k vocabulary (benchmarks/confidence_cost.py). A Python callback, so
    `sampler` must not outlive this object: the NativeSampler holding both sees to that.
    """

    def __init__(self, ll: Any, top: int) -> None:
        self.value: float | None = None
        string_at = ctypes.string_at

        def apply(_smpl: Any, cur_p: Any) -> None:
            # An exception here would be printed and lost inside llama.cpp's call: no value.
            try:
                cands = cur_p.contents
                n = cands.size
                if n > MAX_CANDIDATES and not cands.sorted:
                    self.value = None  # no top-k cut before it: the whole vocabulary
                    return
                n = min(n, MAX_CANDIDATES)
                raw = array("f")
                raw.frombytes(string_at(cands.data, _CANDIDATE_BYTES * n))
                self.value = token_confidence(raw[1::3], top, descending=bool(cands.sorted))
            except Exception:
                self.value = None

        # Kept on self: llama.cpp holds only pointers to the callback and the interface.
        self._apply = ll.llama_sampler_i_apply(apply)
        self._iface = ll.llama_sampler_i()
        self._iface.apply = self._apply
        # Made by llama.cpp (`new`), so the chain may free it like its own stages.
        self.sampler = ll.llama_sampler_init(ctypes.byref(self._iface), None)


class NativeSampler:
    """A native sampler chain and the confidence stage in it (None: not measured)."""

    __slots__ = ("chain", "stage")

    def __init__(self, chain: Any, stage: ConfidenceStage | None) -> None:
        self.chain = chain
        self.stage = stage


class LlamaEngine:
    """A loaded GGUF model and its context. Not thread-safe: one thread at a time drives it."""

    def __init__(
        self,
        model_path: str | Path,
        options: LoadOptions | None = None,
        *,
        name: str | None = None,
        header: GGUFHeader | None = None,
        on_progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        from r1chat.gguf_checks import read_model_header

        opts = options or LoadOptions()
        path = Path(model_path).expanduser()
        self.header = header or read_model_header(path)
        llama_cpp = init_backend()
        self._ll = llama_cpp
        self._model: Any = None
        self._ctx: Any = None

        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        mparams = llama_cpp.llama_model_default_params()
        n_gpu = opts.n_gpu_layers
        mparams.n_gpu_layers = (ALL_LAYERS if gpu else 0) if n_gpu is None else max(0, n_gpu)
        self._progress_cb = None
        if on_progress is not None or cancel is not None:

            def progress(value: float, _user: Any) -> bool:
                # False stops the load: how Ctrl+C (or quitting the app) ends it early.
                try:
                    if on_progress is not None:
                        on_progress(float(value))
                    return cancel is None or not cancel.is_set()
                except BaseException:
                    return False

            self._progress_cb = llama_cpp.llama_progress_callback(progress)
            mparams.progress_callback = self._progress_cb
        model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), mparams)
        if not model:
            if cancel is not None and cancel.is_set():
                raise R1ChatError("loading the model was stopped")
            why = last_log_error() or "llama.cpp could not load it"
            raise R1ChatError(f"could not load model {path}: {why}")
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        n_layers = int(llama_cpp.llama_model_n_layer(model))
        n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        offloaded = min(mparams.n_gpu_layers, n_layers + 1) if gpu else 0

        n_ctx = opts.n_ctx or (DEFAULT_CTX_GPU if offloaded else DEFAULT_CTX_CPU)
        if n_ctx_train > 0:
            n_ctx = min(n_ctx, n_ctx_train)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = min(opts.n_batch, n_ctx)
        cparams.n_ubatch = min(opts.n_batch, n_ctx)
        threads = opts.n_threads or os.cpu_count() or 1
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        fa = opts.flash_attn
        if fa is None:
            cparams.flash_attn_type = (
                llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if offloaded
                else llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
            )
        else:
            cparams.flash_attn_type = (
                llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if fa
                else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        cparams.type_k = cparams.type_v = _kv_type(llama_cpp, opts.kv_type)
        cparams.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            self._model = None
            why = last_log_error() or "out of memory?"
            hint = " (a quantized KV cache needs flash attention)" if opts.kv_type != "f16" else ""
            raise R1ChatError(f"could not create a context of {n_ctx} tokens: {why}{hint}")
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._n_batch = int(cparams.n_batch)
        self._kv_tokens: list[int] = []
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._piece_buf = ctypes.create_string_buffer(256)

        meta = self.header.metadata
        self.template = (
            meta.get("tokenizer.chat_template")
            if isinstance(meta.get("tokenizer.chat_template"), str)
            else None
        )
        self.bos_id = int(llama_cpp.llama_vocab_bos(self._vocab))
        self.eos_id = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.bos_text = self._text_of(self.bos_id)
        self.eos_text = self._text_of(self.eos_id)
        thinks = template_wants_think(self.template)
        end_ids = self.tokenize("</think>") if thinks else []
        model_name = name or str(meta.get("general.name") or path.stem)
        self.info = ModelInfo(
            name=model_name,
            path=str(path),
            backend=backend_name(llama_cpp) if offloaded else "CPU",
            n_gpu_layers=offloaded,
            n_layers=n_layers,
            n_ctx=int(llama_cpp.llama_n_ctx(ctx)),
            n_ctx_train=n_ctx_train,
            thinks=thinks,
            think_end_token=end_ids[0] if len(end_ids) == 1 else None,
        )
        self.vocabulary = Vocabulary(
            self._pieces, self._eog, self._piece, self._is_eog, self.tokenize
        )
        # What each reply's sampler measures of the model's confidence; None: nothing.
        self.confidence: ConfidenceOptions | None = ConfidenceOptions()

    # --- tokens ---

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        ll = self._ll
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self._vocab, raw, len(raw), buf, cap, False, special)
        if n < 0:
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self._vocab, raw, len(raw), buf, cap, False, special)
        return list(buf[:n])

    def _text_of(self, token: int) -> str:
        return self._piece(token).decode("utf-8", "replace") if token >= 0 else ""

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            n = self._ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def _is_eog(self, token: int) -> bool:
        end = self._eog[token] = bool(self._ll.llama_vocab_is_eog(self._vocab, token))
        return end

    def render(self, messages: list[ChatMessage], *, no_thinking: bool = False) -> str:
        return render_prompt(
            messages,
            self.template,
            bos_token=self.bos_text,
            eos_token=self.eos_text,
            force_think=self.info.thinks,
            no_thinking=no_thinking,
            # A template adds a little around the messages: a few times what the context holds
            # is far beyond any real one.
            max_chars=4 * 4 * self.info.n_ctx,
        )

    def prompt_tokens(self, messages: list[ChatMessage], *, no_thinking: bool = False) -> list[int]:
        """The prompt's tokens, with BOS exactly once (the template may already emit it)."""
        return self.with_bos(self.tokenize(self.render(messages, no_thinking=no_thinking)))

    def with_bos(self, tokens: list[int]) -> list[int]:
        """`tokens` starting with exactly one BOS when the model wants one, else none added."""
        if self.bos_id >= 0:
            while len(tokens) > 1 and tokens[0] == self.bos_id and tokens[1] == self.bos_id:
                tokens.pop(0)
            if self.add_bos and (not tokens or tokens[0] != self.bos_id):
                tokens.insert(0, self.bos_id)
        return tokens

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.prompt_tokens(messages))

    # --- decoding ---

    def _decode(self, tokens: list[int]) -> int:
        ll = self._ll
        arr = (ll.llama_token * len(tokens))(*tokens)
        return int(ll.llama_decode(self._ctx, ll.llama_batch_get_one(arr, len(tokens))))

    def new_context(self, n_ctx: int, n_seq_max: int, n_batch: int) -> Any:
        """Another context on this model (a batch of k sequences in one unified KV cache),
        threaded and with flash attention as this engine's own; None when llama.cpp cannot
        make it. The caller frees it with `free_context`."""
        ll = self._ll
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_seq_max = n_seq_max
        # One pool of cells for all sequences: seq_cp then marks the prompt's cells as belonging
        # to every sequence instead of copying them into separate streams.
        cparams.kv_unified = True
        cparams.n_batch = cparams.n_ubatch = n_batch
        threads = int(ll.llama_n_threads(self._ctx)) or os.cpu_count() or 1
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.flash_attn_type = (
            ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self.info.n_gpu_layers
            else ll.LLAMA_FLASH_ATTN_TYPE_AUTO
        )
        cparams.type_k = cparams.type_v = ll.GGML_TYPE_F16
        cparams.no_perf = True
        if self._model is None:
            raise R1ChatError("the model is closed")
        return ll.llama_init_from_model(self._model, cparams) or None

    def free_context(self, ctx: Any) -> None:
        self._ll.llama_free(ctx)

    def make_sampler(self, params: SamplingParams, seed: int) -> NativeSampler:
        """A native sampler chain: top-k, top-p, temperature, then a seeded draw (greedy at
        temperature 0), with the confidence stage right after the top-k cut. The caller frees
        it with `free_sampler`.

        Without a top-k cut the stage would read the whole vocabulary: then nothing is measured.
        Greedy decoding gets the cut too when it measures: the largest logit survives it, so the
        pick is the same (unless two logits are exactly equal)."""
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        stage = None
        if params.top_k > 0 and (params.temperature > 0 or self.confidence is not None):
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(params.top_k))
            if self.confidence is not None:
                stage = ConfidenceStage(ll, self.confidence.top)
                ll.llama_sampler_chain_add(chain, stage.sampler)
        if params.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return NativeSampler(chain, stage)
        if 0 < params.top_p < 1:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(params.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(params.temperature))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        return NativeSampler(chain, stage)

    def free_sampler(self, sampler: Sampler) -> None:
        self._ll.llama_sampler_free(sampler.chain)

    def step_for(
        self, params: SamplingParams, limit: int, control: ThinkingControl | None
    ) -> TokenStep:
        """The per-token step of one sequence of a reply (`control`: None when not thinking)."""
        conf = self.confidence
        return TokenStep(
            self.vocabulary,
            limit,
            ignore_eos=params.ignore_eos,
            control=control,
            end_id=self.info.think_end_token,
            trace=TraceConfidence(conf.window) if conf is not None else None,
        )

    def steered(
        self, messages: list[ChatMessage], control: ThinkingControl | None
    ) -> tuple[list[int], ThinkingControl | None]:
        """The prompt for `messages` and the control that steers its thinking: a budget of 0
        closes the thinking in the prompt itself, and then nothing is left to steer."""
        no_thinking = control is not None and control.params.budget == 0 and self.info.thinks
        prompt = self.prompt_tokens(messages, no_thinking=no_thinking)
        if no_thinking or not self.info.thinks:
            control = None
        return prompt, control

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        """Decode a reply to `messages`, yielding each Token and finally Done(stats)."""
        t0 = time.perf_counter()
        prompt, control = self.steered(messages, control)
        return self.stream_tokens(prompt, params, cancel, t0=t0, control=control)

    def stream_many(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        k: int,
        cancel: threading.Event | None = None,
        controls: Sequence[ThinkingControl | None] | None = None,
        ctx_tokens: int | None = None,
    ) -> Iterator[ManyEvent]:
        """k replies decoded together in one batch (r1chat.engines.batch)."""
        if self._ctx is None:
            raise R1ChatError("the model is closed")
        return stream_batch(self, messages, params, k, cancel, controls, ctx_tokens)

    def stream_tokens(
        self,
        prompt: list[int],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        *,
        t0: float | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        """Decode after the already tokenized `prompt` (which leaves the model thinking when
        `control` is given); see `stream`."""
        if self._ctx is None:
            raise R1ChatError("the model is closed")
        if t0 is None:
            t0 = time.perf_counter()
        if not prompt:
            raise R1ChatError("empty prompt", 2)
        n_ctx = self.info.n_ctx
        check_fits(len(prompt), n_ctx)
        seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**31)
        stats = Stats(prompt_tokens=len(prompt), seed=seed)
        ll = self._ll
        yield Started(len(prompt))

        # Reuse the KV cache for the prefix this prompt shares with what is cached already; at
        # least one token is evaluated so that there are logits to sample from.
        keep = 0
        limit = min(len(self._kv_tokens), len(prompt) - 1)
        while keep < limit and self._kv_tokens[keep] == prompt[keep]:
            keep += 1
        if not ll.llama_memory_seq_rm(self._mem, 0, keep, -1):
            keep = 0
            ll.llama_memory_clear(self._mem, True)
        self._kv_tokens = self._kv_tokens[:keep]
        stats.cached_tokens = keep
        todo = prompt[keep:]
        # A long prompt takes seconds per batch on a CPU: let a stop request abort mid-batch.
        abort = None
        if cancel is not None:
            abort = ll.ggml_abort_callback(lambda _data: cancel.is_set())
            ll.llama_set_abort_callback(self._ctx, abort, None)
        try:
            for i in range(0, len(todo), self._n_batch):
                chunk = todo[i : i + self._n_batch]
                rc = 2 if cancel is not None and cancel.is_set() else self._decode(chunk)
                if rc == 2:  # aborted: drop whatever part of the batch reached the cache
                    ll.llama_memory_seq_rm(self._mem, 0, len(self._kv_tokens), -1)
                    stats.finish_reason = "cancelled"
                    stats.total_s = time.perf_counter() - t0
                    yield Done(stats)
                    return
                if rc != 0:
                    self._kv_tokens = []
                    ll.llama_memory_clear(self._mem, True)
                    raise R1ChatError(
                        f"llama.cpp could not evaluate the prompt (llama_decode returned {rc})"
                    )
                self._kv_tokens.extend(chunk)
                stats.evaluated_tokens += len(chunk)
        finally:
            if abort is not None:
                ll.llama_set_abort_callback(self._ctx, ll.ggml_abort_callback(), None)
        t_prefill = time.perf_counter()
        if stats.evaluated_tokens:
            stats.prefill_tok_s = stats.evaluated_tokens / max(t_prefill - t0, 1e-9)

        sampler = self.make_sampler(params, seed)
        chain, stage = sampler.chain, sampler.stage
        sample = ll.llama_sampler_sample
        decode = ll.llama_decode
        ctx = self._ctx
        kv = self._kv_tokens
        step = self.step_for(params, min(params.max_tokens, n_ctx - len(kv)), control)
        take = step.take
        # One token a step goes through a batch made once; what r1chat writes in goes as a
        # batch of its own.
        one = (ll.llama_token * 1)()
        batch_one = ll.llama_batch_get_one(one, 1)
        finish: FinishReason = "length"
        t_first = 0.0
        try:
            while True:
                tok = sample(chain, ctx, -1)
                if not t_first:
                    t_first = time.perf_counter()
                yield from take(tok, stage.value if stage is not None else None)
                if step.finish is not None:
                    finish = step.finish
                    break
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                fed = step.feed
                if len(fed) == 1:
                    one[0] = fed[0]
                    if decode(ctx, batch_one) != 0:
                        break
                elif self._decode(fed) != 0:
                    break
                kv.extend(fed)
            tail = step.close()
            if tail is not None:
                yield tail
        finally:
            self.free_sampler(sampler)
        t_end = time.perf_counter()
        n = step.n
        step.note_confidence(stats)
        stats.completion_tokens = n
        stats.finish_reason = finish
        stats.ttft_s = (t_first or t_end) - t0
        if n > 1 and t_first:
            stats.decode_tok_s = (n - 1) / max(t_end - t_first, 1e-9)
        stats.total_s = t_end - t0
        yield Done(stats)

    def close(self) -> None:
        ll = self._ll
        if self._ctx is not None:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            ll.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
