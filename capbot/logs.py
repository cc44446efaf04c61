"""Structured logging: key=value text or JSON lines, with secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import re
import sys

# Slack (xoxb-, xapp-, xoxp-) and Discord bot tokens, and bearer headers, must never reach a log line.
_SECRET_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
    re.compile(r"[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,}"),
    re.compile(r"(?i)(bearer|bot)\s+[A-Za-z0-9._-]{20,}"),
]
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def scrub(text: str) -> str:
    """Replace anything that looks like a token with a marker."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        payload = {"level": record.levelname.lower(), "logger": record.name, "event": record.getMessage()}
        payload.update(_fields(record))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            return scrub(json.dumps(payload, default=str))
        head = f"{self.formatTime(record, '%H:%M:%S')} {payload.pop('level'):<7} {payload.pop('logger')}: {payload.pop('event')}"
        tail = " ".join(f"{k}={v}" for k, v in payload.items())
        return scrub(f"{head} {tail}".rstrip())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (test runners and tools swap it and close the old one)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Send capbot's logs to stderr in one structured format; call once from an entry point."""
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "PIL", "asyncio", "discord.gateway", "alembic", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
