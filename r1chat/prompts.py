"""Build what goes to the model: presets, earlier turns without their thinking, the chat template.

Pure functions of text: the engine tokenizes what `render_prompt` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from r1chat.errors import R1ChatError
from r1chat.reasoning import split_reasoning

Role = Literal["user", "assistant", "system"]

THINK_PREFIX = "<think>\n"
EMPTY_THINKING = "\n</think>\n\n"  # after THINK_PREFIX: a thinking block opened and closed

# The model card's recommended wording; instructions go in the user turn (no system prompt).
PRESETS: dict[str, str] = {
    "math": (
        "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    ),
    "code": (
        "{question}\n\nThink through the problem first, then give complete, working code in a"
        " fenced code block, followed by a short explanation."
    ),
    "logic": (
        "{question}\n\nReason carefully step by step, checking each assumption, and state your"
        " final conclusion clearly at the end."
    ),
}

# What a chat template may add around the messages when the caller gives no bound (the engine
# gives a few times what its context holds).
DEFAULT_TEMPLATE_ROOM = 1 << 20

# Used only when a GGUF carries no chat template (ChatML, the most common convention).
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


def apply_preset(question: str, preset: str | None) -> str:
    if not preset:
        return question
    try:
        template = PRESETS[preset]
    except KeyError:
        names = ", ".join(PRESETS)
        raise R1ChatError(f"unknown preset {preset!r} (choose from {names})", 2) from None
    return template.format(question=question)


def with_context(question: str, context: str | None) -> str:
    """Attach piped input (a diff, a log) to the question, fenced so the model sees its extent."""
    if not context or not context.strip():
        return question
    body = context.rstrip("\n")
    fence = "```"
    while fence in body:
        fence += "`"
    return f"{question}\n\n{fence}\n{body}\n{fence}"


def answer_only(reply: str) -> str:
    """An assistant reply as it goes back to the model: without its thinking.

    A reply stopped mid-thinking has no answer at all, so nothing of it is resent.
    """
    if "<think>" not in reply and "</think>" not in reply:
        return reply
    _, answer = split_reasoning(reply, in_think=False)
    return answer if "</think>" in reply else ""


def history_messages(turns: list[tuple[str, str]]) -> list[ChatMessage]:
    """(question, answer) pairs of earlier turns, as messages the model should see."""
    out: list[ChatMessage] = []
    for question, answer in turns:
        out.append(ChatMessage("user", question))
        out.append(ChatMessage("assistant", answer_only(answer)))
    return out


def template_wants_think(template: str | None) -> bool:
    """Reasoning templates (R1 and its distills) strip `</think>` from earlier turns."""
    return bool(template) and "</think>" in template  # type: ignore[operator]


def render_prompt(
    messages: list[ChatMessage],
    template: str | None,
    *,
    bos_token: str = "",
    eos_token: str = "",
    force_think: bool | None = None,
    max_chars: int | None = None,
    no_thinking: bool = False,
) -> str:
    """The prompt text for `messages` from the GGUF's own chat template, rendered sandboxed and
    bounded (r1chat.template_sandbox): at most `max_chars` characters beyond the messages' own.

    For reasoning models the prompt ends with `<think>\\n` so the reply always starts thinking;
    `no_thinking` ends it with an empty thinking block, opened and closed, so the reply is the
    answer alone (a thinking budget of 0).
    """
    from r1chat.template_sandbox import render_template

    own = sum(len(m.content) for m in messages)
    limit = own + (max_chars if max_chars is not None else DEFAULT_TEMPLATE_ROOM)
    try:
        text = render_template(
            template or FALLBACK_TEMPLATE,
            limit,
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except RecursionError:
        raise R1ChatError("the model's chat template failed: it recurses too deeply") from None
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise R1ChatError(f"the model's chat template failed: {first}") from None
    if force_think is None:
        force_think = template_wants_think(template)
    if force_think and not text.endswith(THINK_PREFIX):
        text = text[: -len("<think>")] if text.endswith("<think>") else text
        text += THINK_PREFIX
    if force_think and no_thinking:
        text += EMPTY_THINKING
    return text
