"""The one exception family users see.

Every package may raise a `UserError` subclass for a problem the user can fix (bad input, missing file,
refused request). The CLI prints its message on one line and exits non-zero without a traceback; the bots
and the web page show the message. This module imports nothing so every layer can depend on it.
"""


class UserError(Exception):
    """A problem caused by input or configuration, with a message fit to show a person."""

    exit_code = 2

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # a short machine-readable code, e.g. "not_image"

    def __str__(self) -> str:
        return self.message
