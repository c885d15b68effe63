"""The engine and one turn on real llama.cpp with tiny GGUF models (no network)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models

from r1chat.engines.base import Done, Started, Token
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage, history_messages
from r1chat.sampling import SamplingParams
from r1chat.turn import Delta, TurnDone, TurnResult, run_turn

BOS, THINK, NEWLINE, THINK_END = 151646, 151648, 198, 151649


@pytest.fixture(scope="module")
def scripted(scripted_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(scripted_model, LoadOptions(n_ctx=2048))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def noise(noise_model: Path) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(noise_model, LoadOptions(n_ctx=2048))
    yield eng
    eng.close()


def turn(
    engine: LlamaEngine,
    question: str,
    history: list[ChatMessage] | None = None,
    cancel: threading.Event | None = None,
    **params: object,
) -> tuple[list[Delta], TurnResult]:
    deltas: list[Delta] = []
    result = None
    sampling = SamplingParams(**params)  # type: ignore[arg-type]
    for ev in run_turn(engine, history or [], question, sampling, cancel):
        if isinstance(ev, Delta):
            deltas.append(ev)
        elif isinstance(ev, TurnDone):
            result = ev.result
    assert result is not None
    return deltas, result


def test_prompt_has_one_bos_and_ends_with_forced_think(scripted: LlamaEngine) -> None:
    tokens = scripted.prompt_tokens([ChatMessage("user", "hi")])
    assert tokens[0] == BOS and tokens.count(BOS) == 1
    assert tokens[-2:] == [THINK, NEWLINE]
    assert scripted.info.thinks and scripted.info.think_end_token == THINK_END


def test_forced_reply_splits_into_exact_thinking_and_answer(scripted: LlamaEngine) -> None:
    _, result = turn(scripted, "What is two plus two?")
    assert result.thinking == tiny_models.SCRIPT_THINKING
    assert result.answer == tiny_models.SCRIPT_ANSWER
    assert result.boxed == "4"
    assert result.finish_reason == "stop"
    s = result.stats
    assert s.thinking_tokens == len(scripted.tokenize(tiny_models.SCRIPT_THINKING)) + 1
    assert s.thinking_tokens + s.answer_tokens == s.completion_tokens
    assert s.ttft_s > 0 and s.total_s >= s.ttft_s


def test_character_split_across_tokens_never_shows_as_replacement(scripted: LlamaEngine) -> None:
    pieces = [scripted._piece(t) for t in scripted.tokenize("龘")]
    assert len(pieces) > 1  # the character really is split across byte tokens
    deltas, result = turn(scripted, "hi")
    assert all("\ufffd" not in d.text for d in deltas)
    assert result.answer.endswith("龘")


def test_follow_up_turn_reevaluates_only_new_tokens(scripted: LlamaEngine) -> None:
    _, first = turn(scripted, "first question")
    history = history_messages([("first question", first.answer)])
    _, second = turn(scripted, "second question", history)
    s = second.stats
    # Everything up to the earlier `<｜Assistant｜>` is reused; the forced `<think>\n` and the
    # thinking are not part of the history, so they are replaced.
    assert s.cached_tokens == first.stats.prompt_tokens - 2
    assert s.evaluated_tokens == s.prompt_tokens - s.cached_tokens
    new_text = len(scripted.tokenize(first.answer)) + len(scripted.tokenize("second question"))
    assert s.evaluated_tokens <= new_text + 8  # plus a few template tokens, not the history
    # A third turn with a longer history still costs only its new text.
    history += history_messages([("second question", second.answer)])
    _, third = turn(scripted, "third", history)
    assert third.stats.evaluated_tokens <= new_text + 8


def test_max_tokens_ends_with_length(noise: LlamaEngine) -> None:
    _, result = turn(noise, "hi", max_tokens=25, seed=1)
    assert result.finish_reason == "length"
    assert result.stats.completion_tokens == 25


def test_cancel_stops_decoding_at_once(noise: LlamaEngine) -> None:
    cancel = threading.Event()
    n = 0
    stats = None
    for ev in noise.stream([ChatMessage("user", "hi")], SamplingParams(max_tokens=500), cancel):
        if isinstance(ev, Token):
            n += 1
            if n == 10:
                cancel.set()
        elif isinstance(ev, Done):
            stats = ev.stats
    assert stats is not None and stats.finish_reason == "cancelled"
    assert stats.completion_tokens == 10


def test_fixed_seed_repeats_and_fresh_seeds_differ(noise: LlamaEngine) -> None:
    _, a = turn(noise, "hi", max_tokens=30, seed=42)
    _, b = turn(noise, "hi", max_tokens=30, seed=42)
    assert a.thinking + a.answer == b.thinking + b.answer
    _, c = turn(noise, "hi", max_tokens=30)
    _, d = turn(noise, "hi", max_tokens=30)
    assert c.stats.seed != d.stats.seed
    assert c.thinking + c.answer != d.thinking + d.answer


def test_prompt_longer_than_context_is_a_user_error(noise_model: Path) -> None:
    eng = LlamaEngine(noise_model, LoadOptions(n_ctx=64))
    try:
        with pytest.raises(R1ChatError, match="too long"):
            turn(eng, "word " * (eng.info.n_ctx + 10))
    finally:
        eng.close()


def test_non_gguf_file_is_refused_before_llama_cpp(tmp_path: Path) -> None:
    f = tmp_path / "x.gguf"
    f.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 100)
    with pytest.raises(R1ChatError):
        LlamaEngine(f)


def test_smollm2_a_model_without_thinking(smollm2_model: Path) -> None:
    eng = LlamaEngine(smollm2_model, LoadOptions(n_ctx=1024))
    try:
        assert not eng.info.thinks
        text = eng.render([ChatMessage("user", "Say hello.")])
        assert "<|im_start|>user\nSay hello.<|im_end|>" in text
        assert not text.endswith("<think>\n")
        _, result = turn(
            eng, "What is the capital of France?", max_tokens=40, seed=3, temperature=0.0
        )
        assert result.thinking == ""
        assert result.answer.strip()
        assert result.stats.thinking_tokens == 0
    finally:
        eng.close()


def test_stop_during_a_long_prefill_aborts_it_and_the_engine_still_works(
    noise_model: Path,
) -> None:
    eng = LlamaEngine(noise_model, LoadOptions(n_ctx=8192, n_batch=8192))
    try:
        cancel = threading.Event()
        threading.Timer(0.05, cancel.set).start()
        events = list(eng.stream([ChatMessage("user", "word " * 7000)], SamplingParams(), cancel))
        assert [type(e) for e in events] == [Started, Done]
        done = events[1]
        assert isinstance(done, Done)
        assert done.stats.finish_reason == "cancelled"
        assert done.stats.evaluated_tokens == 0  # the one 7,000-token batch was aborted
        _, result = turn(eng, "hi", max_tokens=5)
        assert result.stats.completion_tokens == 5
        assert result.stats.cached_tokens == 0
    finally:
        eng.close()
