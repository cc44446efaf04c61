"""Errors the storage layer raises for problems a user (or the bot on a user's behalf) can fix."""

from __future__ import annotations

from capbot.errors import UserError


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
