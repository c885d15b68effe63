"""The engine: a GGUF model on llama.cpp, streaming one token at a time.

The decode loop drives llama.cpp's low-level API directly (llama_decode plus the native sampler
chain) with incremental detokenization, so the work per token stays flat over replies of thousands
of tokens; llama-cpp-python's `create_completion` re-detokenizes the whole reply on every token.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage, render_prompt, template_wants_think
from r1chat.reasoning import Inject, ThinkingControl
from r1chat.sampling import SamplingParams

if TYPE_CHECKING:
    from r1chat.gguf_header import GGUFHeader

FinishReason = Literal["stop", "length", "cancelled"]

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


@dataclass
class Stats:
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache of an earlier turn
    evaluated_tokens: int = 0  # prompt tokens actually run through the model this turn
    completion_tokens: int = 0
    thinking_tokens: int = 0
    answer_tokens: int = 0
    ttft_s: float = 0.0
    thinking_s: float = 0.0  # from the first token to the end of the thinking
    ttfa_s: float = 0.0  # time to the first answer token
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    total_s: float = 0.0
    seed: int = 0
    finish_reason: FinishReason = "stop"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Started:
    """The engine took the prompt (it fits) and is about to evaluate it; nothing is decoded yet.

    Front ends save the question only now, so a question the model never saw is never saved.
    """

    prompt_tokens: int | None  # None when the engine cannot tell before the reply (a server)


@dataclass(frozen=True)
class Token:
    """One sampled token and the text it completes (empty while a UTF-8 character is split)."""

    id: int
    text: str


@dataclass(frozen=True)
class Done:
    stats: Stats


Event = Started | Token | Done


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    backend: str  # "CUDA", "Metal", "CPU", ...
    n_gpu_layers: int
    n_layers: int
    n_ctx: int
    n_ctx_train: int
    thinks: bool
    think_end_token: int | None = None


def check_fits(prompt_tokens: int, n_ctx: int) -> None:
    """Refuse a prompt that leaves no room in the context for even one new token."""
    if prompt_tokens >= n_ctx:
        raise R1ChatError(
            f"the prompt is too long: {prompt_tokens:,} tokens, the context holds {n_ctx:,}"
            " (pass a larger --ctx, or shorten the input)",
            2,
        )


class Engine(Protocol):
    """What the front ends need of a model; a remote server would be another implementation.

    `control`, for a model that thinks, steers the thinking token by token (budget, think
    longer, loop guard, answer now: r1chat.reasoning.ThinkingControl); with a budget of 0 the
    prompt opens and closes the thinking itself.
    """

    info: ModelInfo

    def count_tokens(self, messages: list[ChatMessage]) -> int: ...

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]: ...

    def close(self) -> None: ...


# --- llama.cpp process-wide set-up ------------------------------------------------------------

_LOG_LINES: deque[str] = deque(maxlen=200)
_log_callback: Any = None  # kept referenced: a collected ctypes callback segfaults
_backend_ready = False
_backend_lock = threading.Lock()


def _llama() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # a broken or missing native build
        raise R1ChatError(f"llama-cpp-python is not installed or failed to load: {e}") from None
    return llama_cpp


def init_backend() -> Any:
    """Import llama.cpp once, route its log into a buffer (shown with R1CHAT_LOG=1)."""
    global _backend_ready, _log_callback
    llama_cpp = _llama()
    with _backend_lock:
        if _backend_ready:
            return llama_cpp
        echo = os.environ.get("R1CHAT_LOG", "") not in ("", "0")

        def on_log(level: int, text: bytes, _user: Any) -> None:
            # Nothing may escape a callback from C: it would be printed and lost (FINDINGS).
            with contextlib.suppress(BaseException):
                _LOG_LINES.append(text.decode("utf-8", errors="replace"))
                if echo:
                    os.write(2, text)

        _log_callback = llama_cpp.llama_log_callback(on_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True
    return llama_cpp


def last_log_error() -> str | None:
    """The last error-looking line llama.cpp logged, to explain a failure in one line."""
    for line in reversed(_LOG_LINES):
        s = line.strip()
        if s and ("error" in s.lower() or "failed" in s.lower()):
            return s
    return None


def backend_name(llama_cpp: Any) -> str:
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    for key, name in (
        ("CUDA", "CUDA"),
        ("METAL", "Metal"),
        ("MTL", "Metal"),
        ("HIP", "ROCm"),
        ("ROCM", "ROCm"),
        ("VULKAN", "Vulkan"),
        ("SYCL", "SYCL"),
    ):
        if key in info.upper():
            return name
    return "CPU"


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
        from r1chat.gguf_header import read_header

        opts = options or LoadOptions()
        path = Path(model_path).expanduser()
        self.header = header or read_header(path)
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

    def _make_sampler(self, params: SamplingParams, seed: int) -> Any:
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if params.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        if params.top_k > 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(params.top_k))
        if 0 < params.top_p < 1:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(params.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(params.temperature))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        return chain

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        control: ThinkingControl | None = None,
    ) -> Iterator[Event]:
        """Decode a reply to `messages`, yielding each Token and finally Done(stats)."""
        t0 = time.perf_counter()
        no_thinking = control is not None and control.params.budget == 0 and self.info.thinks
        prompt = self.prompt_tokens(messages, no_thinking=no_thinking)
        if no_thinking or not self.info.thinks:
            control = None
        return self.stream_tokens(prompt, params, cancel, t0=t0, control=control)

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

        sampler = self._make_sampler(params, seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = self._vocab
        is_eog = ll.llama_vocab_is_eog
        sample = ll.llama_sampler_sample
        decode = ll.llama_decode
        pieces = self._pieces
        eog = self._eog
        one = (ll.llama_token * 1)()
        batch_one = ll.llama_batch_get_one(one, 1)
        ctx = self._ctx
        kv = self._kv_tokens
        ignore_eos = params.ignore_eos
        budget = min(params.max_tokens, n_ctx - len(kv))
        finish: FinishReason = "length"
        t_first = 0.0
        n = 0
        # While the model thinks, every token goes past `control` (one call); after, none does.
        end_id = self.info.think_end_token
        thinking = control is not None and end_id is not None
        try:
            while n < budget:
                tok = sample(sampler, ctx, -1)
                if n == 0:
                    t_first = time.perf_counter()
                # EOG by token id, memoised: a ctypes call per token costs ~9 us here.
                end = eog.get(tok)
                if end is None:
                    end = eog[tok] = bool(is_eog(vocab, tok))
                if end and not ignore_eos:
                    finish = "stop"
                    break
                if thinking:
                    assert control is not None
                    if tok == end_id:
                        steer = control.close_requested()
                        thinking = steer is not None
                    else:
                        steer = control.token(tok)
                    if steer is not None:
                        if not isinstance(steer, Inject):
                            finish = "cancelled"
                            break
                        forced = self.tokenize(steer.text)
                        thinking = end_id not in forced
                        fed = forced if steer.drop else [tok, *forced]
                        for t in fed:
                            n += 1
                            yield Token(t, decoder.decode(pieces.get(t) or self._piece(t)))
                        if (cancel is not None and cancel.is_set()) or n >= budget:
                            finish = "cancelled" if n < budget else "length"
                            break
                        if self._decode(fed) != 0:
                            break
                        kv.extend(fed)
                        continue
                n += 1
                piece = pieces.get(tok)
                if piece is None:
                    piece = self._piece(tok)
                yield Token(tok, decoder.decode(piece))
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if n >= budget:
                    break
                one[0] = tok
                if decode(ctx, batch_one) != 0:
                    break
                kv.append(tok)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield Token(-1, tail)
        finally:
            ll.llama_sampler_free(sampler)
        t_end = time.perf_counter()
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
