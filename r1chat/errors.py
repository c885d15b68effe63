"""The one exception type for problems a user can cause or fix."""

from __future__ import annotations


class R1ChatError(Exception):
    """A problem with a message meant for the user: printed as one line, exit status `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
