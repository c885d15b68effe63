"""llama.cpp's process-wide set-up: imported once, its log routed into a buffer (echoed with
R1CHAT_LOG=1) so a failure can be explained in one line, and the name of its GPU backend."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections import deque
from typing import Any

from r1chat.errors import R1ChatError

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
