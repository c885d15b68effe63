"""Steering the thinking on real llama.cpp: a budget, think longer, the loop guard, answer now."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models
from cli_support import Cli
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ask_cli import one_line_error

from r1chat.conversation import Conversation
from r1chat.engines.llama import LlamaEngine, LoadOptions
from r1chat.prompts import ChatMessage
from r1chat.reasoning import (
    DEFAULT_BUDGET_MESSAGE,
    Inject,
    LoopGuard,
    ReasoningParams,
    ThinkingControl,
)
from r1chat.sampling import SamplingParams
from r1chat.turn import (
    LoopNoticed,
    ThinkingEnded,
    TurnDone,
    TurnEvent,
    TurnResult,
    run_turn,
)

ROOT = Path(__file__).resolve().parent.parent


def engine(path: Path, n_ctx: int = 2048) -> Iterator[LlamaEngine]:
    eng = LlamaEngine(path, LoadOptions(n_ctx=n_ctx))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def noise(noise_model: Path) -> Iterator[LlamaEngine]:
    yield from engine(noise_model)


@pytest.fixture(scope="module")
def scripted(scripted_model: Path) -> Iterator[LlamaEngine]:
    yield from engine(scripted_model)


@pytest.fixture(scope="module")
def looping(loop_model: Path) -> Iterator[LlamaEngine]:
    yield from engine(loop_model)


def run(
    eng: LlamaEngine, control: ThinkingControl | None = None, question: str = "q", **params: object
) -> tuple[list[TurnEvent], TurnResult]:
    sampling = SamplingParams(**{"max_tokens": 300, "seed": 5, **params})  # type: ignore[arg-type]
    events = list(run_turn(eng, [], question, sampling, control=control))
    done = events[-1]
    assert isinstance(done, TurnDone)
    return events, done.result


# --- budget -------------------------------------------------------------------------------------


def test_a_budget_ends_the_thinking_after_exactly_that_many_tokens(noise: LlamaEngine) -> None:
    control = ThinkingControl(ReasoningParams(budget=50))
    events, result = run(noise, control)
    closing = noise.tokenize(ReasoningParams().closing)
    assert control.tokens == 50  # sampled by the model; then r1chat's closing text
    # The thinking's own tokens are the model's; the closing text r1chat wrote is counted apart.
    assert result.stats.thinking_tokens == 50
    assert result.stats.forced_tokens == len(closing)
    assert result.thinking.rstrip().endswith(DEFAULT_BUDGET_MESSAGE)
    assert result.thinking_ended == "budget" and result.answer
    [ended] = [e for e in events if isinstance(e, ThinkingEnded)]
    assert (ended.how, ended.tokens) == ("budget", result.stats.thinking_tokens)
    assert result.stats.thinking_s > 0 and result.stats.ttfa_s >= result.stats.thinking_s


def test_after_a_budget_a_follow_up_reuses_the_cached_prefix(noise: LlamaEngine) -> None:
    chat = Conversation()
    params = SamplingParams(max_tokens=120, seed=9)
    first_prompt = noise.prompt_tokens([ChatMessage("user", "first")])
    control = ThinkingControl(ReasoningParams(budget=20))
    first = list(chat.ask(noise, "first", params, control=control))
    assert isinstance(first[-1], TurnDone) and first[-1].result.thinking_ended == "budget"
    second = list(chat.ask(noise, "second", params))
    assert isinstance(second[-1], TurnDone)
    # Everything up to the earlier reply's thinking, which R1's template does not send back:
    # the injected closing text left the cache consistent with what was decoded.
    assert second[-1].result.stats.cached_tokens == len(first_prompt) - 2


def test_a_budget_message_of_your_own(noise: LlamaEngine) -> None:
    control = ThinkingControl(ReasoningParams(budget=10, budget_message="Enough: answering."))
    _, result = run(noise, control)
    assert result.thinking.rstrip().endswith("Enough: answering.")


def test_a_budget_of_zero_means_no_thinking(scripted: LlamaEngine) -> None:
    assert scripted.render([], no_thinking=True).endswith("<think>\n\n</think>\n\n")
    events, result = run(scripted, ThinkingControl(ReasoningParams(budget=0)))
    assert result.thinking == "" and result.thinking_ended == "budget"
    assert result.stats.thinking_tokens == 0
    assert [e.tokens for e in events if isinstance(e, ThinkingEnded)] == [0]


# --- think longer ------------------------------------------------------------------------------


def test_think_min_turns_an_early_close_into_wait(scripted: LlamaEngine) -> None:
    _, plain = run(scripted, temperature=0)
    assert plain.thinking == tiny_models.SCRIPT_THINKING  # closes after 7 tokens
    control = ThinkingControl(ReasoningParams(min_tokens=30))
    _, result = run(scripted, control, temperature=0)
    # The model's thinking ended its line; "Wait" starts a paragraph of its own.
    assert result.thinking.startswith(tiny_models.SCRIPT_THINKING + "\nWait")
    assert control.tokens >= 30 and result.thinking_ended == "model"
    assert result.answer == tiny_models.SCRIPT_ANSWER


def test_think_min_never_glues_wait_to_the_last_word() -> None:
    from r1chat.engines.scripted import ScriptedEngine

    engine = ScriptedEngine("So it is four.</think>\n\nFour.")
    control = ThinkingControl(ReasoningParams(min_tokens=8))
    for ev in run_turn(engine, [], "q", SamplingParams(), control=control):
        if isinstance(ev, TurnDone):
            assert "four.Wait" not in ev.result.thinking
            assert "So it is four.\n\nWait" in ev.result.thinking
    assert Inject("Wait", apart=True).after("four.") == "\n\nWait"
    assert Inject("Wait", apart=True).after("four.\n") == "\nWait"
    assert Inject("Wait", apart=True).after("four.\n\n") == "Wait"
    assert Inject("Time is up.").after("four.") == "Time is up."


# --- the loop guard ----------------------------------------------------------------------------


def test_a_thinking_loop_is_cut_and_the_answer_comes(looping: LlamaEngine) -> None:
    events, result = run(looping, max_tokens=2000)
    assert result.thinking_ended == "loop"
    assert result.answer == tiny_models.LOOP_ANSWER
    assert result.stats.thinking_tokens < 250  # a cycle of 28 tokens: found within ~150
    assert not [e for e in events if isinstance(e, LoopNoticed)]


def test_on_loop_stop_ends_the_reply(looping: LlamaEngine) -> None:
    _, result = run(looping, ThinkingControl(ReasoningParams(on_loop="stop")), max_tokens=2000)
    assert result.thinking_ended == "loop" and result.finish_reason == "cancelled"
    assert result.answer == "" and result.stats.completion_tokens < 250


def test_on_loop_warn_says_so_and_goes_on(looping: LlamaEngine) -> None:
    events, result = run(looping, ThinkingControl(ReasoningParams(on_loop="warn")), max_tokens=600)
    assert len([e for e in events if isinstance(e, LoopNoticed)]) == 1
    assert result.finish_reason == "length" and result.thinking_ended is None


def test_answer_now_ends_the_thinking_at_the_next_token(noise: LlamaEngine) -> None:
    control = ThinkingControl(ReasoningParams())
    turn = run_turn(noise, [], "q", SamplingParams(max_tokens=300, seed=2), control=control)
    seen = 0
    result = None
    for ev in turn:
        if isinstance(ev, ThinkingEnded):
            assert ev.how == "user"
        if isinstance(ev, TurnDone):
            result = ev.result
        elif hasattr(ev, "text"):
            seen += 1
            if seen == 12:
                control.answer_now()
    assert result is not None and result.thinking_ended == "user" and result.answer
    assert abs(control.tokens - 12) <= 3  # a piece of text is not always a token


def test_models_without_thinking_are_not_steered(smollm2_model: Path) -> None:
    eng = LlamaEngine(smollm2_model, LoadOptions(n_ctx=512))
    try:
        control = ThinkingControl(ReasoningParams(budget=5))
        _, result = run(eng, control, question="Say hi.", max_tokens=20)
        assert result.thinking_ended is None and control.tokens == 0
    finally:
        eng.close()


# --- the guard raises no false alarm -----------------------------------------------------------


def prose_of(source: str) -> str:
    """The docstrings and comments of Python source: its prose. (Code itself repeats 32-token
    spans by design: a protocol's signature and each engine's copy of it.)"""
    import ast
    import io
    import tokenize

    parts = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 40
    ]
    parts += [
        t.string
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type == tokenize.COMMENT and not t.string.startswith(("# noqa", "# type:"))
    ]
    return "\n".join(parts)


def long_texts() -> str:
    """Long, varied, human-written text: this project's docs, changelog, docstrings, comments."""
    docs = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "docs" / "benchmarks.md"]
    texts = [p.read_text(encoding="utf-8") for p in docs]
    sources = [
        p
        for d in ("r1chat", "tests", "benchmarks", "scripts")
        for p in sorted((ROOT / d).rglob("*.py"))
    ]
    texts += [prose_of(p.read_text(encoding="utf-8")) for p in sources]
    return "\n\n".join(texts)


def test_no_false_alarm_on_long_ordinary_text(noise: LlamaEngine) -> None:
    tokens = noise.tokenize(long_texts(), special=False)
    assert len(tokens) > 60_000
    guard = LoopGuard()
    for i in range(0, len(tokens), 8000):  # thinking-sized stretches of it, each from scratch
        guard = LoopGuard()
        assert not any(guard.feed(t) for t in tokens[i : i + 8000]), i


def test_no_false_alarm_on_long_reasoning_like_text(noise: LlamaEngine) -> None:
    rng = random.Random(1)
    steps = []
    for k in range(600):  # long math reasoning: the same phrases, other numbers
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        steps.append(
            rng.choice(
                [
                    f"Wait, let me check again: {a} + {b} = {a + b}.",
                    f"So step {k}: {a} times {b} is {a * b}, then subtract {b} to get {a * b - b}.",
                    f"Hmm, maybe I should verify {a} mod {b}, which is {a % b}.",
                    f"Let me recompute: {a} - {b} = {a - b}. Yes, that matches.",
                ]
            )
        )
    tokens = noise.tokenize(" ".join(steps), special=False)
    guard = LoopGuard()
    assert len(tokens) > 8000 and not any(guard.feed(t) for t in tokens)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=1500), st.integers(min_value=0, max_value=500))
def test_a_cycle_is_always_found_within_bounds(length: int, lead: int) -> None:
    rng = random.Random(length * 7919 + lead)
    cycle = [rng.randrange(150_000) for _ in range(length)]
    while len(set(cycle)) < length:  # distinct tokens: the cycle is exactly `length` long
        cycle = [rng.randrange(150_000) for _ in range(length)]
    guard = LoopGuard()
    prefix = [rng.randrange(150_000) for _ in range(lead)]
    # Occurrences may not overlap: a short cycle repeats its 32-token span every `period`.
    period = length * -(-32 // length)
    stream = prefix + cycle * (3 * period // length + 3)
    fired = [i for i, t in enumerate(stream) if guard.feed(t)]
    assert fired and fired[0] - lead <= 2 * period + 32


# --- the command line ---------------------------------------------------------------------------


def test_ask_json_tells_how_the_thinking_ended(cli: Cli, noise_model: Path) -> None:
    proc = cli(
        "ask",
        "--model",
        str(noise_model),
        "--json",
        "--think-budget",
        "30",
        "--max-tokens",
        "120",
        "--seed",
        "3",
        "q",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["thinking_ended"] == "budget" and out["answer"]
    assert out["stats"]["thinking_s"] > 0 and out["stats"]["ttfa_s"] > 0
    assert out["thinking"].rstrip().endswith(DEFAULT_BUDGET_MESSAGE)


def test_ask_json_without_steering(cli: Cli, scripted_model: Path) -> None:
    out = json.loads(cli("ask", "--model", str(scripted_model), "--json", "q").stdout)
    assert out["thinking_ended"] == "model"


def test_ask_stats_show_the_thinking_time(cli: Cli, scripted_model: Path) -> None:
    proc = cli("ask", "--model", str(scripted_model), "--stats", "q")
    err = proc.stderr.decode()
    assert "thinking " in err and "first answer token" in err and "ended by model" in err


def test_history_keeps_how_the_thinking_ended(cli: Cli, loop_model: Path) -> None:
    assert cli("ask", "--model", str(loop_model), "--max-tokens", "2000", "q").returncode == 0
    shown = cli("history", "show", "1").stdout.decode()
    assert "[thinking ended: loop cut]" in shown
    dumped = json.loads(cli("history", "show", "1", "--json").stdout)
    assert dumped["messages"][-1]["thinking_ended"] == "loop"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--think-budget", "-5"], ["--think-budget"]),
        (["--think-budget", "10", "--think-min", "20"], ["--think-min", "larger"]),
        (["--think-budget", "4000", "--max-tokens", "4000"], ["no room for an answer"]),
    ],
)
def test_bad_thinking_settings_are_one_line(
    cli: Cli, scripted_model: Path, args: list[str], words: list[str]
) -> None:
    proc = cli("ask", "--model", str(scripted_model), *args, "q")
    assert proc.returncode == 2
    one_line_error(proc, *words)


def test_the_config_file_and_environment_set_it_too(
    cli: Cli, r1home: Path, noise_model: Path
) -> None:
    (r1home / "config.toml").write_text(
        '[reasoning]\nbudget = 25\nbudget_message = "Stop here."\non_loop = "warn"\n'
    )
    out = json.loads(
        cli("ask", "--model", str(noise_model), "--json", "--max-tokens", "100", "q").stdout
    )
    assert out["thinking_ended"] == "budget" and out["thinking"].rstrip().endswith("Stop here.")
    out = json.loads(
        cli(
            "ask",
            "--model",
            str(noise_model),
            "--json",
            "--max-tokens",
            "100",
            "q",
            env={"R1CHAT_THINK_BUDGET": "0"},
        ).stdout
    )
    assert out["thinking"] == "" and out["thinking_ended"] == "budget"
    (r1home / "config.toml").write_text('[reasoning]\non_loop = "never"\n')
    one_line_error(cli("ask", "--model", str(noise_model), "q"), "on_loop")


def test_a_model_without_thinking_says_the_options_do_nothing(
    cli: Cli, smollm2_model: Path
) -> None:
    proc = cli(
        "ask",
        "--model",
        str(smollm2_model),
        "--think-budget",
        "10",
        "--max-tokens",
        "100",
        "Say hi",
    )
    assert proc.returncode == 0
    notes = [ln for ln in proc.stderr.decode().splitlines() if "not known to think" in ln]
    assert len(notes) == 1 and "--think-budget does nothing" in notes[0]
