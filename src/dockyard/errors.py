"""One error type the CLI knows how to show: a cause and the fix, on one line each."""

from __future__ import annotations


class DockyardError(Exception):
    """A failure the user can act on. ``fix`` says what to do about it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message} (fix: {self.fix})"
