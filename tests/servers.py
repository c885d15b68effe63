"""Real OpenAI-compatible servers on loopback for the remote engine's tests, and a replay server
for the formats no server here can produce (current vLLM's `reasoning`, Ollama's)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_llama_cpp_server(
    model: Path, log: Path, *, alias: str, n_ctx: int = 2048, api_key: str | None = None
) -> Server:
    """llama-cpp-python's own server (`python -m llama_cpp.server`) on a free port."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "2",
    ]
    if api_key:
        cmd += ["--api_key", api_key]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return _started(cmd, log, port, "/v1/models", headers)


def _started(
    cmd: list[str], log: Path, port: int, ready: str, headers: dict[str, str] | None = None
) -> Server:
    """Run `cmd` (a server on `port`, its output to `log`) until GET `ready` answers 200."""
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}/v1", proc, log)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
        try:
            url = f"http://127.0.0.1:{port}{ready}"
            if httpx.get(url, headers=headers or {}, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{' '.join(cmd[:3])} did not start")


# --- replay ------------------------------------------------------------------------------------

Chunk = dict[str, Any]


def chunk(delta: dict[str, Any], finish: str | None = None, model: str = "m") -> Chunk:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


@dataclass
class Reply:
    """One response of the replay server: an SSE stream of `events` (JSON chunks or raw lines),
    or a `status` with a JSON `body`."""

    events: Sequence[Chunk | str] = field(default_factory=list)
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    done: bool = True  # end with data: [DONE]
    pause_s: float = 0.0  # before the first event
    gap_s: float = 0.0  # between events
    hang_s: float = 0.0  # before anything, even the response headers (a stalled server)
    # Sent instead of the rest of `events` once a POST /v1/chat/completions/control came
    # (llama-server ending the thinking on request: its closing text, then the answer).
    on_control: Sequence[Chunk | str] | None = None


class ReplayServer:
    """Serves /v1/models and answers each POST /v1/chat/completions with the next Reply;
    records what each request sent (body and headers)."""

    def __init__(
        self, replies: list[Reply], models: list[dict[str, Any]] | None = None, port: int = 0
    ) -> None:
        self.replies = list(replies)
        self.models = models or [{"id": "m", "object": "model"}]
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.extra: dict[str, Any] = {}  # path -> JSON, e.g. "/props"
        self.models_hang_s = 0.0  # GET /v1/models answers only after this long
        self.models_reply: Reply | None = None  # an error for GET /v1/models instead
        self.gets: list[str] = []  # the paths asked for, in order
        self.closing = threading.Event()  # ends every hang at once when the server closes
        self.in_flight = 0
        self.peak = 0  # the most chat requests served at once
        # POST /v1/chat/completions/control bodies, and the answer each gets (None: a 404, as a
        # server without the endpoint gives).
        self.controls: list[dict[str, Any]] = []
        self.control_answer: Any = None
        self.controlled = threading.Event()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer.gets.append(self.path)
                if self.path == "/v1/models" and outer.models_hang_s:
                    outer.closing.wait(outer.models_hang_s)
                if self.path == "/v1/models" and outer.models_reply is not None:
                    self._json(outer.models_reply.status, outer.models_reply.body)
                elif self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": outer.models})
                elif self.path in outer.extra:
                    self._json(200, outer.extra[self.path])
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                if self.path.endswith("/chat/completions/control"):
                    outer.controls.append(body)
                    if outer.control_answer is None:
                        self._json(404, {"error": {"message": "not found"}})
                    else:
                        outer.controlled.set()
                        self._json(200, outer.control_answer)
                    return
                outer.requests.append((body, dict(self.headers.items())))
                with lock:
                    reply = outer.replies.pop(0) if outer.replies else Reply(status=500, body={})
                    outer.in_flight += 1
                    outer.peak = max(outer.peak, outer.in_flight)
                try:
                    self._reply(reply)
                finally:
                    with lock:
                        outer.in_flight -= 1

            def _reply(self, reply: Reply) -> None:
                if reply.hang_s:
                    outer.closing.wait(reply.hang_s)
                if reply.status != 200:
                    self._json(reply.status, reply.body, reply.headers)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                time.sleep(reply.pause_s)
                try:
                    events = list(reply.events)
                    while events:
                        if reply.on_control is not None and outer.controlled.is_set():
                            events = list(reply.on_control)
                            reply.on_control = None
                            continue
                        ev = events.pop(0)
                        line = ev if isinstance(ev, str) else f"data: {json.dumps(ev)}"
                        self.wfile.write(f"{line}\n\n".encode())
                        self.wfile.flush()
                        if reply.gap_s:
                            time.sleep(reply.gap_s)
                    if reply.done:
                        self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:
                    pass  # the client went away (a stop)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def start_llama_server(
    binary: str,
    model: Path,
    log: Path,
    *,
    alias: str,
    n_ctx: int = 2048,
    reasoning_format: str = "deepseek",
    template: Path | None = None,
) -> Server:
    """llama.cpp's own `llama-server` (scripts/llama-server builds it), by default with
    DeepSeek's reasoning format: the thinking comes in `reasoning_content` ("none": inline tags
    in the content). `template`: a chat template file instead of the model's."""
    port = free_port()
    cmd = [
        binary, "-m", str(model), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
        "-c", str(n_ctx), "-t", "2", "-np", "1", "--reasoning-format", reasoning_format,
    ]  # fmt: skip
    if template is not None:
        cmd += ["--chat-template-file", str(template)]
    return _started(cmd, log, port, "/health")
