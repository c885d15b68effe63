"""Aggregate decode speed of k samples decoded together (LlamaEngine.stream_many) against one.

For each k in --ks (default 1,2,4,8) it decodes --tokens tokens per sequence (default 256, end of
sequence ignored, as llama-bench does) after a prompt of about --prompt-tokens tokens, and prints
the aggregate tokens/s of all k sequences and its ratio to k = 1 in one table. A shared, noisy
machine slows some runs more than others: the list of k runs --rounds times (default 3), in
alternating order (1,2,4,8 then 8,4,2,1 ...), and each k keeps its best run.

    python benchmarks/batch_decode.py [MODEL.gguf] [--tokens 256] [--ks 1,2,4,8] [--rounds 3]

Without a model it uses (and if needed builds) tests/.models/tiny-r1-noise.gguf: two layers with
the real 152k vocabulary, where the per-token cost outside the model (sampling, Python) weighs as
much as it can; a 7B on a GPU shows the memory-bound case the batch is for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r1chat.bench import question_of_length  # noqa: E402
from r1chat.engines.base import BatchStats  # noqa: E402
from r1chat.engines.llama import LlamaEngine, LoadOptions  # noqa: E402
from r1chat.many import ask_many  # noqa: E402
from r1chat.prompts import ChatMessage  # noqa: E402
from r1chat.sampling import SamplingParams  # noqa: E402


def default_model() -> Path:
    """The tests' noise model, built on first use (it needs the test extras installed)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_models

    return build_models()["noise"]


@dataclass
class Row:
    k: int
    tok_s: float  # aggregate, best of the rounds
    runs: list[float]
    ttft_s: float
    n_ctx: int


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path, help="GGUF (default: the tests' noise model)")
    p.add_argument("--tokens", type=int, default=256, help="tokens per sequence (256)")
    p.add_argument("--ks", default="1,2,4,8", help="numbers of samples (1,2,4,8)")
    p.add_argument("--rounds", type=int, default=3, help="runs of the whole k list (3)")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--gpu-layers", type=int, default=None, help="default: all when offloading")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    ks = [int(x) for x in a.ks.split(",")]
    if 1 not in ks:
        ks.insert(0, 1)  # the reference
    model = a.model or default_model()
    # The engine's own context is not used here: keep it small (the batch makes its own).
    engine = LlamaEngine(
        model, LoadOptions(n_ctx=1024, n_threads=a.threads, n_gpu_layers=a.gpu_layers)
    )
    try:
        # The same question builder as `r1chat bench`, so both measure the same prompt.
        messages = [ChatMessage("user", question_of_length(engine, a.prompt_tokens))]
        n_prompt = engine.count_tokens(messages)
        params = SamplingParams(max_tokens=a.tokens, ignore_eos=True, seed=1)
        print(
            f"{engine.info.name}: {engine.info.backend}, {engine.info.n_gpu_layers} layers"
            f" offloaded, {a.threads} threads; prompt {n_prompt} tokens,"
            f" {a.tokens} tokens per sequence, best of {a.rounds} rounds",
            flush=True,
        )
        # Warm-up: first-touch page faults and graph allocation belong to no k.
        ask_many(engine, messages, SamplingParams(max_tokens=16, ignore_eos=True, seed=1), 2)
        runs: dict[int, list[BatchStats]] = {k: [] for k in ks}
        for r in range(a.rounds):
            for k in ks if r % 2 == 0 else ks[::-1]:
                got = ask_many(engine, messages, params, k)
                samples, stats = got.samples, got.stats
                assert all(s.completion_tokens == a.tokens for s in samples), "a sample fell short"
                assert stats.prompt_evals == 1
                runs[k].append(stats)
                print(f"  round {r + 1} k={k}: {stats.decode_tok_s:8.1f} tok/s", flush=True)
    finally:
        engine.close()

    rows = []
    for k in ks:
        best = max(runs[k], key=lambda s: s.decode_tok_s)
        rows.append(
            Row(k, best.decode_tok_s, [s.decode_tok_s for s in runs[k]], best.ttft_s, best.n_ctx)
        )
    base = next(r.tok_s for r in rows if r.k == 1)
    print()
    print(f"{'k':>3}  {'aggregate tok/s':>15}  {'per sequence':>12}  {'vs k=1':>6}  {'n_ctx':>6}")
    for row in rows:
        print(
            f"{row.k:>3}  {row.tok_s:>15.1f}  {row.tok_s / row.k:>12.1f}"
            f"  {row.tok_s / base:>5.2f}x  {row.n_ctx:>6}"
        )
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "model": str(model),
                    "prompt_tokens": n_prompt,
                    "tokens": a.tokens,
                    "threads": a.threads,
                    "rows": [asdict(r) | {"ratio": r.tok_s / base} for r in rows],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
