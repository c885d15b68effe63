"""How a reply ended, in the words every front end uses (the TUI, `ask`, `history`, exports)."""

from __future__ import annotations

STOPPED = "cancelled"  # the finish_reason of a reply the user stopped


def finish_note(finish_reason: str | None, tokens: int | None = None) -> str | None:
    """The one line shown under a reply that did not end by itself, or None."""
    if finish_reason == STOPPED:
        return "Stopped: what came is kept."
    if finish_reason == "length":
        after = f" after {tokens:,} tokens" if tokens else ""
        return f"Cut at the token limit{after} (raise max_tokens, or --max-tokens)."
    return None
