"""What the machine can run: the llama.cpp build's backend, the GPUs and their free memory, and
the arithmetic that fits a model and its KV cache into that memory.

The fitting functions are pure (sizes in, choices out) so they can be checked against any
memory size; only `build_info` and `detect_gpus` look at the machine.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1chat.config import Settings
    from r1chat.engines.llama import LoadOptions
    from r1chat.gguf_header import GGUFHeader

GiB = 1 << 30
MiB = 1 << 20

CTX_PREFERRED = 32768  # what the R1 model card's long reasoning traces need
CTX_MIN = 8192  # below this, shrink the layers on the GPU instead of the context
CTX_CPU = 8192
# Kept free on the GPU for the CUDA/Metal context, compute buffers and other programs.
DEFAULT_MARGIN = 1 * GiB
# Bytes per element of the KV cache by type (q8_0/q4_0 store 32 values per block).
KV_ELEMENT_BYTES = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# Share of unified memory Metal lets one process wire (about its recommendedMaxWorkingSetSize).
APPLE_GPU_SHARE = 0.70


# --- the build ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildInfo:
    backend: str  # "CUDA", "Metal", "ROCm", "Vulkan", "SYCL" or "CPU"
    gpu_offload: bool
    system_info: str
    version: str | None = None
    error: str | None = None  # why llama_cpp could not be imported, if it could not


def build_info() -> BuildInfo:
    """The installed llama-cpp-python build: its GPU backend and whether it can offload."""
    version = package_version("llama_cpp_python")
    try:
        from r1chat.engines.llama import backend_name, init_backend

        llama_cpp = init_backend()
        info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        backend = backend_name(llama_cpp) if gpu else "CPU"
    except Exception as e:  # a missing or broken native library
        return BuildInfo(
            "none", False, "", version, str(e).splitlines()[0] if str(e) else type(e).__name__
        )
    return BuildInfo(backend, gpu, info, version)


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# --- the GPUs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPU:
    name: str
    vendor: str  # "nvidia" or "apple"
    total_bytes: int
    free_bytes: int  # what a model may use now (for Apple: the GPU's share of unified memory)


def parse_nvidia_smi(text: str) -> list[GPU]:
    """Parse nvidia-smi's `--query-gpu=name,memory.total,memory.free` CSV (no header, MiB)."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3:
            continue
        try:
            total, free = int(float(parts[1])), int(float(parts[2]))
        except ValueError:  # "[N/A]" on some virtual GPUs
            continue
        gpus.append(GPU(parts[0], "nvidia", total * MiB, free * MiB))
    return gpus


def _nvidia_gpus() -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


def _apple_gpus() -> list[GPU]:
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return []
    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5, check=False
        )
        total = int(out.stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return [GPU("Apple Silicon (unified memory)", "apple", total, int(total * APPLE_GPU_SHARE))]


def detect_gpus() -> list[GPU]:
    """The GPUs this machine has, whatever llama.cpp was built for."""
    return _nvidia_gpus() or _apple_gpus()


# --- the arithmetic ----------------------------------------------------------------------------


def _meta_int(meta: dict[str, Any], key: str) -> int | list[int] | None:
    v = meta.get(key)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, list) and v and all(isinstance(x, int) for x in v):
        return v
    return None


def model_layers(header: GGUFHeader) -> int:
    arch = header.architecture or ""
    n = _meta_int(header.metadata, f"{arch}.block_count")
    return n if isinstance(n, int) else 0


def kv_bytes_per_token(header: GGUFHeader, kv_type: str = "f16") -> int:
    """Bytes of KV cache one token of context takes, over all layers, from the GGUF metadata.

    2 (K and V) x layers x KV heads x head size x bytes per element: for the 7B
    (28 layers, 4 KV heads of 128) that is 57,344 bytes (56 KiB) in f16.
    """
    meta = header.metadata
    arch = header.architecture or ""
    layers = model_layers(header)
    heads = _meta_int(meta, f"{arch}.attention.head_count")
    kv_heads = _meta_int(meta, f"{arch}.attention.head_count_kv")
    embd = _meta_int(meta, f"{arch}.embedding_length")
    if not layers or heads is None or not isinstance(embd, int):
        return 0
    head0 = heads if isinstance(heads, int) else max(heads)
    if not head0:
        return 0
    k_len = _meta_int(meta, f"{arch}.attention.key_length")
    v_len = _meta_int(meta, f"{arch}.attention.value_length")
    k = k_len if isinstance(k_len, int) else embd // head0
    v = v_len if isinstance(v_len, int) else embd // head0
    if kv_heads is None:
        kv_heads = heads
    per_layer = kv_heads if isinstance(kv_heads, list) else [kv_heads] * layers
    elements = sum(h * (k + v) for h in per_layer[:layers])
    return int(elements * KV_ELEMENT_BYTES.get(kv_type, 2.0))


@dataclass(frozen=True)
class Fit:
    """What auto-fit chose, and the arithmetic behind it (all sizes in bytes)."""

    gpu_layers: int
    n_ctx: int
    n_layers: int
    weights_on_gpu: int
    kv_on_gpu: int
    budget: int
    fits: bool  # False: even the smallest choice exceeds the budget
    reason: str

    def describe(self) -> str:
        where = (
            "all layers"
            if self.gpu_layers >= self.n_layers
            else f"{self.gpu_layers}/{self.n_layers} layers"
        )
        need = (self.weights_on_gpu + self.kv_on_gpu) / GiB
        return (
            f"{where} on the GPU, context {self.n_ctx}: {need:.1f} of {self.budget / GiB:.1f}"
            f" GiB ({self.reason})"
        )


def _round_ctx(n: int) -> int:
    return n // 1024 * 1024


def auto_fit(
    *,
    model_bytes: int,
    n_layers: int,
    kv_per_token: int,
    free_bytes: int,
    margin_bytes: int = DEFAULT_MARGIN,
    ctx_max: int = CTX_PREFERRED,
    ctx_min: int = CTX_MIN,
    n_ctx_train: int | None = None,
    ctx: int | None = None,
    gpu_layers: int | None = None,
    scratch_per_token: int = 0,
) -> Fit:
    """Choose GPU layers and context so weights and KV cache fit `free_bytes - margin_bytes`.

    Prefers every layer with `ctx_max` context; then shrinks the context (down to `ctx_min`);
    then moves layers back to the CPU. A given `ctx` or `gpu_layers` (a flag) is kept as is and
    only the other one is chosen. Weights are taken as spread evenly over the layers, and each
    layer on the GPU holds its share of the KV cache. `scratch_per_token` is GPU memory that
    grows with the context whatever the layers (attention scores without flash attention).
    """
    if n_ctx_train:
        ctx_max = min(ctx_max, n_ctx_train)
        ctx_min = min(ctx_min, ctx_max)
    budget = max(0, free_bytes - margin_bytes)
    layers_total = max(1, n_layers)
    w_layer = model_bytes / layers_total
    kv_layer_tok = kv_per_token / layers_total

    def need(layers: int, n_ctx: int) -> tuple[int, int]:
        scratch = scratch_per_token * n_ctx if layers else 0
        return int(w_layer * layers), int(kv_layer_tok * layers * n_ctx + scratch)

    def result(layers: int, n_ctx: int, reason: str) -> Fit:
        w, kv = need(layers, n_ctx)
        return Fit(layers, n_ctx, n_layers, w, kv, budget, w + kv <= budget, reason)

    def ctx_for(layers: int) -> int:
        """The largest context that fits with `layers` on the GPU, capped at ctx_max."""
        per_tok = kv_layer_tok * layers + scratch_per_token
        if layers == 0 or per_tok == 0:
            return ctx_max
        room = budget - w_layer * layers
        return min(ctx_max, _round_ctx(int(room / per_tok))) if room > 0 else 0

    def layers_for(n_ctx: int) -> int:
        per = w_layer + kv_layer_tok * n_ctx
        room = budget - scratch_per_token * n_ctx
        if room <= 0:
            return 0
        return min(n_layers, int(room // per)) if per > 0 else n_layers

    if gpu_layers is not None and ctx is not None:
        return result(min(gpu_layers, n_layers), ctx, "both set by flags")
    if gpu_layers is not None:
        layers = min(gpu_layers, n_layers)
        best = ctx_for(layers)
        if best >= ctx_min:
            return result(layers, best, "context fitted to the layers given")
        return result(layers, ctx_min, "layers given by flag do not leave room for the context")
    if ctx is not None:
        return result(layers_for(ctx), ctx, "layers fitted to the context given")
    best = ctx_for(n_layers)
    if best >= ctx_min:
        why = "everything fits" if best == ctx_max else "context shrunk to fit"
        return result(n_layers, best, why)
    layers = layers_for(ctx_min)
    return result(
        layers,
        ctx_min,
        "some layers stay on the CPU" if layers else "too little GPU memory: running on the CPU",
    )


# --- the load plan and the out-of-memory retry -------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    options: LoadOptions
    n_layers: int
    fit: Fit | None  # None: nothing was fitted (CPU build, no GPU seen, or flags set it all)
    note: str  # one line for the user about what was chosen, "" when there is nothing to say


def plan_load(
    header: GGUFHeader,
    settings: Settings,
    *,
    build: BuildInfo | None = None,
    gpus: list[GPU] | None = None,
    margin_bytes: int = DEFAULT_MARGIN,
) -> LoadPlan:
    """LoadOptions for this model on this machine: flags and config first, auto-fit the rest."""
    from r1chat.engines.llama import LoadOptions

    opts = LoadOptions(
        n_ctx=settings.ctx,
        n_gpu_layers=settings.gpu_layers,
        flash_attn=settings.flash_attn,
        n_threads=settings.threads,
        kv_type=settings.kv_type,
    )
    n_layers = model_layers(header)
    build = build or build_info()
    if not build.gpu_offload:
        return LoadPlan(opts, n_layers, None, "")
    if settings.ctx is not None and settings.gpu_layers is not None:
        return LoadPlan(opts, n_layers, None, "")
    gpus = detect_gpus() if gpus is None else gpus
    free = sum(g.free_bytes for g in gpus)
    if not gpus or not n_layers:  # an offload build with no GPU we can measure: llama.cpp decides
        return LoadPlan(opts, n_layers, None, "")
    train = _meta_int(header.metadata, f"{header.architecture}.context_length")
    heads = _meta_int(header.metadata, f"{header.architecture}.attention.head_count")
    # Without flash attention llama.cpp keeps f32 attention scores for a 512-token batch.
    scratch = 512 * heads * 4 if settings.flash_attn is False and isinstance(heads, int) else 0
    fit = auto_fit(
        model_bytes=header.file_size,
        n_layers=n_layers,
        kv_per_token=kv_bytes_per_token(header, settings.kv_type),
        free_bytes=free,
        margin_bytes=margin_bytes * len(gpus),
        n_ctx_train=train if isinstance(train, int) else None,
        ctx=settings.ctx,
        gpu_layers=settings.gpu_layers,
        scratch_per_token=scratch,
    )
    opts = replace(opts, n_ctx=fit.n_ctx, n_gpu_layers=fit.gpu_layers)
    note = "" if fit.reason == "everything fits" else f"auto-fit: {fit.describe()}"
    return LoadPlan(opts, n_layers, fit, note)


OOM_MARKERS = (
    "out of memory",
    "failed to allocate",
    "cudamalloc",
    "unable to allocate",
    "not enough memory",
    "insufficient memory",
    "failed to create llama_context",
)


def is_oom_error(message: str, log_line: str | None = None) -> bool:
    """Whether a failed load looks like running out of (GPU) memory."""
    text = f"{message}\n{log_line or ''}".lower()
    return any(m in text for m in OOM_MARKERS)


def next_smaller(
    opts: LoadOptions,
    n_layers: int,
    *,
    fixed_ctx: bool = False,
    fixed_layers: bool = False,
    ctx_min: int = CTX_MIN,
    ctx_floor: int = 2048,
) -> LoadOptions | None:
    """The next, smaller attempt after `opts` ran out of memory; None when there is none left.

    Halves the context down to `ctx_min`; then moves a quarter of the layers back to the CPU
    at a time (down to none); then halves the context again down to `ctx_floor`. What the user
    fixed with a flag is never changed.
    """
    ctx = opts.n_ctx or (CTX_CPU if opts.n_gpu_layers == 0 else CTX_PREFERRED)
    layers = n_layers if opts.n_gpu_layers is None else min(opts.n_gpu_layers, n_layers)
    if not fixed_ctx and ctx > ctx_min:
        return replace(opts, n_ctx=max(ctx_min, ctx // 2), n_gpu_layers=layers)
    if not fixed_layers and layers > 0:
        step = max(1, n_layers // 4)
        return replace(opts, n_ctx=ctx, n_gpu_layers=max(0, layers - step))
    if not fixed_ctx and ctx > ctx_floor:
        return replace(opts, n_ctx=max(ctx_floor, ctx // 2), n_gpu_layers=layers)
    return None


def describe_options(opts: LoadOptions, n_layers: int) -> str:
    layers = n_layers if opts.n_gpu_layers is None else min(opts.n_gpu_layers, n_layers)
    return f"{layers}/{n_layers} layers on the GPU, context {opts.n_ctx or 'default'}"


def load_fitted(
    path: Any,
    header: GGUFHeader,
    settings: Settings,
    *,
    name: str | None = None,
    on_note: Callable[[str], None] | None = None,
    factory: Callable[..., Any] | None = None,
    plan: LoadPlan | None = None,
) -> Any:
    """Load a model with auto-fitted options; when it runs out of memory, retry smaller.

    `on_note` hears one line per decision worth telling the user (what auto-fit chose, each
    retry). `factory` builds the engine (LlamaEngine by default) from (path, options, name=,
    header=). A failure that is not about memory, or the last smaller attempt failing, raises.
    """
    from r1chat.engines.llama import last_log_error
    from r1chat.errors import R1ChatError

    if factory is None:
        from r1chat.engines.llama import LlamaEngine

        factory = LlamaEngine
    plan = plan or plan_load(header, settings)
    say = on_note or (lambda _line: None)
    if plan.note:
        say(plan.note)
    opts = plan.options
    while True:
        try:
            return factory(path, opts, name=name, header=header)
        except R1ChatError as e:
            smaller = next_smaller(
                opts,
                plan.n_layers,
                fixed_ctx=settings.ctx is not None,
                fixed_layers=settings.gpu_layers is not None,
            )
            if smaller is None or not is_oom_error(str(e), last_log_error()):
                raise
            say(
                f"out of memory with {describe_options(opts, plan.n_layers)};"
                f" retrying with {describe_options(smaller, plan.n_layers)}"
            )
            opts = smaller
