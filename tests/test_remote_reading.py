"""How a server's reply is read: thinking and answer decided from what the server sends, never
from the model's name (issue 20). Every case runs under a name that looks like R1 and one that
does not: the results must be the same."""

from __future__ import annotations

from typing import Any

import pytest
from servers import ReplayServer, Reply, chunk

from r1chat.engines.remote import RemoteEngine
from r1chat.sampling import SamplingParams
from r1chat.turn import Delta, Held, HeldDecided, TurnDone, TurnEvent, TurnResult, run_turn

NAMES = ["deepseek-r1", "/models/plain.gguf", "Qwen/Qwen3-8B"]


def content(*pieces: str, finish: str = "stop") -> list[Any]:
    return [chunk({"content": p}) for p in pieces] + [chunk({}, finish)]


def reply(
    made: list[ReplayServer], name: str, *replies: list[Any], props: dict[str, Any] | None = None
) -> tuple[list[TurnResult], list[list[TurnEvent]]]:
    s = ReplayServer([Reply(r) for r in replies], models=[{"id": name}])
    made.append(s)
    if props is not None:
        s.extra["/props"] = props
    engine = RemoteEngine(s.base)
    results, events = [], []
    for _ in replies:
        seen = list(run_turn(engine, [], "q", SamplingParams(seed=1)))
        done = seen[-1]
        assert isinstance(done, TurnDone)
        results.append(done.result)
        events.append(seen)
    return results, events


def read(made: list[ReplayServer], name: str, *pieces: str, finish: str = "stop") -> TurnResult:
    [result], _ = reply(made, name, content(*pieces, finish=finish))
    return result


@pytest.mark.parametrize("name", NAMES)
def test_inline_tags_are_read_whatever_the_name(made: list[ReplayServer], name: str) -> None:
    """Finding 1: a name without r1/think/qwq/reason got the tags stripped and the thinking
    glued into the answer ("Let me think.\\nThe answer is 4.")."""
    r = read(made, name, "<think>\nLet me think.\n</think>\n\nThe answer is 4.")
    assert (r.thinking.strip(), r.answer) == ("Let me think.", "The answer is 4.")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", [1, 3, 7, 1000])
def test_a_closing_tag_without_an_opener_makes_what_came_before_it_thinking(
    made: list[ReplayServer], name: str, split: int
) -> None:
    """Finding 2: a template that opens the thinking in the prompt, without a parser, under an
    unknown name showed a literal `</think>` in the answer."""
    text = "Let me think.\nIt is 4.\n</think>\n\nThe answer is 4."
    r = read(made, name, *(text[i : i + split] for i in range(0, len(text), split)))
    assert (r.thinking.strip(), r.answer) == ("Let me think.\nIt is 4.", "The answer is 4.")
    assert "</think>" not in r.answer


@pytest.mark.parametrize("name", NAMES)
def test_an_answer_with_no_tags_at_all_is_the_answer(made: list[ReplayServer], name: str) -> None:
    """Finding 3: llama-server with --reasoning-format deepseek drops R1's whitespace-only
    thinking (`\\n</think>\\n\\nHello!`) and sends content only: it was shown as thinking."""
    r = read(made, name, "Hello", "! How can I help?")
    assert (r.thinking, r.answer) == ("", "Hello! How can I help?")


@pytest.mark.parametrize("name", NAMES)
def test_an_opener_after_a_newline_is_an_opener(made: list[ReplayServer], name: str) -> None:
    """Finding 4: GLM-4.5 starts with `\\n<think>`."""
    r = read(made, name, "\n<think>", "Hmm.", "</think>", "\n\nYes.")
    assert (r.thinking.strip(), r.answer) == ("Hmm.", "Yes.")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tail", ["<", "</thi", "</think"])
def test_a_stream_that_ends_on_the_start_of_a_tag_keeps_it(
    made: list[ReplayServer], name: str, tail: str
) -> None:
    """Finding 4: the splitter was never flushed, so a reply ending on `<` lost it."""
    r = read(made, name, "<think>\nA.\n</think>\n\nx ", tail)
    assert r.answer == "x " + tail
    r = read(made, name, "1 ", tail)  # no tags at all: held, then the answer
    assert r.answer == "1 " + tail


@pytest.mark.parametrize("name", NAMES)
def test_held_text_is_never_shown_as_answer_first(made: list[ReplayServer], name: str) -> None:
    """The live view: text with no opener is held (and said so) until a `</think>` or the end;
    no answer Delta comes before the decision, and the decision comes before its Deltas."""
    [_], [events] = reply(made, name, content("Let me", " think.", "\n</think>\n\n", "Four."))
    kinds = [type(e).__name__ for e in events if isinstance(e, Held | HeldDecided | Delta)]
    first_answer = next(
        i for i, e in enumerate(events) if isinstance(e, Delta) and e.kind == "answer"
    )
    decided = next(i for i, e in enumerate(events) if isinstance(e, HeldDecided))
    assert kinds[:2] == ["Held", "Held"] and decided < first_answer
    held = [e for e in events if isinstance(e, HeldDecided)]
    assert held == [HeldDecided(thinking=True)]


@pytest.mark.parametrize("name", NAMES)
def test_a_reply_cut_while_held_is_the_answer_and_says_so(
    made: list[ReplayServer], name: str
) -> None:
    """Held text of a reply that ended by itself is the answer. One cut at the token limit
    before any tag cannot show what it was: the answer too, whatever the name, marked
    `undecided` (ask and the app say so)."""
    r = read(made, name, "some words", finish="stop")
    assert (r.thinking, r.answer, r.stats.undecided) == ("", "some words", False)
    r = read(made, name, "some words", finish="length")
    assert (r.thinking, r.answer, r.stats.undecided) == ("", "some words", True)


@pytest.mark.parametrize("name", NAMES)
def test_a_server_whose_template_writes_think_reads_a_cut_reply_as_thinking(
    made: list[ReplayServer], name: str
) -> None:
    """llama-server shows its template: one that writes `<think>` opens the thinking in the
    prompt, so a reply cut before `</think>` was thinking. The server says it, not the name."""
    props = {
        "default_generation_settings": {"n_ctx": 4096},
        "chat_template": "{{'<｜Assistant｜><think>\\n'}}",
    }
    [r], _ = reply(made, name, content("some words", finish="length"), props=props)
    assert (r.thinking.strip(), r.answer, r.stats.undecided) == ("some words", "", False)


@pytest.mark.parametrize("name", NAMES)
def test_reasoning_fields_are_thinking_and_then_content_is_the_answer(
    made: list[ReplayServer], name: str
) -> None:
    """Once a server has sent `reasoning_content`, it parses the tags: a later reply with
    content only (its empty thinking dropped) is the answer at once, never held."""
    fields = [
        chunk({"reasoning_content": "Think."}),
        chunk({"content": "Four."}),
        chunk({}, "stop"),
    ]
    results, events = reply(made, name, fields, content("Hello!"))
    assert [(r.thinking, r.answer) for r in results] == [("Think.", "Four."), ("", "Hello!")]
    assert not [e for e in events[1] if isinstance(e, Held)]


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_thinking_closed_at_once(made: list[ReplayServer], name: str) -> None:
    r = read(made, name, "\n</think>\n\n", "Hello!")
    assert (r.thinking, r.answer) == ("", "Hello!")
