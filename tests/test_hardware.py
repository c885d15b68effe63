"""Hardware: the build's backend, GPU discovery, KV-cache sizes and the auto-fit arithmetic."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
from tiny_models import header_part

from r1chat.config import Settings
from r1chat.engines.llama import LoadOptions
from r1chat.errors import R1ChatError
from r1chat.gguf_header import GGUFHeader, read_header
from r1chat.hardware import (
    GPU,
    BuildInfo,
    GiB,
    MiB,
    auto_fit,
    build_info,
    detect_gpus,
    is_oom_error,
    kv_bytes_per_token,
    load_fitted,
    model_layers,
    next_smaller,
    parse_nvidia_smi,
    plan_load,
)

Q4KM_7B = 4_683_073_504  # bytes in the 7B Q4_K_M file
KV_7B_F16 = 56 * 1024  # 2 x 28 layers x 4 KV heads x 128 x 2 bytes


@pytest.fixture(scope="module")
def header_7b() -> GGUFHeader:
    """The real 7B's header (its first bytes ship in a test package), sized as the full file."""
    h = read_header(header_part(), check_size=False)
    return dataclasses.replace(h, file_size=Q4KM_7B)


# --- KV cache size from the metadata -----------------------------------------------------------


def test_kv_bytes_per_token_of_the_7b(header_7b: GGUFHeader) -> None:
    assert model_layers(header_7b) == 28
    assert kv_bytes_per_token(header_7b, "f16") == KV_7B_F16
    assert kv_bytes_per_token(header_7b, "q8_0") == 2 * 28 * 4 * 128 * 34 // 32
    assert kv_bytes_per_token(header_7b, "q4_0") < kv_bytes_per_token(header_7b, "q8_0")


def test_kv_bytes_per_token_of_the_tiny_model(noise_model: Path) -> None:
    h = read_header(noise_model)  # 2 layers, width 64, 4 heads (2 KV): head size 16
    assert kv_bytes_per_token(h, "f16") == 2 * 2 * 2 * 16 * 2


# --- auto-fit ----------------------------------------------------------------------------------


def fit(free: float, **kw: object):  # type: ignore[no-untyped-def]
    args: dict = {
        "model_bytes": Q4KM_7B,
        "n_layers": 28,
        "kv_per_token": KV_7B_F16,
        "free_bytes": int(free * GiB),
    }
    args.update(kw)
    return auto_fit(**args)


def test_everything_fits_on_a_24_gib_gpu() -> None:
    f = fit(24)
    assert (f.gpu_layers, f.n_ctx, f.fits) == (28, 32768, True)
    assert f.kv_on_gpu == 32768 * KV_7B_F16  # 1.75 GiB
    assert f.weights_on_gpu == Q4KM_7B


def test_an_8_gib_gpu_still_takes_all_layers_and_32k() -> None:
    # 4.36 GiB weights + 1.75 GiB KV = 6.1 GiB, under 8 - 1 GiB margin.
    f = fit(8)
    assert (f.gpu_layers, f.n_ctx) == (28, 32768)


def test_a_6_gib_gpu_shrinks_the_context_first() -> None:
    f = fit(6)
    assert f.gpu_layers == 28 and 8192 <= f.n_ctx < 32768 and f.fits
    assert f.n_ctx % 1024 == 0
    bigger = f.n_ctx + 1024
    assert Q4KM_7B + bigger * KV_7B_F16 > f.budget  # the next step up would not fit
    assert f.budget == 5 * GiB


def test_a_4_gib_gpu_moves_layers_to_the_cpu_at_8k() -> None:
    f = fit(4)
    assert f.n_ctx == 8192 and 0 < f.gpu_layers < 28 and f.fits
    per_layer = Q4KM_7B / 28 + 8192 * KV_7B_F16 / 28
    assert (f.gpu_layers + 1) * per_layer > 3 * GiB >= f.gpu_layers * per_layer


def test_no_room_at_all_means_the_cpu() -> None:
    f = fit(0.9)
    assert (f.gpu_layers, f.n_ctx) == (0, 8192)


def test_q8_0_kv_cache_fits_more_context_than_f16() -> None:
    f16 = fit(6.5)
    q8 = fit(6.5, kv_per_token=2 * 28 * 4 * 128 * 34 // 32)
    assert f16.n_ctx < 32768 and q8.n_ctx > f16.n_ctx


def test_flags_are_kept_and_only_the_rest_is_fitted() -> None:
    by_layers = fit(6, gpu_layers=14)
    assert by_layers.gpu_layers == 14 and by_layers.n_ctx == 32768  # half the layers: room
    by_ctx = fit(4, ctx=32768)
    assert by_ctx.n_ctx == 32768 and 0 < by_ctx.gpu_layers < fit(4).gpu_layers
    both = fit(2, ctx=32768, gpu_layers=28)
    assert (both.gpu_layers, both.n_ctx, both.fits) == (28, 32768, False)


def test_context_is_capped_at_the_models_training_length() -> None:
    f = fit(24, n_ctx_train=4096)
    assert f.n_ctx == 4096


def test_attention_scratch_without_flash_attention_costs_context() -> None:
    plain = fit(6)
    scratch = fit(6, scratch_per_token=512 * 28 * 4)
    assert scratch.n_ctx < plain.n_ctx


# --- the out-of-memory retry -------------------------------------------------------------------


def test_next_smaller_shrinks_context_then_layers_then_context() -> None:
    opts = LoadOptions(n_ctx=32768, n_gpu_layers=28)
    seen = []
    while (opts := next_smaller(opts, 28)) is not None:  # type: ignore[assignment]
        seen.append((opts.n_ctx, opts.n_gpu_layers))
    assert seen == [
        (16384, 28),
        (8192, 28),
        (8192, 21),
        (8192, 14),
        (8192, 7),
        (8192, 0),
        (4096, 0),
        (2048, 0),
    ]


def test_next_smaller_never_changes_what_flags_fixed() -> None:
    opts = LoadOptions(n_ctx=32768, n_gpu_layers=28, kv_type="q8_0")
    s = next_smaller(opts, 28, fixed_ctx=True)
    assert s is not None and (s.n_ctx, s.n_gpu_layers, s.kv_type) == (32768, 21, "q8_0")
    s = next_smaller(opts, 28, fixed_layers=True)
    assert s is not None and (s.n_ctx, s.n_gpu_layers) == (16384, 28)
    assert next_smaller(opts, 28, fixed_ctx=True, fixed_layers=True) is None


def test_next_smaller_from_defaults_assumes_all_layers_and_32k() -> None:
    s = next_smaller(LoadOptions(), 28)
    assert s is not None and (s.n_ctx, s.n_gpu_layers) == (16384, 28)


def test_oom_messages_are_recognised() -> None:
    assert is_oom_error("could not create a context of 32768 tokens: out of memory?")
    assert is_oom_error(
        "could not load model x.gguf: llama.cpp could not load it",
        "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4.2 GiB on "
        "device 0: cudaMalloc failed: out of memory",
    )
    assert not is_oom_error("could not load model x.gguf: unknown model architecture: 'foo'")


# --- the machine -------------------------------------------------------------------------------


def test_this_cpu_build_reports_cpu_without_offload() -> None:
    b = build_info()
    assert b.error is None and b.version == "0.3.36"
    assert (b.backend, b.gpu_offload) == ("CPU", False)
    assert "CPU" in b.system_info


def test_parse_nvidia_smi() -> None:
    text = "NVIDIA H200, 143771, 142000\nNVIDIA GeForce RTX 4090, 24564, [N/A]\n\n"
    assert parse_nvidia_smi(text) == [GPU("NVIDIA H200", "nvidia", 143771 * MiB, 142000 * MiB)]


def test_detect_gpus_runs_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA RTX 4090, 24564, 20000'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert detect_gpus() == [GPU("NVIDIA RTX 4090", "nvidia", 24564 * MiB, 20000 * MiB)]


def test_no_gpu_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi; not a Mac
    assert detect_gpus() == []


# --- the load plan -----------------------------------------------------------------------------

CUDA = BuildInfo("CUDA", True, "CUDA : ARCHS = 900")


def test_plan_on_a_cpu_build_keeps_the_settings(header_7b: GGUFHeader) -> None:
    cpu = BuildInfo("CPU", False, "CPU : AVX2 = 1")
    plan = plan_load(header_7b, Settings(ctx=4096), build=cpu, gpus=[])
    assert plan.fit is None and plan.note == ""
    assert (plan.options.n_ctx, plan.options.n_gpu_layers) == (4096, None)


def test_plan_fits_a_small_gpu_and_says_so(header_7b: GGUFHeader) -> None:
    gpu = GPU("RTX 3060", "nvidia", 8 * GiB, int(6.5 * GiB))
    plan = plan_load(header_7b, Settings(), build=CUDA, gpus=[gpu])
    assert plan.fit is not None and plan.n_layers == 28
    assert plan.options.n_gpu_layers == 28 and 8192 <= (plan.options.n_ctx or 0) < 32768
    assert plan.note.startswith("auto-fit: all layers on the GPU, context ")


def test_plan_on_a_big_gpu_is_quiet(header_7b: GGUFHeader) -> None:
    gpu = GPU("NVIDIA H200", "nvidia", 140 * GiB, 139 * GiB)
    plan = plan_load(header_7b, Settings(kv_type="q8_0"), build=CUDA, gpus=[gpu])
    assert (plan.options.n_ctx, plan.options.n_gpu_layers, plan.options.kv_type) == (
        32768,
        28,
        "q8_0",
    )
    assert plan.note == ""


def test_plan_keeps_flags(header_7b: GGUFHeader) -> None:
    gpu = GPU("RTX 3060", "nvidia", 6 * GiB, int(5.5 * GiB))
    plan = plan_load(header_7b, Settings().with_flags(gpu_layers=10), build=CUDA, gpus=[gpu])
    assert plan.options.n_gpu_layers == 10 and plan.options.n_ctx == 32768


# --- loading with auto-fit and the retry -------------------------------------------------------


class OOMFactory:
    """Fails like llama.cpp out of memory until the options are small enough."""

    def __init__(self, max_ctx: int, max_layers: int) -> None:
        self.max_ctx, self.max_layers = max_ctx, max_layers
        self.tried: list[tuple[int | None, int | None]] = []

    def __call__(self, path: object, opts: LoadOptions, **kw: object) -> LoadOptions:
        self.tried.append((opts.n_ctx, opts.n_gpu_layers))
        if (opts.n_ctx or 0) > self.max_ctx or (opts.n_gpu_layers or 0) > self.max_layers:
            raise R1ChatError(f"could not create a context of {opts.n_ctx} tokens: out of memory?")
        return opts


def test_load_fitted_retries_smaller_and_says_what_it_chose(header_7b: GGUFHeader) -> None:
    big = GPU("NVIDIA H200", "nvidia", 140 * GiB, 139 * GiB)
    plan = plan_load(header_7b, Settings(), build=CUDA, gpus=[big])
    notes: list[str] = []
    factory = OOMFactory(max_ctx=8192, max_layers=20)
    got = load_fitted(
        "x.gguf", header_7b, Settings(), plan=plan, factory=factory, on_note=notes.append
    )
    assert factory.tried == [(32768, 28), (16384, 28), (8192, 28), (8192, 21), (8192, 14)]
    assert (got.n_ctx, got.n_gpu_layers) == (8192, 14)
    assert notes[0] == (
        "out of memory with 28/28 layers on the GPU, context 32768; retrying"
        " with 28/28 layers on the GPU, context 16384"
    )
    assert len(notes) == 4


def test_load_fitted_does_not_retry_other_errors(header_7b: GGUFHeader) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise R1ChatError("could not load model x.gguf: unknown model architecture: 'foo'")

    plan = plan_load(header_7b, Settings(), build=CUDA, gpus=[GPU("g", "nvidia", GiB, GiB)])
    with pytest.raises(R1ChatError, match="unknown model architecture"):
        load_fitted("x.gguf", header_7b, Settings(), plan=plan, factory=broken)


def test_load_fitted_gives_up_when_flags_fix_everything(header_7b: GGUFHeader) -> None:
    settings = Settings().with_flags(ctx=32768, gpu_layers=28)
    factory = OOMFactory(max_ctx=8192, max_layers=28)
    with pytest.raises(R1ChatError, match="out of memory"):
        load_fitted(
            "x.gguf",
            header_7b,
            settings,
            factory=factory,
            plan=plan_load(header_7b, settings, build=CUDA, gpus=[]),
        )
    assert factory.tried == [(32768, 28)]


def test_load_fitted_loads_the_real_tiny_model_here(noise_model: Path) -> None:
    engine = load_fitted(noise_model, read_header(noise_model), Settings(ctx=256), name="tiny")
    try:
        assert (engine.info.name, engine.info.n_ctx, engine.info.backend) == ("tiny", 256, "CPU")
    finally:
        engine.close()
