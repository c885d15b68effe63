"""The one exception type for problems a user can cause or fix."""

from __future__ import annotations


class R1ChatError(Exception):
    """A problem with a message meant for the user: printed as one line, exit status `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PromptTooLong(R1ChatError):
    """The prompt is what does not fit in the context: a short question would (exit status 2).
    `eval` skips such a problem and goes on; settings that leave no room for any question stay
    an R1ChatError and end the run."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


class StreamCut(R1ChatError):
    """A server's stream that ended without a reply that ended: `why` is "cancelled" (it ended
    without a finish reason: another request took its place), "cut" (no end of stream) or
    "empty" (no reply at all). Samples that fail so are worth running again."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why
