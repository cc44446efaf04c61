"""CLI commands (registered on import by capbot.cli)."""

from __future__ import annotations

from capbot.cli.root import app  # noqa: F401
