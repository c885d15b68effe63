"""What the remote engine costs the client per streamed token, and a server beside the local
engine on the same GGUF.

1. Client cost: a loopback server in another process streams N chunks in current vLLM's shape
   (thinking in `delta.reasoning`, then the answer in `content`) as fast as the socket takes
   them. The client reads them two ways, and the CPU time of this process is divided by N:

     bare     httpx's stream, lines, json.loads per chunk: the least a Python client can do
     r1chat   RemoteEngine under run_turn (the turn's splitter, the loop guard, events): what
              the app and `ask` do

   Target: r1chat ≤ 50 µs per token, so a 300 tok/s stream costs the client ~1.5 % of a core.

2. With --llama-server PATH (or $R1CHAT_LLAMA_SERVER; `scripts/llama-server` builds one): time to
   first token and decode speed of `r1chat bench` on the local engine and through llama-server,
   on the same GGUF (default: the tests' noise model), in one run.

    python benchmarks/remote_overhead.py [--tokens 20000] [--llama-server PATH] [--model GGUF]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
n = int(sys.argv[1])
def chunk(delta):
    return ("data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1,
        "model": "r1", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        + "\n\n").encode()
think = n * 3 // 4
body = b"".join(chunk({"reasoning": f" w{i}"}) for i in range(think))
body += b"".join(chunk({"content": f" a{i}"}) for i in range(n - think))
body += b"data: [DONE]\n\n"
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        data = json.dumps({"object": "list", "data": [{"id": "r1"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200); self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def bare(base: str, n: int) -> int:
    import httpx

    count = 0
    body = {"model": "r1", "messages": [{"role": "user", "content": "q"}], "stream": True}
    with (
        httpx.Client() as client,
        client.stream("POST", base + "/chat/completions", json=body) as r,
    ):
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("reasoning") or delta.get("content"):
                    count += 1
    return count


def r1chat(base: str, n: int) -> int:
    from r1chat.engines.remote import RemoteEngine
    from r1chat.sampling import SamplingParams
    from r1chat.turn import Delta, TurnDone, run_turn

    engine = RemoteEngine(base)
    count = 0
    for ev in run_turn(engine, [], "q", SamplingParams(max_tokens=n + 10)):
        if isinstance(ev, Delta):
            count += 1
        elif isinstance(ev, TurnDone):
            assert ev.result.stats.completion_tokens == n, ev.result.stats
    engine.close()
    return count


def client_cost(n: int, rounds: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(n)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}/v1"
        results: dict[str, list[float]] = {"bare": [], "r1chat": []}
        for _ in range(rounds):
            for name, fn in (("bare", bare), ("r1chat", r1chat)):
                c0 = time.process_time()
                fn(base, n)
                results[name].append((time.process_time() - c0) / n * 1e6)
        print(f"client CPU per streamed token, {n:,} tokens, best of {rounds} (µs):")
        b, r = min(results["bare"]), min(results["r1chat"])
        print(f"  bare httpx + json   {b:6.1f}")
        print(f"  r1chat remote turn  {r:6.1f}   ({r / b:.2f}x bare; target ≤ 50)")
        print(f"  at 300 tok/s the client uses {r * 300 / 1e4:.1f} % of a core")
    finally:
        proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def side_by_side(server_bin: str, model: Path, tokens: int) -> None:
    from r1chat.bench import run_bench, run_remote_bench
    from r1chat.engines.llama import LoadOptions
    from r1chat.engines.remote import RemoteEngine

    threads = os.cpu_count() or 1
    port = free_port()
    proc = subprocess.Popen(
        [server_bin, "-m", str(model), "--port", str(port), "--host", "127.0.0.1", "-c", "4096",
         "-t", str(threads), "--reasoning-format", "deepseek", "-np", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import httpx

        end = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                raise SystemExit("llama-server did not start")
            time.sleep(0.3)
        engine = RemoteEngine(f"http://127.0.0.1:{port}/v1")
        rows: list[tuple[str, dict[str, Any]]] = []
        for _ in range(2):  # alternate, so a noisy machine slows both alike
            opts = LoadOptions(n_ctx=4096, n_threads=threads)
            rows.append(("local", run_bench(model, opts, tokens=tokens, prompt_tokens=512)))
            rows.append(
                ("llama-server", run_remote_bench(engine, tokens=tokens, prompt_tokens=512))
            )
        engine.close()
        print(f"\n{model.name}, {tokens} tokens after a ~512-token prompt, {threads} threads:")
        print(f"  {'engine':<14}{'TTFT s':>9}{'decode tok/s':>14}")
        for name, r in rows:
            print(f"  {name:<14}{r['ttft_s']:>9.3f}{r['decode_tok_s']:>14.1f}")
        local = max(r["decode_tok_s"] for n, r in rows if n == "local")
        remote = max(r["decode_tok_s"] for n, r in rows if n == "llama-server")
        print(f"  decode, llama-server / local (best of 2): {remote / local:.3f}")
    finally:
        proc.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--llama-server", default=os.environ.get("R1CHAT_LLAMA_SERVER"))
    p.add_argument("--model", type=Path, default=ROOT / "tests/.models/tiny-r1-noise.gguf")
    p.add_argument("--server-tokens", type=int, default=512)
    a = p.parse_args()
    client_cost(a.tokens, a.rounds)
    if a.llama_server:
        side_by_side(a.llama_server, a.model, a.server_tokens)
    else:
        print("\n(llama-server: not given; scripts/llama-server builds one)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
