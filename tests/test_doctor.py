"""`r1chat doctor` on this machine (a CPU build of llama.cpp, no GPU)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke, run_cli

from r1chat.commands.doctor import doctor, run_checks

NAMES = [
    "python",
    "packages",
    "llama.cpp",
    "gpu",
    "paths",
    "config",
    "model cache",
    "grading",
    "model",
]


def run_doctor(*args: str) -> tuple[int, dict[str, Any]]:
    out = invoke(doctor, "doctor", "--json", *args)
    data = json.loads(out.stdout)
    return out.exit_code, data


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in data["checks"]}


def test_all_checks_pass_with_a_loadable_model(
    r1home: Path, noise_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R1CHAT_MODEL", str(noise_model))
    code, data = run_doctor()
    checks = by_name(data)
    assert code == 0 and data["ok"] is True
    assert [c["name"] for c in data["checks"]] == NAMES
    assert checks["llama.cpp"]["detail"] == "backend CPU, no GPU offload"
    assert checks["gpu"]["status"] == "ok" and "no GPU found" in checks["gpu"]["detail"]
    assert "llama-cpp-python 0.3.36" in checks["packages"]["detail"]
    assert str(r1home) in checks["paths"]["detail"]
    model = checks["model"]
    assert model["status"] == "ok" and "loads in" in model["detail"]
    assert "(CPU, 0/2 layers on the GPU)" in model["detail"]


def test_default_model_not_downloaded_is_a_warning_and_is_not_loaded(r1home: Path) -> None:
    code, data = run_doctor()
    model = by_name(data)["model"]
    assert code == 0 and data["ok"] is True
    assert (
        model["status"] == "warn" and "r1-7b is not downloaded; loading skipped" in model["detail"]
    )
    assert model["fix"].startswith("r1chat models pull r1-7b")


def test_a_broken_model_file_fails(
    r1home: Path, noise_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    half = tmp_path / "half.gguf"
    half.write_bytes(noise_model.read_bytes()[: noise_model.stat().st_size // 2])
    monkeypatch.setenv("R1CHAT_MODEL", str(half))
    code, data = run_doctor()
    model = by_name(data)["model"]
    assert code == 1 and data["ok"] is False
    assert model["status"] == "fail" and "truncated GGUF" in model["detail"] and model["fix"]


def test_an_invalid_config_file_fails_with_its_line(r1home: Path) -> None:
    (r1home / "config.toml").write_text('[gpu]\nkv_type = "q5"\n')
    code, data = run_doctor()
    config = by_name(data)["config"]
    assert code == 1
    assert config["status"] == "fail" and "config.toml:2: kv_type" in config["detail"]
    assert by_name(data)["model"]["status"] == "warn"


def test_an_nvidia_gpu_with_a_cpu_build_says_how_to_reinstall(
    r1home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 'NVIDIA GeForce RTX 4090, 24564, 23000'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    gpu = {c.name: c for c in run_checks(load=False)}["gpu"]
    assert gpu.status == "warn"
    assert "NVIDIA GeForce RTX 4090: 22.5 of 24.0 GiB free" in gpu.detail
    assert gpu.fix is not None
    assert gpu.fix.startswith(
        "an NVIDIA GPU is present but llama-cpp-python was built without"
        ' CUDA: reinstall with CMAKE_ARGS="-DGGML_CUDA=on" pip install'
    )


def test_text_output_has_one_line_per_check_and_a_fix(r1home: Path) -> None:
    out = invoke(doctor, "doctor", "--no-load")
    lines = out.stdout.splitlines()
    assert out.exit_code == 0
    assert [ln.split()[0] for ln in lines if not ln.startswith(" ")] == [
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
        "warn",
    ]
    assert lines[-1].strip().startswith("fix: r1chat models pull r1-7b")


def test_doctor_is_registered_on_the_main_cli(r1home: Path, noise_model: Path) -> None:
    r = run_cli("doctor", "--json", home=r1home, env={"R1CHAT_MODEL": str(noise_model)})
    assert r.returncode == 0, r.stderr.decode()
    data = json.loads(r.stdout)
    assert [c["name"] for c in data["checks"]] == NAMES
    assert by_name(data)["model"]["status"] == "ok"


def test_doctor_checks_the_model_or_server_the_flags_name(
    r1home: Path, noise_model: Path, scripted_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-m and --api-base, as every other command has them."""
    monkeypatch.setenv("R1CHAT_MODEL", str(noise_model))
    code, data = run_doctor("-m", str(scripted_model))
    assert code == 0, [c for c in data["checks"] if c["status"] == "fail"]
    assert str(scripted_model) in by_name(data)["model"]["detail"]
    from servers import ReplayServer

    monkeypatch.delenv("R1CHAT_MODEL")  # with --api-base, --model names the server's model
    server = ReplayServer([], models=[{"id": "r1-served"}])
    try:
        code, data = run_doctor("--api-base", server.base, "--no-load")
    finally:
        server.close()
    assert code == 0, [c for c in data["checks"] if c["status"] == "fail"]
    assert "model r1-served" in by_name(data)["server"]["detail"]
    code, data = run_doctor("--api-base", "http://127.0.0.1:9/v1", "--no-load")
    assert code == 1 and by_name(data)["server"]["status"] == "fail"
