"""The status line: model, backend, context used, live speed and time to first token."""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.content import Content
from textual.widgets import Static

from r1chat.engines.base import ModelInfo
from r1chat.sanitize import sanitize
from r1chat.tui.text import count


@dataclass(frozen=True)
class StatusInfo:
    state: str = "loading"  # loading, ready, generating, stopped, error, retrying
    model: str = ""
    backend: str = ""
    gpu_layers: int = 0
    n_layers: int = 0
    ctx_used: int = 0
    ctx_total: int = 0
    tok_s: float | None = None
    ttft_s: float | None = None
    preset: str | None = None
    thinking: bool = False  # the live speed is the thinking's
    budget: int | None = None  # the thinking budget of the next questions
    download: str = ""  # "1.2 of 4.7 GB" while a first-use download runs
    samples: int = 1  # replies sampled at once for the next questions


def status_text(s: StatusInfo) -> str:
    parts = [s.model or "no model"]
    if s.state == "loading":
        parts.append(f"downloading {s.download}…" if s.download else "loading…")
    elif s.state == "error":
        parts.append("not loaded")
    elif s.state == "retrying":
        parts.append("unreachable, trying again")
    else:
        backend = s.backend or "CPU"
        if s.gpu_layers:
            # llama.cpp counts the output layer too: 29 of a 28-layer model means all of them.
            backend += f" {min(s.gpu_layers, s.n_layers)}/{s.n_layers} layers"
        parts.append(backend)
        if s.ctx_total:
            pct = 100 * s.ctx_used / s.ctx_total
            parts.append(f"ctx {count(s.ctx_used)}/{count(s.ctx_total)} ({pct:.0f}%)")
        if s.tok_s is not None:
            parts.append(f"{'thinking ' if s.thinking else ''}{s.tok_s:.1f} tok/s")
        if s.ttft_s is not None:
            parts.append(f"TTFT {s.ttft_s:.2f}s")
        if s.state in ("generating", "stopped"):
            parts.append(s.state)
    if s.preset:
        parts.append(f"preset: {s.preset}")
    if s.samples > 1:
        parts.append(f"{s.samples} samples")
    if s.budget is not None:
        parts.append("no thinking" if s.budget == 0 else f"thinking budget {count(s.budget)}")
    return "  ·  ".join(parts)


class StatusLine(Static):
    """One line at the bottom; the model name comes from the file, so it is never markup."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.info = StatusInfo()

    def show_model(self, info: ModelInfo, budget: int | None, samples: int) -> None:
        """The model is loaded: its name (from the file or server: sanitised) and backend."""
        self.set(
            state="ready",
            model=sanitize(info.name),
            backend=sanitize(info.backend),
            gpu_layers=info.n_gpu_layers,
            n_layers=info.n_layers,
            ctx_total=info.n_ctx,
            budget=budget if info.thinks else None,
            samples=samples,
        )

    def show_download(self, done: int, total: int | None) -> None:
        shown = f"{done / 1e9:.2f} of {total / 1e9:.2f} GB" if total else f"{done / 1e9:.2f} GB"
        self.set(download=shown)

    def set(self, **changes: object) -> None:
        info = replace(self.info, **changes)  # type: ignore[arg-type]
        if info != self.info:
            self.info = info
            # One fixed-size line: a repaint, never a layout pass (that costs the whole screen).
            self.update(Content(status_text(info)), layout=False)
