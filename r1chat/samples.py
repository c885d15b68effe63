"""k samples of one question on whatever engine runs, and the vote over their answers.

The local engine decodes them together in one llama.cpp context (r1chat.batch: the prompt
evaluated once, one llama_decode per step for all of them); a server gets k concurrent requests
(vLLM and llama-server batch them). Either way the caller gets the same Samples, so `ask
--samples`, `eval` and the app share this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from r1chat.answers import Vote, vote
from r1chat.batch import BatchStats, Sample, SampleProgress, sample_many
from r1chat.engine import Engine, LlamaEngine
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.sanitize import sanitize
from r1chat.turn import Delta, TurnDone, run_turn

Progress = Callable[[SampleProgress], None]


@dataclass(frozen=True)
class Samples:
    samples: list[Sample]
    stats: BatchStats
    vote: Vote

    def chosen(self) -> Sample:
        """The sample whose answer won the vote (the first of them), else the first one."""
        if self.vote.members:
            return self.samples[self.vote.members[0]]
        return self.samples[0]

    def replies(self) -> list[tuple[str, str, dict[str, Any], str]]:
        """Each sample as Conversation.save_samples keeps it: answer, thinking, stats, finish."""
        return [
            (
                s.answer,
                s.thinking,
                {
                    "seed": s.seed,
                    "thinking_tokens": s.thinking_tokens,
                    "answer_tokens": s.answer_tokens,
                    "completion_tokens": s.completion_tokens,
                    "finish_reason": s.finish_reason,
                },
                s.finish_reason,
            )
            for s in self.samples
        ]

    def agreement(self) -> str:
        """ "4, 6 of 8 samples agree"; or why there is no vote."""
        v = self.vote
        if v.answer is None:
            return f"no sample of {v.of} gave a \\boxed{{}} answer"
        return f"{v.answer}, {v.count} of {v.of} samples agree"


class SampleMeter:
    """What each sample has done so far, as one line per sample, for `ask -k` and the app.

    Written by the decoding thread (plain assignments), read a few times a second.
    """

    def __init__(self, k: int) -> None:
        self.think = [0] * k
        self.answer = [0] * k
        self.tail = [""] * k

    def progress(self, p: SampleProgress) -> None:
        self.think[p.index] = p.thinking_tokens
        self.answer[p.index] = p.answer_tokens
        if p.kind == "answer":
            self.tail[p.index] = (self.tail[p.index] + p.text)[-60:]

    def lines(self, indent: str = "") -> str:
        out = []
        for i, (t, a) in enumerate(zip(self.think, self.answer, strict=True)):
            state = "answering: " + " ".join(sanitize(self.tail[i]).split()) if a else "thinking…"
            out.append(f"{indent}sample {i + 1:>2}  {t:>6,} thinking tokens  {state}")
        return "\n".join(out)


def ask_many(
    engine: Engine,
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    *,
    cancel: threading.Event | None = None,
    on_progress: Progress | None = None,
) -> Samples:
    """k samples of the reply to `messages` and their vote."""
    if isinstance(engine, LlamaEngine):
        samples, stats = sample_many(
            engine, messages, params, k, cancel=cancel, on_progress=on_progress
        )
    else:
        samples, stats = _concurrent(engine, messages, params, k, cancel, on_progress)
    return Samples(samples, stats, vote([s.boxed for s in samples]))


def _concurrent(
    engine: Engine,
    messages: list[ChatMessage],
    params: SamplingParams,
    k: int,
    cancel: threading.Event | None,
    on_progress: Progress | None,
) -> tuple[list[Sample], BatchStats]:
    t0 = time.perf_counter()
    lock = threading.Lock()  # progress reaches the caller one piece at a time
    seeds = [params.seed + i if params.seed is not None else None for i in range(k)]
    history, question = messages[:-1], messages[-1].content

    def one(i: int) -> Sample:
        p = replace(params, seed=seeds[i])
        # Each sample watches its own thinking for loops, as a single reply does.
        control = ThinkingControl(ReasoningParams())
        result = None
        for ev in run_turn(engine, history, question, p, cancel, control):
            if isinstance(ev, Delta) and on_progress is not None:
                with lock:
                    on_progress(
                        SampleProgress(i, ev.kind, ev.text, ev.think_tokens, ev.answer_tokens)
                    )
            elif isinstance(ev, TurnDone):
                result = ev.result
        assert result is not None
        return Sample(
            index=i,
            seed=result.stats.seed,
            thinking=result.thinking,
            answer=result.answer,
            boxed=result.boxed,
            finish_reason=result.stats.finish_reason,
            thinking_tokens=result.stats.thinking_tokens,
            answer_tokens=result.stats.answer_tokens,
        )

    with ThreadPoolExecutor(max_workers=k) as pool:
        samples = list(pool.map(one, range(k)))
    total = time.perf_counter() - t0
    tokens = sum(s.completion_tokens for s in samples)
    stats = BatchStats(
        k=k,
        prompt_tokens=0,
        completion_tokens=tokens,
        total_s=total,
        decode_tok_s=tokens / total if total > 0 else 0.0,
        prompt_evals=k,
    )
    return samples, stats
