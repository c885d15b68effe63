"""What measuring each token's confidence costs while decoding (r1chat.engines.llama's
ConfidenceStage), with and without it, side by side.

Two figures, each on exactly the same work with the stage on and off:

* per sample: the sampler chain (top-k 40, top-p, temperature, draw) run --calls times on one
  position's logits, with and without the stage after the top-k cut;
* per token of a reply: --tokens tokens decoded alone and k=--k together (end of sequence
  ignored), with the same seed, so both runs write the same tokens (checked): the tiny noise
  model's speed depends on the text, so only the same token stream compares.

A shared, noisy machine slows some runs more than others, and the stage's cost is a few
percent of a token's: the figures are the decoding thread's CPU time (`time.thread_time`; with
--threads 1 llama.cpp computes in that thread), which other processes disturb far less than
wall time, each the best of --rounds runs, on and off alternating.

    python benchmarks/confidence_cost.py [MODEL.gguf] [--tokens 256] [--k 4] [--rounds 7]

Without a model it uses (and if needed builds) tests/.models/tiny-r1-noise.gguf: the real 152k
vocabulary in two small layers, where the per-token cost outside the model weighs most.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r1chat.bench import question_of_length  # noqa: E402
from r1chat.confidence import ConfidenceOptions  # noqa: E402
from r1chat.engines.base import Token  # noqa: E402
from r1chat.engines.batch import Sampler  # noqa: E402
from r1chat.engines.llama import LlamaEngine, LoadOptions  # noqa: E402
from r1chat.prompts import ChatMessage  # noqa: E402
from r1chat.sampling import SamplingParams  # noqa: E402

T = TypeVar("T")


def default_model() -> Path:
    """The tests' noise model, built on first use (it needs the test extras installed)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_models

    return build_models()["noise"]


def best_of(rounds: int, on: Callable[[], float], off: Callable[[], float]) -> tuple[float, float]:
    """The best (lowest) of `rounds` runs each, on and off alternating."""
    ons: list[float] = []
    offs: list[float] = []
    for r in range(rounds):
        pair = ((ons, on), (offs, off)) if r % 2 == 0 else ((offs, off), (ons, on))
        for out, run in pair:
            out.append(run())
    return min(ons), min(offs)


def per_sample(engine: LlamaEngine, sampler: Sampler, calls: int) -> float:
    """CPU seconds per sample of a sampler chain on the logits the engine's context holds."""
    sample, chain, ctx = engine._ll.llama_sampler_sample, sampler.chain, engine._ctx
    t = time.thread_time()
    for _ in range(calls):
        sample(chain, ctx, -1)
    return (time.thread_time() - t) / calls


def per_token(
    engine: LlamaEngine, messages: list[ChatMessage], params: SamplingParams, k: int
) -> tuple[float, list[list[int]]]:
    """CPU seconds per token of k sequences decoded together (alone when k is 1), and their
    ids."""
    ids: list[list[int]] = [[] for _ in range(k)]
    if k == 1:
        prompt = engine.prompt_tokens(messages)
        t = time.thread_time()
        for ev in engine.stream_tokens(prompt, params):
            if isinstance(ev, Token):
                ids[0].append(ev.id)
        return (time.thread_time() - t) / len(ids[0]), ids
    t = time.thread_time()
    for i, item in engine.stream_many(messages, params, k):
        if isinstance(item, Token):
            ids[i].append(item.id)
    return (time.thread_time() - t) / sum(map(len, ids)), ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path, help="GGUF (default: the tests' noise model)")
    p.add_argument("--tokens", type=int, default=256, help="tokens per sequence (256)")
    p.add_argument("--k", type=int, default=4, help="sequences decoded together (4)")
    p.add_argument("--calls", type=int, default=200, help="sampler calls per round (200)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="llama.cpp's (1: see above)")
    a = p.parse_args(argv)
    model = a.model or default_model()
    engine = LlamaEngine(model, LoadOptions(n_ctx=2048, n_threads=a.threads))
    measured = ConfidenceOptions()

    def switched(on: bool, run: Callable[[], T]) -> Callable[[], T]:
        def go() -> T:
            engine.confidence = measured if on else None
            return run()

        return go

    try:
        messages = [ChatMessage("user", question_of_length(engine, 64))]
        params = SamplingParams(max_tokens=a.tokens, ignore_eos=True, seed=1)
        print(
            f"{engine.info.name}: {engine.info.backend}, {a.threads} threads; best of"
            f" {a.rounds} rounds, on and off alternating",
            flush=True,
        )
        # The context's last logits, for the sampler alone; a warm-up of each path too.
        for _ in engine.stream_tokens(engine.prompt_tokens(messages), params):
            pass
        chains = {
            on: switched(on, lambda: engine.make_sampler(params, 1))() for on in (True, False)
        }
        try:
            sample_on, sample_off = best_of(
                a.rounds * 5,
                lambda: per_sample(engine, chains[True], a.calls),
                lambda: per_sample(engine, chains[False], a.calls),
            )
        finally:
            for chain in chains.values():
                engine.free_sampler(chain)
        rows = [("sampler chain, per sample", sample_on, sample_off)]
        for k in (1, a.k):
            streams: dict[bool, list[list[int]]] = {}

            def run(on: bool, k: int = k, streams: dict[bool, list[list[int]]] = streams) -> float:
                spent, streams[on] = per_token(engine, messages, params, k)
                return spent

            tok_on, tok_off = best_of(
                a.rounds, switched(True, lambda: run(True)), switched(False, lambda: run(False))
            )
            assert streams[True] == streams[False], "the stage changed what was sampled"
            what = "decoding alone" if k == 1 else f"decoding k={k} together"
            rows.append((f"{what}, per token", tok_on, tok_off))
    finally:
        engine.close()

    print()
    print(f"{'CPU time':34}  {'with':>9}  {'without':>9}  {'cost':>9}  {'share':>6}")
    for name, on, off in rows:
        print(
            f"{name:34}  {on * 1e6:>7.1f}us  {off * 1e6:>7.1f}us  {(on - off) * 1e6:>7.1f}us"
            f"  {(on - off) / off:>6.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
