"""What r1chat's Python layer costs per token against a bare C-level decode loop, long replies.

Decodes the same prompt on the same GGUF with the same settings (temperature 0.6, top-p 0.95,
top-k 40, fixed seed, end of sequence ignored) four ways:

  bare     llama_decode + llama.cpp's native sampler chain through llama_cpp's ctypes API: the
           least any Python program can do per token (no detokenization at all)
  r1chat   r1chat.turn.run_turn on LlamaEngine: engine, detokenization and the reasoning
           splitter, every event consumed, no UI
  stock    llama-cpp-python's Llama.create_completion(stream=True), for reference
  llama-bench  the C++ tool, when $LLAMA_BENCH is set or llama-bench is on PATH: tg at the depth
           of each window (it cannot run beside the others, so it runs after them)

The three Python variants own separate contexts and advance in turns of --step tokens (in a
rotating order), so a noisy, shared machine slows all of them alike; each window's speed is its
tokens over the time spent inside that variant. The ratio r1chat/bare per window is the figure.

    python benchmarks/engine_overhead.py [MODEL.gguf] [--tokens 8000] [--quick]

Without a model it uses (and if needed builds) tests/.models/tiny-r1-noise.gguf: two layers with
the real 152k vocabulary, so the per-token cost outside the model weighs as much as it can.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r1chat.engines.base import Event, Token  # noqa: E402
from r1chat.engines.llama import ALL_LAYERS, LlamaEngine, LoadOptions, init_backend  # noqa: E402
from r1chat.prompts import ChatMessage  # noqa: E402
from r1chat.sampling import SamplingParams  # noqa: E402

TEMPERATURE, TOP_P, TOP_K = 0.6, 0.95, 40


def default_model() -> Path:
    """The tests' noise model, built on first use (it needs the test extras installed)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_models

    return build_models()["noise"]


# --- the variants: generators that yield the number of tokens decoded so far ------------------
#
# Each yields once when its first token is sampled (after the prefill), then every `step`
# tokens, and returns when `n` tokens are done. The driver times the time spent inside them.


@dataclass
class Variant:
    name: str
    gen: Iterator[int]
    tokens: list[int] = field(default_factory=list)  # the first few ids, to compare the paths
    done: bool = False
    count: int = 0
    note: str = ""
    seconds: float = 0.0
    turns: list[tuple[int, int, float]] = field(default_factory=list)  # first, last, seconds
    stop: threading.Event | None = None  # set to cut a variant short (see interleave)


def context_params(ll: Any, n_ctx: int, threads: int, flash: bool) -> Any:
    """The context LlamaEngine makes for these LoadOptions (see LlamaEngine.__init__)."""
    cp = ll.llama_context_default_params()
    cp.n_ctx = n_ctx
    cp.n_batch = cp.n_ubatch = min(512, n_ctx)
    cp.n_threads = cp.n_threads_batch = threads
    cp.flash_attn_type = (
        ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    cp.type_k = cp.type_v = ll.GGML_TYPE_F16
    cp.no_perf = True
    return cp


def bare_loop(
    ll: Any,
    model: Any,
    cparams: Any,
    prompt: list[int],
    n: int,
    step: int,
    seed: int,
    keep: list[int],
) -> Iterator[int]:
    ctx = ll.llama_init_from_model(model, cparams)
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(TOP_K))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(TOP_P, 1))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(TEMPERATURE))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
    try:
        for i in range(0, len(prompt), cparams.n_batch):
            chunk = prompt[i : i + cparams.n_batch]
            arr = (ll.llama_token * len(chunk))(*chunk)
            if ll.llama_decode(ctx, ll.llama_batch_get_one(arr, len(chunk))) != 0:
                raise RuntimeError("bare loop: prefill failed")
        sample, decode = ll.llama_sampler_sample, ll.llama_decode
        one = (ll.llama_token * 1)()
        batch = ll.llama_batch_get_one(one, 1)
        tok = sample(chain, ctx, -1)
        keep.append(tok)
        yield 1
        mark = step
        for i in range(2, n + 1):
            one[0] = tok
            if decode(ctx, batch) != 0:
                raise RuntimeError("bare loop: decode failed (context full?)")
            tok = sample(chain, ctx, -1)
            if i <= 256:
                keep.append(tok)
            if i >= mark:
                yield i
                mark += step
    finally:
        ll.llama_sampler_free(chain)
        ll.llama_free(ctx)


class CountingEngine:
    """Passes an engine's events through, counting tokens (one generator layer: ~0.1 µs)."""

    def __init__(self, engine: LlamaEngine, keep: list[int]) -> None:
        self.engine = engine
        self.info = engine.info
        self.n = 0
        self.keep = keep

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.engine.count_tokens(messages)

    def stream(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        cancel: Any = None,
        control: Any = None,
    ) -> Iterator[Event]:
        # `control` is the turn's default: the loop guard watches every thinking token.
        for ev in self.engine.stream(messages, params, cancel, control):
            if isinstance(ev, Token) and ev.id >= 0:
                self.n += 1
                if self.n <= 256:
                    self.keep.append(ev.id)
            yield ev

    def close(self) -> None:
        self.engine.close()


def engine_path(
    engine: LlamaEngine, prompt: list[int], n: int, step: int, seed: int
) -> Iterator[int]:
    """LlamaEngine.stream_tokens alone (no splitter), each Token's text touched."""
    params = SamplingParams(
        temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K, max_tokens=n, seed=seed, ignore_eos=True
    )
    mark = 1
    count = chars = 0
    for ev in engine.stream_tokens(prompt, params):
        if isinstance(ev, Token):
            chars += len(ev.text)
            if ev.id >= 0:
                count += 1
                if count >= mark:
                    yield count
                    mark = step if mark == 1 else mark + step


def r1chat_path(
    engine: LlamaEngine, question: str, n: int, step: int, seed: int, keep: list[int]
) -> Iterator[int]:
    from r1chat.turn import Delta, TurnDone, run_turn

    counted = CountingEngine(engine, keep)
    params = SamplingParams(
        temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K, max_tokens=n, seed=seed, ignore_eos=True
    )
    mark = 1
    think = answer = 0
    for ev in run_turn(counted, [], question, params):
        if isinstance(ev, TurnDone):
            break
        if not isinstance(ev, Delta):
            continue
        # What a front end does with each event at least: look at its kind and size.
        if ev.kind == "think":
            think += len(ev.text)
        else:
            answer += len(ev.text)
        if counted.n >= mark:
            yield counted.n
            mark = step if mark == 1 else mark + step
    if counted.n < n:
        raise RuntimeError(f"r1chat stopped after {counted.n} tokens")


def stock_path(
    llm: Any, prompt: list[int], n: int, step: int, seed: int, stop: threading.Event
) -> Iterator[int]:
    """create_completion(stream=True), paused every `step` tokens from its stopping criteria.

    Its chunks cannot mark the tokens: it holds text back while the tail is not valid UTF-8
    (then re-detokenizes every held-back prefix on every token), so it runs in a thread that
    the stopping-criteria callback, called once per sampled token, parks at each step.
    """
    go, paused = threading.Semaphore(0), threading.Semaphore(0)
    box: dict[str, Any] = {"count": 0, "finished": False, "error": None}

    def criteria(_ids: Any, _logits: Any) -> bool:
        box["count"] += 1
        c = box["count"]
        if c == 1 or c % step == 0:
            paused.release()
            go.acquire()
        return stop.is_set()

    def work() -> None:
        go.acquire()
        try:
            llm.reset()
            for _chunk in llm.create_completion(
                prompt,
                max_tokens=n,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                top_k=TOP_K,
                min_p=0.0,
                typical_p=1.0,
                repeat_penalty=1.0,
                seed=seed,
                stream=True,
                stopping_criteria=criteria,
            ):
                pass
        except BaseException as e:  # handed to the driver's thread
            box["error"] = e
        finally:
            box["finished"] = True
            paused.release()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    go.release()
    while True:
        paused.acquire()
        if box["finished"]:
            break
        yield min(box["count"], n)
        go.release()
    worker.join()
    if box["error"] is not None:
        raise box["error"]


class CallClock:
    """Wraps llama_decode and llama_sampler_sample to total the time spent inside llama.cpp per
    variant; what is left of a variant's time is its Python work, which noise barely touches."""

    def __init__(self, ll: Any) -> None:
        self.current = ""
        self.inside: dict[str, float] = {}
        for name in ("llama_decode", "llama_sampler_sample"):
            setattr(ll, name, self._wrap(getattr(ll, name)))

    def _wrap(self, fn: Any) -> Any:
        clock = time.perf_counter
        inside = self.inside

        def timed(*args: Any) -> Any:
            t0 = clock()
            out = fn(*args)
            inside[self.current] = inside.get(self.current, 0.0) + clock() - t0
            return out

        return timed


# --- the driver -------------------------------------------------------------------------------


def interleave(
    variants: list[Variant], n: int, window: int, clock: CallClock | None = None
) -> dict[str, list[tuple[int, float]]]:
    """Advance the variants in turns; per variant, (tokens, seconds) per window."""
    out: dict[str, list[tuple[int, float]]] = {v.name: [] for v in variants}
    acc: dict[str, list[float]] = {v.name: [0.0, 0.0] for v in variants}  # tokens, seconds
    # The prefill and first token: not part of any window.
    for v in variants:
        v.count = next(v.gen)
    turn = 0
    while not all(v.done for v in variants):
        live = [v for v in variants if not v.done]
        order = live[turn % len(live) :] + live[: turn % len(live)]
        turn += 1
        for v in order:
            before = v.count
            if clock is not None:
                clock.current = v.name
            t0 = time.perf_counter()
            try:
                v.count = next(v.gen)
            except StopIteration:
                v.done = True
            dt = time.perf_counter() - t0
            v.seconds += dt
            if v.count > before:
                v.turns.append((before, v.count, dt))
            a = acc[v.name]
            a[0] += v.count - before
            a[1] += dt
            # A window closes when its last token is in; tokens past it spill into the next.
            while a[0] and (v.count >= (len(out[v.name]) + 1) * window or v.done):
                out[v.name].append((int(a[0]), a[1]))
                a[0] = a[1] = 0.0
                if v.done:
                    break
            if v.done and v.count < n and not v.note:
                v.note = f"stopped at {v.count} tokens"
            # A reference path that has gone quadratic would take hours: cut it off.
            fastest = min(w.seconds for w in variants)
            if v.stop is not None and not v.stop.is_set() and v.seconds > 4 * fastest + 10:
                v.stop.set()
                v.note = f"cut off after {v.count} tokens: over 4x the time of the fastest variant"
    return out


def find_llama_bench() -> str | None:
    exe = os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench")
    return exe if exe and Path(exe).exists() else None


def llama_bench_windows(
    exe: str, model: Path, prompt_len: int, n: int, window: int, threads: int, ngl: int, flash: bool
) -> tuple[list[float], str]:
    """tg`window` at the depth where each window starts, or one tg`n` when -d is unknown."""
    depths = ",".join(str(prompt_len + k * window) for k in range(n // window))
    base = [
        exe,
        "-m",
        str(model),
        "-p",
        "0",
        "-t",
        str(threads),
        "-ngl",
        str(ngl),
        "-fa",
        "1" if flash else "0",
        "-r",
        "1",
        "-o",
        "json",
    ]
    for args, label in (
        ([*base, "-n", str(window), "-d", depths], "per window (tg at depth)"),
        ([*base, "-n", str(n)], f"tg{n} from depth 0"),
    ):
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
            rows = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
            rows = None
        if rows:
            return [float(r["avg_ts"]) for r in rows], label
    return [], "failed"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path, help="GGUF (default: the tests' noise model)")
    p.add_argument("--tokens", type=int, default=8000, help="tokens per variant (8000)")
    p.add_argument("--window", type=int, default=1000, help="window size in tokens (1000)")
    p.add_argument("--step", type=int, default=50, help="tokens per turn of the interleaving")
    p.add_argument("--quick", action="store_true", help="2,000 tokens, windows of 500")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--gpu-layers", type=int, default=None, help="default: all when offloading")
    p.add_argument("--no-flash-attn", action="store_true")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--skip", action="append", default=[], choices=["engine", "stock", "llama-bench"]
    )
    p.add_argument(
        "--no-call-clock",
        action="store_true",
        help="do not time the llama.cpp calls (saves ~1 µs per token)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = p.parse_args(argv)
    if a.quick:
        a.tokens, a.window = 2000, 500
    model = a.model or default_model()
    flash = not a.no_flash_attn
    n = a.tokens
    n_ctx = a.prompt_tokens + n + 64

    from r1chat.bench import question_of_length

    ll = init_backend()
    clock = CallClock(ll) if not a.no_call_clock else None
    gpu = bool(ll.llama_supports_gpu_offload())
    ngl = (ALL_LAYERS if gpu else 0) if a.gpu_layers is None else a.gpu_layers
    opts = LoadOptions(n_ctx=n_ctx, n_gpu_layers=ngl, flash_attn=flash, n_threads=a.threads)
    engine = LlamaEngine(model, opts)
    question = question_of_length(engine, a.prompt_tokens)
    prompt = engine.prompt_tokens([ChatMessage("user", question)])

    mparams = ll.llama_model_default_params()
    mparams.n_gpu_layers = ngl
    bare_model = ll.llama_model_load_from_file(str(model).encode(), mparams)
    cparams = context_params(ll, engine.info.n_ctx, a.threads, flash)

    kept: dict[str, list[int]] = {"bare": [], "r1chat": []}
    engine2 = LlamaEngine(model, opts) if "engine" not in a.skip else None
    variants = [
        Variant(
            "bare", bare_loop(ll, bare_model, cparams, prompt, n, a.step, a.seed, kept["bare"])
        ),
        Variant(
            "r1chat", r1chat_path(engine2 or engine, question, n, a.step, a.seed, kept["r1chat"])
        ),
    ]
    llm = None
    if engine2 is not None:
        variants.insert(1, Variant("engine", engine_path(engine, prompt, n, a.step, a.seed)))
    if "stock" not in a.skip:
        from llama_cpp import Llama

        llm = Llama(
            str(model),
            n_ctx=engine.info.n_ctx,
            n_batch=512,
            n_ubatch=512,
            n_threads=a.threads,
            n_threads_batch=a.threads,
            n_gpu_layers=-1 if ngl == ALL_LAYERS else ngl,
            flash_attn=flash,
            seed=a.seed,
            verbose=False,
        )
        stop = threading.Event()
        variants.append(
            Variant("stock", stock_path(llm, prompt, n, a.step, a.seed, stop), stop=stop)
        )

    print(
        f"model {model} ({engine.info.backend}, {engine.info.n_gpu_layers} GPU layers),"
        f" prompt {len(prompt)} tokens, {n} tokens per variant, threads {a.threads},"
        f" flash attention {'on' if flash else 'off'}, seed {a.seed}",
        flush=True,
    )
    t_all = time.perf_counter()
    windows = interleave(variants, n, a.window, clock)
    wall = time.perf_counter() - t_all

    lb: list[float] = []
    lb_label = "not run"
    exe = None if "llama-bench" in a.skip else find_llama_bench()
    if exe:
        lb, lb_label = llama_bench_windows(
            exe, model, len(prompt), n, a.window, a.threads, 99 if ngl == ALL_LAYERS else ngl, flash
        )
    elif "llama-bench" not in a.skip:
        lb_label = "not found (set $LLAMA_BENCH)"
    per_window_lb = len(lb) > 1

    def rate(name: str, k: int) -> float | None:
        rows = windows.get(name, [])
        return rows[k][0] / rows[k][1] if k < len(rows) and rows[k][1] > 0 else None

    def fmt(x: float | None, spec: str = ".1f") -> str:
        return "-" if x is None else format(x, spec)

    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x and y else None

    def paired(name: str, lo: int, hi: int) -> float | None:
        """Median over turns of name's speed / bare's speed on the same tokens: a turn that
        another process slowed down moves it less than it moves the sums."""
        by_name = {v.name: v.turns for v in variants}
        rs = []
        for tb, tm in zip(by_name["bare"], by_name[name], strict=False):
            if lo < tb[1] <= hi and tb[2] > 0 and tm[2] > 0 and tm[1] > tm[0]:
                rs.append(((tm[1] - tm[0]) / tm[2]) / ((tb[1] - tb[0]) / tb[2]))
        return statistics.median(rs) if rs else None

    names = [v.name for v in variants]
    others = names[1:]
    head = f"{'window':>11} {'bare':>8}" + "".join(
        f" {m:>8} {'/bare':>6} {'med':>6}" for m in others
    )
    if per_window_lb:
        head += f" {'l-bench':>8} {'r1/lb':>6}"
    print(
        f"\ntokens/s per {a.window:,}-token window (interleaved every {a.step} tokens,"
        f" {wall:.0f} s in all); /bare: ratio of the window's speeds; med: median of the"
        " per-turn ratios"
    )
    print(head)
    n_windows = max(len(r) for r in windows.values())
    table = []
    for k in range(n_windows):
        b = rate("bare", k)
        row: dict[str, Any] = {"window": f"{k * a.window + 1}-{(k + 1) * a.window}", "bare": b}
        line = f"{row['window']:>11} {fmt(b):>8}"
        for m in others:
            r = rate(m, k)
            row[m], row[f"{m}_ratio"] = r, ratio(r, b)
            row[f"{m}_median_turn_ratio"] = paired(m, k * a.window, (k + 1) * a.window)
            line += (
                f" {fmt(r):>8} {fmt(row[f'{m}_ratio'], '.3f'):>6}"
                f" {fmt(row[f'{m}_median_turn_ratio'], '.3f'):>6}"
            )
        if per_window_lb:
            lbk = lb[k] if k < len(lb) else None
            row["llama_bench"] = lbk
            line += f" {fmt(lbk):>8} {fmt(ratio(row['r1chat'], lbk), '.3f'):>6}"
        table.append(row)
        print(line)

    def total(name: str, upto: int) -> float | None:
        rows = windows.get(name, [])[: max(1, upto // a.window)]
        if len(rows) < max(1, upto // a.window):  # cut off before `upto`: no figure
            return None
        toks, secs = sum(t for t, _ in rows), sum(s for _, s in rows)
        return toks / secs if secs else None

    summary: dict[str, Any] = {}
    for upto in sorted({min(4000, n), n}):
        b = total("bare", upto)
        entry: dict[str, Any] = {"bare": b}
        parts = [f"bare {fmt(b)}"]
        for m in others:
            r = total(m, upto)
            entry[m], entry[f"{m}_ratio"] = r, ratio(r, b)
            entry[f"{m}_median_turn_ratio"] = paired(m, 0, upto)
            parts.append(
                f"{m} {fmt(r)} ({fmt(entry[f'{m}_ratio'], '.3f')};"
                f" median per turn {fmt(entry[f'{m}_median_turn_ratio'], '.3f')})"
            )
        summary[str(upto)] = entry
        print(f"over {upto:,} tokens, tok/s (ratio to bare): " + ", ".join(parts))
    same = kept["bare"] == kept["r1chat"]
    print(f"bare and r1chat sampled the same first {len(kept['bare'])} tokens: {same}")
    print(f"llama-bench: {lb_label}" + (f" {[round(x, 1) for x in lb]}" if lb else ""))
    if lb and not per_window_lb:
        r = total("r1chat", n)
        print(f"r1chat/llama-bench over {n:,} tokens: {fmt(ratio(r, lb[0]), '.3f')}")
    outside: dict[str, float] = {}
    if clock is not None:
        for v in variants:
            decoded = sum(t[1] - t[0] for t in v.turns)
            if decoded:
                outside[v.name] = (v.seconds - clock.inside.get(v.name, 0.0)) / decoded * 1e6
        inside_bare = (
            clock.inside.get("bare", 0.0)
            / max(1, sum(t[1] - t[0] for t in variants[0].turns))
            * 1e6
        )
        print(
            f"time per token outside llama_decode/llama_sampler_sample (Python work, µs):"
            f" {', '.join(f'{k} {x:.1f}' for k, x in outside.items())};"
            f" inside them (bare): {inside_bare:,.0f}"
        )
        if "r1chat" in outside:
            extra = outside["r1chat"] - outside["bare"]
            print(
                f"r1chat's extra Python work: {extra:.1f} µs per token, i.e. a ratio of"
                f" {inside_bare / (inside_bare + extra):.4f} at this model's speed"
            )
    for v in variants:
        if v.note:
            print(f"note: {v.name} {v.note}")

    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "model": str(model),
                    "backend": engine.info.backend,
                    "tokens": n,
                    "window": a.window,
                    "step": a.step,
                    "prompt_tokens": len(prompt),
                    "threads": a.threads,
                    "flash_attn": flash,
                    "windows": table,
                    "summary": summary,
                    "llama_bench": {"label": lb_label, "tok_s": lb},
                    "same_tokens": same,
                    "notes": {v.name: v.note for v in variants if v.note},
                    "python_us_per_token": outside,
                },
                indent=2,
            )
            + "\n"
        )
    for e in (engine, engine2, llm):
        if e is not None:
            e.close()
    ll.llama_model_free(bare_model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
