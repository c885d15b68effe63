"""How a reply ended, in the words every front end uses (the TUI, `ask`, `history`, exports)."""

from __future__ import annotations

from typing import Final

STOPPED = "cancelled"  # the finish_reason of a reply the user stopped
# The finish_reason of a sample r1chat stopped because the finished ones had settled the vote
# (r1chat.many): its text is kept, but it does not vote and it is not the user's stop.
STOPPED_EARLY: Final = "stopped early"
# `ask`'s exit status when the reply has no answer (cut while thinking, stopped, empty): a script
# tells it from an answer that happens to be short. 1 and 2 are errors, 128 + N signals.
NO_ANSWER = 3


# How r1chat ended a thinking, for the pane's title and the notes ("model" needs no words).
THINKING_ENDED = {
    "budget": "budget reached",
    "loop": "loop cut",
    "user": "answered on request",
}


def thinking_note(ended: str | None) -> str | None:
    """ "budget reached", "loop cut", "answered on request"; None when the model ended it."""
    return THINKING_ENDED.get(ended or "")


def finish_note(
    finish_reason: str | None, tokens: int | None = None, thinking_ended: str | None = None
) -> str | None:
    """The one line shown under a reply that did not end by itself, or None."""
    if finish_reason == STOPPED and thinking_ended == "loop":
        return 'Stopped: the thinking went round in circles (on_loop = "stop").'
    if finish_reason == STOPPED:
        return "Stopped: what came is kept."
    if finish_reason == STOPPED_EARLY:
        return "Stopped early: the samples that had finished settled the vote; what came is kept."
    if finish_reason == "length":
        after = f" after {tokens:,} tokens" if tokens else ""
        return f"Cut at the token limit{after} (raise max_tokens, or --max-tokens)."
    return None


def no_answer(
    answer: str, finish_reason: str | None, thinking_ended: str | None = None, limit: int = 0
) -> str | None:
    """Why a reply has no answer, in one line; None when it has one."""
    if answer.strip():
        return None
    if finish_reason == "length":
        at = f" ({limit:,} tokens)" if limit else ""
        return (
            f"no answer: the token limit{at} came while the model was still thinking"
            " (raise --max-tokens, or set --think-budget)"
        )
    if finish_reason == STOPPED and thinking_ended == "loop":
        return 'no answer: the thinking went round in circles and was stopped (on_loop = "stop")'
    if finish_reason == STOPPED:
        return "no answer: stopped before the answer began"
    if finish_reason == STOPPED_EARLY:
        return "no answer: stopped early, once the other samples had settled the vote"
    return "no answer: the model ended its reply without one"


UNDECIDED_NOTE = (
    "the reply was cut before a </think> showed whether its text was thinking:"
    " it is shown as the answer"
)
