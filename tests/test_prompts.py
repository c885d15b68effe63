"""Prompt building with the real R1 chat template (read from the real GGUF header)."""

from __future__ import annotations

import pytest
import tiny_models

from r1chat.errors import R1ChatError
from r1chat.prompts import (
    ChatMessage,
    answer_only,
    apply_preset,
    history_messages,
    render_prompt,
    template_wants_think,
    with_context,
)


@pytest.fixture(scope="module")
def r1_template() -> str:
    from r1chat.gguf_header import read_header

    header = read_header(tiny_models.header_part(), check_size=False)
    assert header.chat_template
    return header.chat_template


BOS = "<｜begin▁of▁sentence｜>"


def test_r1_prompt_ends_with_forced_think(r1_template: str) -> None:
    text = render_prompt([ChatMessage("user", "hi")], r1_template, bos_token=BOS)
    assert text == f"{BOS}<｜User｜>hi<｜Assistant｜><think>\n"
    assert template_wants_think(r1_template)


def test_earlier_turns_go_back_without_thinking(r1_template: str) -> None:
    msgs = history_messages([("q1", "<think>\nsecret reasoning\n</think>\n\nA1")])
    text = render_prompt([*msgs, ChatMessage("user", "q2")], r1_template, bos_token=BOS)
    assert "secret reasoning" not in text
    assert "A1" in text and text.count(BOS) == 1
    assert text.endswith("<｜User｜>q2<｜Assistant｜><think>\n")


def test_cancelled_mid_thinking_reply_sends_nothing_of_it() -> None:
    assert answer_only("<think>\nhalf a thought") == ""
    assert answer_only("plain answer") == "plain answer"


def test_non_reasoning_template_is_not_forced() -> None:
    tpl = "{% for m in messages %}<|{{m.role}}|>{{m.content}}{% endfor %}<|assistant|>"
    text = render_prompt([ChatMessage("user", "x")], tpl)
    assert text == "<|user|>x<|assistant|>"
    assert not template_wants_think(tpl)


def test_template_is_sandboxed() -> None:
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(Exception) as exc:
        render_prompt([ChatMessage("user", "x")], evil)
    assert "subclasses" not in str(exc.value) or isinstance(exc.value, R1ChatError)


def test_math_preset_asks_for_boxed_answer() -> None:
    q = apply_preset("What is 2+2?", "math")
    assert q.startswith("What is 2+2?")
    assert "Please reason step by step, and put your final answer within \\boxed{}." in q


def test_unknown_preset_is_a_user_error() -> None:
    with pytest.raises(R1ChatError, match="unknown preset"):
        apply_preset("q", "poetry")


def test_context_is_fenced_even_if_it_contains_fences() -> None:
    out = with_context("review this", "a\n```\nb\n")
    assert out.startswith("review this\n\n````\n")
    assert out.endswith("\n````")
