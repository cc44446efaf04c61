"""The errors users see: `UserError`, the one exception family of every package, and the storage layer's own.

Every package may raise a `UserError` subclass for a problem the user can fix (bad input, missing file,
refused request). The CLI prints its message on one line and exits non-zero without a traceback; the bots
and the web page show the message. This module imports nothing, so every layer (inference and storage
included) can depend on it without depending on anything else.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem caused by input or configuration, with a message fit to show a person."""

    exit_code = 2

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # a short machine-readable code, e.g. "not_image"

    def __str__(self) -> str:
        return self.message


class StorageError(UserError):
    """Base class of the storage layer's user-facing errors."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or its schema is not at the expected revision."""


class CorrectionRefused(StorageError):
    """A correction was not stored; `.reason` says why (e.g. "too_short", "mention", "same_as_caption")."""


class CorrectionNotFound(StorageError):
    """No correction with that id (or not one the user may change)."""


class VersionNotFound(StorageError):
    """No model version with that id in the registry."""


class VersionExists(StorageError):
    """A model version with that id is already registered."""


class NothingToRollBack(StorageError):
    """The registry has no earlier active version to return to."""


class BlobNotFound(StorageError):
    """The blob store holds no bytes for that SHA-256."""


class InvalidArgument(StorageError):
    """An argument is outside what the storage layer accepts (unknown platform, bad SHA-256, ...)."""
