"""The remote engine against a loopback server replaying what real servers send: current vLLM
(`delta.reasoning`), llama-server and DeepSeek (`delta.reasoning_content`), Ollama, and servers
without a reasoning parser (`<think>` inline). The errors no live server here makes on demand
(429, 5xx, malformed events, a stream cut short, silence) are replayed too."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from servers import ReplayServer, Reply, chunk

from r1chat.engines.remote import NATIVE_BUDGET_SLACK, RemoteEngine, host_of, normalize_base
from r1chat.errors import R1ChatError
from r1chat.prompts import ChatMessage
from r1chat.reasoning import ReasoningParams, ThinkingControl
from r1chat.sampling import SamplingParams
from r1chat.turn import TurnDone, TurnResult, run_turn

THINKING = ["Two", " plus", " two", " makes", " four", ".\n"]
ANSWER = ["So", " the", " answer", " is", " $\\boxed{4}$"]
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def vllm() -> list[Any]:
    """Current vLLM with --reasoning-parser deepseek_r1: the thinking in `reasoning`."""
    evs: list[Any] = [chunk({"role": "assistant", "content": ""}, model=MODEL)]
    evs += [chunk({"reasoning": t}, model=MODEL) for t in THINKING]
    evs += [chunk({"content": t}, model=MODEL) for t in ANSWER]
    evs.append(chunk({}, "stop", model=MODEL))
    evs.append(
        {
            **chunk({}, model=MODEL),
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 11},
        }
    )
    return evs


def llama_server() -> list[Any]:
    """llama-server --reasoning-format deepseek (and DeepSeek's API): `reasoning_content`."""
    evs: list[Any] = [chunk({"role": "assistant", "content": None})]
    evs += [chunk({"reasoning_content": t}) for t in THINKING]
    evs += [chunk({"content": t}) for t in ANSWER]
    evs.append(chunk({}, "stop"))
    return evs


def ollama() -> list[Any]:
    """Ollama's OpenAI API: `reasoning` beside an empty content in every chunk."""
    evs: list[Any] = [chunk({"role": "assistant", "content": "", "reasoning": t}) for t in THINKING]
    evs += [chunk({"role": "assistant", "content": t}) for t in ANSWER]
    evs.append(chunk({"role": "assistant", "content": ""}, "stop"))
    return evs


def inline(opening: bool) -> list[Any]:
    """No reasoning parser: the content holds the thinking and the tags (R1's template writes
    the opening tag into the prompt, so often only the closing one comes back)."""
    pieces = (["<think>", "\n"] if opening else []) + THINKING + ["</think>", "\n\n"] + ANSWER
    return [chunk({"content": t}) for t in pieces] + [chunk({}, "stop")]


def server(made: list[ReplayServer], replies: list[Reply], **kw: Any) -> ReplayServer:
    s = ReplayServer(replies, **kw)
    made.append(s)
    return s


def turn(
    engine: RemoteEngine,
    question: str = "What is 2+2?",
    history: list[ChatMessage] | None = None,
    params: SamplingParams | None = None,
    control: ThinkingControl | None = None,
    cancel: threading.Event | None = None,
) -> TurnResult:
    t = run_turn(engine, history or [], question, params or SamplingParams(seed=7), cancel, control)
    for ev in t:
        if isinstance(ev, TurnDone):
            return ev.result
    raise AssertionError("no TurnDone")


@pytest.mark.parametrize(
    "events",
    [vllm(), llama_server(), ollama(), inline(False), inline(True)],
    ids=["vllm-reasoning", "llama-server-reasoning_content", "ollama", "inline", "inline-open"],
)
def test_every_way_of_sending_the_thinking_gives_the_same_turn(
    made: list[ReplayServer], events: list[Any]
) -> None:
    s = server(made, [Reply(events)], models=[{"id": MODEL}])
    engine = RemoteEngine(s.base)
    assert engine.model == MODEL and engine.info.thinks
    result = turn(engine)
    assert result.thinking.strip() == "".join(THINKING).strip()
    assert result.answer == "".join(ANSWER)
    assert result.thinking_ended == "model"
    assert result.stats.finish_reason == "stop"
    assert result.stats.thinking_tokens == len(THINKING)
    assert result.stats.answer_tokens == len(ANSWER)


def test_sampling_and_messages_go_to_the_server_as_r1_wants_them(
    made: list[ReplayServer],
) -> None:
    s = server(made, [Reply(vllm())], models=[{"id": MODEL, "max_model_len": 32768}])
    engine = RemoteEngine(s.base, key="sk-secret-123")
    assert engine.kind.name == "vLLM" and engine.info.n_ctx == 32768
    history = [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!")]
    result = turn(engine, history=history, params=SamplingParams(0.55, 0.9, 20, 321, seed=5))
    body, headers = s.requests[0]
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.55, 0.9, 20)
    assert (body["max_tokens"], body["seed"], body["stream"]) == (321, 5, True)
    assert headers["Authorization"] == "Bearer sk-secret-123"
    assert result.stats.prompt_tokens == 9 and result.stats.completion_tokens == 11


def test_api_base_forms_and_the_host_shown() -> None:
    assert normalize_base("http://gpu:8000") == "http://gpu:8000/v1"
    assert normalize_base("http://gpu:8000/v1/") == "http://gpu:8000/v1"
    assert normalize_base("https://x.org/api/v1") == "https://x.org/api/v1"
    assert host_of("http://user:pw@gpu:8000/v1") == "gpu:8000"  # never the credentials
    with pytest.raises(R1ChatError, match="http"):
        normalize_base("gpu:8000")


def error_of(made: list[ReplayServer], reply: Reply, **kw: Any) -> str:
    s = server(made, [reply])
    engine = RemoteEngine(s.base, **kw)
    with pytest.raises(R1ChatError) as e:
        turn(engine)
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Reply(status=401, body={"error": {"message": "bad key sk-secret-123"}}),
            "refused the API key",
        ),
        (
            Reply(
                status=400,
                body={"error": {"message": "This model's maximum context length is 2048 tokens."}},
            ),
            "maximum context length is 2048",
        ),
        (Reply(status=503, body={"detail": "overloaded"}), "failed (503): overloaded"),
        (
            Reply(status=404, body={"error": {"message": "The model `x` does not exist."}}),
            "no such model",
        ),
        (Reply(vllm()[:4], done=False), "ended the stream before it was done"),
        (Reply(["data: {not json"]), "malformed JSON"),
        (Reply([{"error": {"message": "out of memory"}}]), "failed: out of memory"),
    ],
    ids=["401", "400-context", "503", "404", "no-done", "bad-json", "error-event"],
)
def test_server_errors_are_one_line(made: list[ReplayServer], reply: Reply, expected: str) -> None:
    message = error_of(made, reply, key="sk-secret-123")
    assert expected in message
    assert "sk-secret-123" not in message  # a server echoing the key back is scrubbed


def test_silence_longer_than_the_timeout_is_an_error(made: list[ReplayServer]) -> None:
    message = error_of(made, Reply(vllm(), pause_s=3.0), timeout_s=1.0)
    assert "sent nothing for 1 s" in message


def test_a_busy_server_is_retried_as_it_asks(made: list[ReplayServer]) -> None:
    busy = Reply(
        status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0.2"}
    )
    s = server(made, [busy, busy, Reply(vllm())])
    notes: list[str] = []
    result = turn(RemoteEngine(s.base, on_note=notes.append))
    assert result.answer == "".join(ANSWER)
    assert len(s.requests) == 3
    assert notes == ["the server is busy (429): retrying in 0.2 s"] * 2


def test_a_server_that_stays_busy_is_an_error(made: list[ReplayServer]) -> None:
    busy = Reply(status=429, body={"error": {"message": "quota"}}, headers={"Retry-After": "0"})
    s = server(made, [busy] * 4)
    with pytest.raises(R1ChatError) as e:
        turn(RemoteEngine(s.base))
    message = str(e.value)
    assert len(s.requests) == 4
    assert "429" in message and "quota" in message


def test_connection_errors_are_one_line(made: list[ReplayServer]) -> None:
    from servers import free_port

    with pytest.raises(R1ChatError, match="connection refused"):
        RemoteEngine(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(R1ChatError, match="unknown host"):
        RemoteEngine("http://no-such-host.invalid/v1")
    s = server(made, [])
    with pytest.raises(R1ChatError, match="TLS failed"):
        RemoteEngine(s.base.replace("http://", "https://"))


def test_an_unknown_model_names_what_the_server_has(made: list[ReplayServer]) -> None:
    s = server(made, [], models=[{"id": "a"}, {"id": "b"}])
    with pytest.raises(R1ChatError, match=r"no model 'c' \(it has: a, b\)"):
        RemoteEngine(s.base, "c")


def test_a_stop_closes_the_stream_at_once(made: list[ReplayServer]) -> None:
    endless = [chunk({"reasoning": f" w{i}"}) for i in range(2000)]
    s = server(made, [Reply(endless, gap_s=0.01)])
    cancel = threading.Event()
    engine = RemoteEngine(s.base, "m", thinks=True)
    t = run_turn(engine, [], "q", SamplingParams(), cancel)
    seen = 0
    result = None
    for ev in t:
        if isinstance(ev, TurnDone):
            result = ev.result
        elif getattr(ev, "kind", None) == "think":
            seen += 1
            if seen == 5:
                cancel.set()
    assert result is not None and result.stats.finish_reason == "cancelled"
    assert result.stats.thinking_tokens < 50


def budget_replies(continued: list[Any]) -> list[Reply]:
    endless = [chunk({"reasoning": f" step{i}"}) for i in range(200)]
    return [Reply(endless, gap_s=0.002), Reply(continued)]


@pytest.mark.parametrize("kind", ["vLLM", "llama-server"])
def test_a_server_that_ignores_its_budget_field_is_cut_and_continued(
    made: list[ReplayServer], kind: str
) -> None:
    """The budget is asked of the server itself; one that ignores the field (a vLLM without a
    reasoning parser, a llama-server template without thinking tags) is cut by r1chat soon
    after, and continued with the closing text."""
    continued = [chunk({"reasoning": " Done."}), chunk({"content": "Four."}), chunk({}, "stop")]
    models = [{"id": "r1", "max_model_len": 4096}] if kind == "vLLM" else [{"id": "r1"}]
    s = server(made, budget_replies(continued), models=models)
    if kind == "llama-server":
        s.extra["/props"] = {"default_generation_settings": {"n_ctx": 4096}}
    engine = RemoteEngine(s.base)
    assert engine.kind.name == kind
    control = ThinkingControl(ReasoningParams(budget=10, budget_message="Time is up."))
    result = turn(engine, control=control)
    first = s.requests[0][0]
    if kind == "llama-server":  # its count includes the prompt's newline; N + 1 gives N
        assert first["thinking_budget_tokens"] == 11
        assert first["reasoning_budget_message"] == "\n\nTime is up.\n"
    else:
        assert first["thinking_token_budget"] == 10
    assert result.thinking_ended == "budget" and result.stats.steered_by == "r1chat"
    assert result.answer == "Four."
    assert len(s.requests) == 2
    body = s.requests[1][0]
    last = body["messages"][-1]
    assert last["role"] == "assistant" and body["continue_final_message"] is True
    cut = 10 + NATIVE_BUDGET_SLACK
    thought = "".join(f" step{i}" for i in range(cut)) + "\n\nTime is up.\n"
    if kind == "llama-server":
        assert last["reasoning_content"] == thought and last["content"] == ""
    else:  # a closing tag would make R1's template drop the thinking: it is left open
        assert last["content"] == "<think>\n" + thought
    assert "</think>" not in str(last)


@pytest.mark.parametrize("kind", ["vLLM", "llama-server"])
def test_a_budget_the_server_keeps_ends_the_thinking_in_one_request(
    made: list[ReplayServer], kind: str
) -> None:
    """llama-server writes the closing sentence it was given, then `</think>`; vLLM closes. The
    reply is one request, and the result says the server ended it."""
    message = ["\n\nTime", " is", " up.\n"] if kind == "llama-server" else []
    events = [
        *(chunk({"reasoning_content": f" step{i}"}) for i in range(10)),
        *(chunk({"reasoning_content": m}) for m in message),
        chunk({"content": "\n\nFour."}),
        chunk({}, "stop"),
    ]
    models = [{"id": "r1", "max_model_len": 4096}] if kind == "vLLM" else [{"id": "r1"}]
    s = server(made, [Reply(events)], models=models)
    if kind == "llama-server":
        s.extra["/props"] = {"default_generation_settings": {"n_ctx": 4096}}
    control = ThinkingControl(ReasoningParams(budget=10, budget_message="Time is up."))
    result = turn(RemoteEngine(s.base), control=control)
    assert len(s.requests) == 1 and result.answer == "Four."
    if kind == "llama-server":  # the server's sentence says it was the budget
        assert result.thinking_ended == "budget" and result.stats.steered_by == "server"
        assert result.thinking.rstrip().endswith("Time is up.")
    else:  # vLLM closes without a sentence: the model's close, as far as r1chat can tell
        assert result.thinking_ended == "model"


def test_answer_now_on_llama_server_uses_its_control_endpoint(
    made: list[ReplayServer],
) -> None:
    """Answer now asks llama-server to end the thinking in the same stream: nothing is cut,
    nothing is read again."""
    endless = [chunk({"reasoning_content": f" step{i}"}) for i in range(400)]
    after = [
        chunk({"reasoning_content": "\n\nTime is up.\n"}),
        chunk({"content": "Now."}),
        chunk({}, "stop"),
    ]
    s = server(made, [Reply(endless, gap_s=0.005, on_control=after)], models=[{"id": "r1"}])
    s.extra["/props"] = {"default_generation_settings": {"n_ctx": 4096}}
    s.control_answer = {"success": True}
    control = ThinkingControl(ReasoningParams(budget_message="Time is up."))
    t = run_turn(RemoteEngine(s.base), [], "q", SamplingParams(), None, control)
    result = None
    for ev in t:
        if getattr(ev, "kind", None) == "think" and "step3" in getattr(ev, "text", ""):
            control.answer_now()
        if isinstance(ev, TurnDone):
            result = ev.result
    assert result is not None and result.answer == "Now."
    assert result.thinking_ended == "user" and result.stats.steered_by == "server"
    assert s.controls == [{"id": "chatcmpl-1", "action": "reasoning_end"}]
    assert len(s.requests) == 1 and s.requests[0][0]["reasoning_control"] is True
    assert "step399" not in result.thinking


def test_answer_now_falls_back_when_the_control_endpoint_refuses(
    made: list[ReplayServer],
) -> None:
    continued = [chunk({"content": "Now."}), chunk({}, "stop")]
    s = server(made, budget_replies(continued), models=[{"id": "r1"}])
    s.extra["/props"] = {"default_generation_settings": {"n_ctx": 4096}}
    s.control_answer = {"success": False, "message": "no active completion for this id"}
    control = ThinkingControl(ReasoningParams())
    t = run_turn(RemoteEngine(s.base), [], "q", SamplingParams(), None, control)
    result = None
    for ev in t:
        if getattr(ev, "kind", None) == "think" and "step3" in getattr(ev, "text", ""):
            control.answer_now()
        if isinstance(ev, TurnDone):
            result = ev.result
    assert result is not None and result.answer == "Now."
    assert result.thinking_ended == "user" and result.stats.steered_by == "r1chat"
    assert len(s.controls) == 1 and len(s.requests) == 2


def test_answer_now_on_a_server_that_continues(made: list[ReplayServer]) -> None:
    continued = [chunk({"content": "Now."}), chunk({}, "stop")]
    s = server(made, budget_replies(continued), models=[{"id": "r1", "max_model_len": 4096}])
    control = ThinkingControl(ReasoningParams())
    t = run_turn(RemoteEngine(s.base), [], "q", SamplingParams(), None, control)
    result = None
    for ev in t:
        if getattr(ev, "kind", None) == "think" and "step3" in getattr(ev, "text", ""):
            control.answer_now()
        if isinstance(ev, TurnDone):
            result = ev.result
    assert result is not None and result.thinking_ended == "user" and result.answer == "Now."


def test_think_min_continues_after_wait(made: list[ReplayServer]) -> None:
    early = [chunk({"reasoning": " a"}), chunk({"content": "Early."}), chunk({}, "stop")]
    more = [chunk({"reasoning": t}) for t in [" b", " c", " d"]] + [
        chunk({"content": "Later."}),
        chunk({}, "stop"),
    ]
    s = server(made, [Reply(early), Reply(more)], models=[{"id": "r1", "max_model_len": 4096}])
    control = ThinkingControl(ReasoningParams(min_tokens=3, wait="Wait"))
    result = turn(RemoteEngine(s.base), control=control)
    assert result.answer == "Later."
    assert (
        result.thinking.strip() == "a Wait b c d".replace(" Wait", "Wait")
        or "Wait" in result.thinking
    )
    # "Wait" goes on a paragraph of its own, not glued to the last word.
    assert s.requests[1][0]["messages"][-1]["content"] == "<think>\n a\n\nWait"


def test_no_thinking_on_llama_server_asks_for_a_budget_of_one(made: list[ReplayServer]) -> None:
    """llama-server counts the prompt's newline, and a budget of 0 caps nothing there."""
    s = server(
        made, [Reply([chunk({"content": "Four."}), chunk({}, "stop")])], models=[{"id": "r1"}]
    )
    s.extra["/props"] = {"default_generation_settings": {"n_ctx": 4096}}
    control = ThinkingControl(ReasoningParams(budget=0))
    result = turn(RemoteEngine(s.base), control=control)
    assert result.thinking == "" and result.answer == "Four."
    assert s.requests[0][0]["thinking_budget_tokens"] == 1


def test_a_server_that_cannot_continue_stops_at_the_budget_and_says_so(
    made: list[ReplayServer],
) -> None:
    s = server(made, budget_replies([]), models=[{"id": "r1"}])
    notes: list[str] = []
    engine = RemoteEngine(s.base, on_note=notes.append)
    assert engine.kind.name == "server" and not engine.kind.continues
    result = turn(engine, control=ThinkingControl(ReasoningParams(budget=10)))
    assert result.stats.finish_reason == "cancelled" and result.thinking_ended == "budget"
    assert notes and "cannot continue" in notes[0]
    assert len(s.requests) == 1


def test_no_thinking_on_a_server_that_cannot_continue_hides_it(
    made: list[ReplayServer],
) -> None:
    s = server(made, [Reply(vllm())], models=[{"id": "r1"}])
    notes: list[str] = []
    result = turn(
        RemoteEngine(s.base, on_note=notes.append),
        control=ThinkingControl(ReasoningParams(budget=0)),
    )
    assert result.thinking == "" and result.answer == "".join(ANSWER)
    assert notes == ["server cannot skip the thinking: it runs, unseen"]


def test_samples_on_a_server_are_concurrent_requests_and_vote(
    made: list[ReplayServer],
) -> None:
    from r1chat.many import ask_many

    def reply(boxed: str) -> Reply:
        return Reply(
            [
                chunk({"reasoning": "Hmm."}),
                chunk({"content": f"So $\\boxed{{{boxed}}}$"}),
                chunk({}, "stop"),
            ],
            pause_s=0.3,
        )

    s = server(made, [reply("4"), reply("4.0"), reply("5")], models=[{"id": "r1"}])
    got = ask_many(RemoteEngine(s.base), [ChatMessage("user", "2+2?")], SamplingParams(seed=10), 3)
    assert sorted(x.boxed or "" for x in got.samples) == ["4", "4.0", "5"]
    assert (got.vote.count, got.vote.of) == (2, 3) and got.vote.answer in ("4", "4.0")
    assert sorted(body["seed"] for body, _ in s.requests) == [10, 11, 12]
    assert s.peak == 3  # the three were served at the same time


def test_samples_on_a_server_obey_the_budget_each(made: list[ReplayServer]) -> None:
    """Each concurrent request is steered on its own: cut at its budget, then continued."""
    from r1chat.many import ask_many

    endless = [chunk({"reasoning": f" step{i}"}) for i in range(300)]
    continued = [chunk({"content": "Four."}), chunk({}, "stop")]
    s = server(
        made,
        [
            Reply(endless, gap_s=0.002),
            Reply(endless, gap_s=0.002),
            Reply(continued),
            Reply(continued),
        ],
        models=[{"id": "r1", "max_model_len": 4096}],
    )
    got = ask_many(
        RemoteEngine(s.base),
        [ChatMessage("user", "2+2?")],
        SamplingParams(seed=1),
        2,
        reasoning=ReasoningParams(budget=10, budget_message="Time is up."),
    )
    assert got.stats.together == "concurrent"
    cut = 10 + NATIVE_BUDGET_SLACK  # the field is ignored here: r1chat's backstop cuts it
    for sample in got.samples:
        assert sample.thinking_ended == "budget" and sample.answer == "Four."
        assert "Time is up." in sample.thinking and f"step{cut + 1}" not in sample.thinking
    continuations = [body for body, _ in s.requests if body.get("continue_final_message")]
    assert len(continuations) == 2


def with_logprobs(delta: dict[str, Any], tops: list[float]) -> Any:
    c = chunk(delta)
    c["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "t",
                "logprob": tops[0],
                "top_logprobs": [{"token": str(i), "logprob": v} for i, v in enumerate(tops)],
            }
        ]
    }
    return c


@pytest.mark.parametrize("kind", ["vLLM", "llama-server", "server"])
def test_a_replys_confidence_comes_from_the_servers_logprobs(
    made: list[ReplayServer], kind: str
) -> None:
    """DeepConf's trace confidence from `top_logprobs`, asked of servers known to take it."""
    events = [
        with_logprobs({"reasoning_content": "a"}, [-0.1, -2.0]),
        with_logprobs({"reasoning_content": "b"}, [-0.5, -1.5]),
        with_logprobs({"content": "4"}, [-0.2, -3.0]),
        chunk({}, "stop"),
    ]
    models = [{"id": "r1", "max_model_len": 4096}] if kind == "vLLM" else [{"id": "r1"}]
    s = server(made, [Reply(events)], models=models)
    if kind == "llama-server":
        s.extra["/props"] = {"default_generation_settings": {"n_ctx": 4096}}
    result = turn(RemoteEngine(s.base))
    asked = s.requests[0][0]
    if kind == "server":  # others may refuse the fields: not asked (read if sent anyway)
        assert "logprobs" not in asked
    else:
        assert asked["logprobs"] is True and asked["top_logprobs"] == 20
    confs = [1.05, 1.0, 1.6]  # minus the mean of each token's top logprobs
    assert result.stats.confidence_mean == pytest.approx(sum(confs) / 3)
    assert result.stats.confidence == pytest.approx(sum(confs) / 3)  # shorter than a window
