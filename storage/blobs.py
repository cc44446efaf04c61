"""Image bytes, content-addressed by SHA-256, outside the database.

`LocalBlobStore` keeps them in a directory (a mounted Modal Volume works the same): writes go to a
temporary file in the target directory and are renamed into place, so a reader never sees half a file
and a crash leaves at most a stray temp file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from storage.errors import BlobNotFound, InvalidArgument

_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_of(data: bytes) -> str:
    """The lowercase hex SHA-256 of `data` (the key a blob store files it under)."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(sha: str) -> str:
    """Return `sha` if it is 64 lowercase hex digits, else raise `InvalidArgument` (never a path)."""
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise InvalidArgument(f"not a SHA-256 hex digest: {sha!r}", reason="bad_sha256")
    return sha


@runtime_checkable
class BlobStore(Protocol):
    """Where image bytes live; keys are SHA-256 hex digests of the content."""

    def put(self, data: bytes) -> str:
        """Store `data` (idempotent) and return its SHA-256."""
        ...

    def get(self, sha: str) -> bytes:
        """The bytes stored under `sha`; raises `BlobNotFound`."""
        ...

    def path(self, sha: str) -> Path:
        """The file path of `sha` (whether or not it exists yet)."""
        ...

    def exists(self, sha: str) -> bool:
        """Whether bytes are stored under `sha`."""
        ...

    def delete(self, sha: str) -> bool:
        """Remove `sha`; True if something was removed."""
        ...


class LocalBlobStore:
    """A directory of blobs fanned out as `root/ab/cd/abcd...` so no directory grows huge."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, sha: str) -> Path:
        """The file path of `sha` (whether or not it exists yet)."""
        check_sha256(sha)
        return self.root / sha[:2] / sha[2:4] / sha

    def put(self, data: bytes) -> str:
        """Store `data` atomically and return its SHA-256; an existing identical blob is left alone."""
        sha = sha256_of(data)
        target = self.path(sha)
        if target.exists():
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)  # atomic on POSIX; concurrent writers of one sha both win
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha: str) -> bytes:
        """The bytes stored under `sha`; raises `BlobNotFound`."""
        try:
            return self.path(sha).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no image stored under {sha}", reason="blob_missing") from None

    def exists(self, sha: str) -> bool:
        """Whether bytes are stored under `sha`."""
        return self.path(sha).is_file()

    def delete(self, sha: str) -> bool:
        """Remove `sha`; True if something was removed."""
        try:
            self.path(sha).unlink()
        except FileNotFoundError:
            return False
        return True
