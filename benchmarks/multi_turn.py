"""Multi-turn cost: the tokens evaluated for turn N follow the new text, not the whole history.

Runs a conversation of --turns turns through r1chat.turn.run_turn on the real engine
(llama.cpp), sending earlier turns back without their thinking as the app does, and prints per
turn the prompt length, the tokens reused from the KV cache and the tokens evaluated
(Stats.cached_tokens, Stats.evaluated_tokens), against how much the prompt grew since the last
turn (the previous answer and the new question: the least any engine must evaluate).

    python benchmarks/multi_turn.py [MODEL.gguf] [--turns 8] [--max-tokens 200]

Without a model it uses tests/.models/tiny-r1-scripted.gguf (built on first use): it thinks,
closes `</think>` and answers, so earlier turns really lose their thinking.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r1chat.bench import filler_text  # noqa: E402
from r1chat.engines.llama import LlamaEngine, LoadOptions  # noqa: E402
from r1chat.prompts import history_messages  # noqa: E402
from r1chat.sampling import SamplingParams  # noqa: E402
from r1chat.turn import TurnDone, run_turn  # noqa: E402


def default_model() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_models

    return build_models()["scripted"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path)
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=200, help="reply length cap per turn")
    p.add_argument("--question-words", type=int, default=40)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    model = a.model or default_model()
    engine = LlamaEngine(model, LoadOptions(n_ctx=a.ctx))
    params = SamplingParams(max_tokens=a.max_tokens, seed=a.seed)
    turns: list[tuple[str, str]] = []
    rows = []
    prev_prompt = 0
    print(f"model {model}, {a.turns} turns, replies up to {a.max_tokens} tokens")
    print(
        f"{'turn':>4} {'prompt':>7} {'cached':>7} {'evaluated':>9} {'grew by':>8}"
        f" {'eval/grew':>9} {'eval/prompt':>11} {'reply':>6} {'ttft ms':>8}"
    )
    for i in range(1, a.turns + 1):
        question = f"Question {i}: " + filler_text(a.question_words + i)
        history = history_messages(turns)
        result = None
        for ev in run_turn(engine, history, question, params):
            if isinstance(ev, TurnDone):
                result = ev.result
        assert result is not None
        s = result.stats
        grew = s.prompt_tokens - prev_prompt if i > 1 else s.prompt_tokens
        rows.append((i, s.prompt_tokens, s.cached_tokens, s.evaluated_tokens, grew))
        print(
            f"{i:>4} {s.prompt_tokens:>7} {s.cached_tokens:>7} {s.evaluated_tokens:>9}"
            f" {grew:>8} {s.evaluated_tokens / grew:>9.2f}"
            f" {s.evaluated_tokens / s.prompt_tokens:>11.2f} {s.completion_tokens:>6}"
            f" {s.ttft_s * 1000:>8.1f}"
        )
        prev_prompt = s.prompt_tokens
        turns.append((question, result.answer))
    later = rows[1:]
    if later:
        ev_sum = sum(r[3] for r in later)
        grew_sum = sum(r[4] for r in later)
        prompt_sum = sum(r[1] for r in later)
        first_eval, last_eval = later[0][3], later[-1][3]
        print(
            f"turns 2-{a.turns}: evaluated {ev_sum:,} tokens for {grew_sum:,} tokens of new"
            f" text (ratio {ev_sum / grew_sum:.2f}); without KV reuse {prompt_sum:,}"
            f" ({prompt_sum / ev_sum:.1f}x more)"
        )
        print(
            f"evaluated at turn {a.turns} / turn 2: {last_eval / first_eval:.2f} while the"
            f" prompt grew {later[-1][1] / later[0][1]:.2f}x"
        )
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
