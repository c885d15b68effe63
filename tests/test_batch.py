"""k samples of one prompt in one batch context (r1chat.engines.batch) on real llama.cpp, tiny
models, through r1chat.many (the path `ask -k`, `eval` and the app take)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models

from r1chat.engines.base import BatchStats, Token
from r1chat.engines.batch import context_size
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.errors import R1ChatError
from r1chat.many import Sample, SampleProgress, ask_many
from r1chat.prompts import ChatMessage
from r1chat.reasoning import split_reasoning
from r1chat.sampling import SamplingParams
from r1chat.turn import TurnDone, TurnResult, run_turn

QUESTION = [ChatMessage("user", "What is two plus two?")]
# One thread: on a busy 2-core machine llama.cpp's two threads wait on each other at every graph
# node, and a step took 20-40x longer than with one.
OPTIONS = LoadOptions(n_ctx=2048, n_threads=1)


@pytest.fixture(scope="module")
def scripted(scripted_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(scripted_model, OPTIONS)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def noise(noise_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(noise_model, OPTIONS)
    yield eng
    eng.close()


def sample_many(
    engine: LlamaEngine, messages: list[ChatMessage], params: SamplingParams, k: int, **kw: Any
) -> tuple[list[Sample], BatchStats]:
    got = ask_many(engine, messages, params, k, **kw)
    return got.samples, got.stats


class CountingLlama:
    """The llama_cpp module, recording what sample_many asks of it."""

    def __init__(self, ll: Any) -> None:
        self._ll = ll
        self.decoded: list[int] = []  # n_tokens of each llama_decode
        self.copies: list[tuple[int, int, int, int]] = []  # llama_memory_seq_cp arguments

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ll, name)

    def llama_decode(self, ctx: Any, batch: Any) -> int:
        self.decoded.append(int(batch.n_tokens))
        return int(self._ll.llama_decode(ctx, batch))

    def llama_memory_seq_cp(self, mem: Any, src: int, dst: int, p0: int, p1: int) -> None:
        self.copies.append((src, dst, p0, p1))
        self._ll.llama_memory_seq_cp(mem, src, dst, p0, p1)


def single_run(engine: LlamaEngine, prompt: list[int], params: SamplingParams) -> tuple[str, str]:
    text = "".join(e.text for e in engine.stream_tokens(prompt, params) if isinstance(e, Token))
    return split_reasoning(text, in_think=True)


def turn(engine: LlamaEngine, question: str) -> TurnResult:
    for ev in run_turn(engine, [], question, SamplingParams(seed=1)):
        if isinstance(ev, TurnDone):
            return ev.result
    raise AssertionError("no TurnDone")


def test_scripted_k4_gives_four_exact_replies_from_one_prompt_evaluation(
    scripted: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from r1chat.engines import batch

    spy = CountingLlama(batch.init_backend())
    monkeypatch.setattr(batch, "init_backend", lambda: spy)
    events: list[SampleProgress] = []
    samples, stats = sample_many(
        scripted, QUESTION, SamplingParams(seed=5), 4, on_progress=events.append
    )
    monkeypatch.undo()
    prompt = scripted.prompt_tokens(QUESTION)
    assert [s.index for s in samples] == [0, 1, 2, 3]
    assert [s.seed for s in samples] == [5, 6, 7, 8]
    thinking_tokens = len(scripted.tokenize(tiny_models.SCRIPT_THINKING)) + 1  # and </think>
    for s in samples:
        assert s.thinking == tiny_models.SCRIPT_THINKING
        assert s.answer == tiny_models.SCRIPT_ANSWER
        assert s.boxed == "4"
        assert s.finish_reason == "stop"
        assert s.thinking_tokens == thinking_tokens
        assert s.completion_tokens == s.thinking_tokens + s.answer_tokens
        # The progress events carry the same text, piece by piece.
        mine = [e for e in events if e.index == s.index]
        assert "".join(e.text for e in mine if e.kind == "think") == s.thinking
        assert "".join(e.text for e in mine if e.kind == "answer") == s.answer
        assert mine[-1].answer_tokens == s.answer_tokens
    assert stats.k == 4 and stats.prompt_tokens == len(prompt)
    assert stats.completion_tokens == sum(s.completion_tokens for s in samples)
    assert stats.prompt_evals == 1
    assert 0 < stats.ttft_s <= stats.total_s and stats.decode_tok_s > 0
    # What llama.cpp really saw: the prompt once, copied (not evaluated) to sequences 1-3, then
    # one batch of 4 tokens per step. Each reply's tokens are decoded, the EOS that ends it is
    # not: the prompt plus 4 replies, nothing more.
    assert spy.copies == [(0, 1, -1, -1), (0, 2, -1, -1), (0, 3, -1, -1)]
    assert spy.decoded[0] == len(prompt)
    assert set(spy.decoded[1:]) == {4}
    assert sum(spy.decoded) == len(prompt) + stats.completion_tokens


def test_noise_samples_differ_repeat_and_match_single_runs(noise: LlamaEngine) -> None:
    params = SamplingParams(seed=11, max_tokens=40)
    samples, stats = sample_many(noise, QUESTION, params, 3)
    texts = [(s.thinking, s.answer) for s in samples]
    assert len(set(texts)) == 3
    for s in samples:
        assert s.finish_reason == "length"
        assert s.completion_tokens == 40
    assert stats.completion_tokens == 120 and stats.prompt_evals == 1
    again, _ = sample_many(noise, QUESTION, params, 3)
    assert [(s.thinking, s.answer) for s in again] == texts
    # Each sequence samples as a run of its own would: sample i is the engine's reply with seed
    # 11 + i. The logits are not bit-identical (a step of more than one row takes another matrix
    # product path in ggml: up to ~6e-5 apart, measured; with one sequence they are identical),
    # so this holds because no sampling draw here falls within that of a token boundary: a
    # property of these seeds on this build, checked on every token rather than a prefix.
    prompt = noise.prompt_tokens(QUESTION)
    for i, s in enumerate(samples):
        alone = single_run(noise, prompt, SamplingParams(seed=11 + i, max_tokens=40))
        assert alone == (s.thinking, s.answer), f"sample {i}"


def test_prompt_cells_are_shared_not_copied(noise: LlamaEngine) -> None:
    # A ~200-token prompt and 4 x 40 new tokens fit the 512 cells made for them only because
    # the 4 sequences share the prompt's cells: 4 copies would need ~960.
    long = [ChatMessage("user", "word " * 190)]
    n_prompt = noise.count_tokens(long)
    samples, stats = sample_many(noise, long, SamplingParams(seed=1, max_tokens=40), 4)
    assert stats.n_ctx == 512 and 4 * n_prompt + 4 * 40 > stats.n_ctx
    assert [s.completion_tokens for s in samples] == [40] * 4
    assert {s.finish_reason for s in samples} == {"length"}


def test_random_seeds_differ(noise: LlamaEngine) -> None:
    samples, _ = sample_many(noise, QUESTION, SamplingParams(max_tokens=5), 3)
    assert len({s.seed for s in samples}) == 3


def test_too_large_a_batch_is_a_one_line_error_saying_what_fits(noise: LlamaEngine) -> None:
    n_train = noise.info.n_ctx_train
    assert n_train == 32768  # tiny_models writes the real model's context length
    n_prompt = noise.count_tokens(QUESTION)
    with pytest.raises(R1ChatError) as err:
        sample_many(noise, QUESTION, SamplingParams(max_tokens=8192), 8)
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 2
    need = n_prompt + 8 * 8192
    assert f"need a context of {need:,} tokens; the model takes 32,768" in message
    fit_k = (n_train - n_prompt) // 8192
    fit_tokens = (n_train - n_prompt) // 8
    assert message.endswith(f"try --samples {fit_k} or --max-tokens {fit_tokens:,}")
    # What it suggests is the most that fits.
    assert context_size(n_prompt, fit_k, 8192, n_train) <= n_train
    assert context_size(n_prompt, 8, fit_tokens, n_train) <= n_train
    for k, max_tokens in ((fit_k + 1, 8192), (8, fit_tokens + 1)):
        with pytest.raises(R1ChatError):
            context_size(n_prompt, k, max_tokens, n_train)
    # A context given explicitly is held to the same rule.
    with pytest.raises(R1ChatError, match="the one asked for holds 256: try --samples 2 or"):
        sample_many(noise, QUESTION, SamplingParams(max_tokens=100), 4, ctx_tokens=256)


def test_cancel_from_progress_keeps_what_came(noise: LlamaEngine) -> None:
    cancel = threading.Event()
    seen = 0

    def progress(ev: SampleProgress) -> None:
        nonlocal seen
        seen += 1
        if seen == 12:
            cancel.set()

    samples, stats = sample_many(
        noise,
        QUESTION,
        SamplingParams(seed=3, max_tokens=500),
        3,
        cancel=cancel,
        on_progress=progress,
    )
    for s in samples:
        assert s.finish_reason == "cancelled"
        assert 0 < s.completion_tokens < 20
        assert s.thinking or s.answer
    assert stats.completion_tokens == sum(s.completion_tokens for s in samples)


def test_engine_context_is_untouched_by_a_batch(scripted: LlamaEngine) -> None:
    before = turn(scripted, "hello there")
    sample_many(scripted, QUESTION, SamplingParams(seed=1), 3)
    after = turn(scripted, "hello there")
    assert after.thinking == tiny_models.SCRIPT_THINKING
    assert after.answer == tiny_models.SCRIPT_ANSWER
    # The engine's KV cache still holds the earlier turn: the same prompt is reused whole but
    # for the one token that must be evaluated to give logits.
    assert after.stats.cached_tokens == before.stats.prompt_tokens - 1


def test_stop_before_the_prompt_is_evaluated(noise: LlamaEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    samples, stats = sample_many(noise, QUESTION, SamplingParams(seed=1), 2, cancel=cancel)
    assert [s.finish_reason for s in samples] == ["cancelled", "cancelled"]
    assert all(s.completion_tokens == 0 and not s.thinking + s.answer for s in samples)
    assert stats.prompt_evals == 0 and stats.completion_tokens == 0
