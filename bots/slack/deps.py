"""What every Slack listener needs, passed to each `register(app, deps)` instead of globals.

The bot token is not here: each request's `client` carries the token of the workspace it came from (the one
token in single-workspace mode, the installation's with the install flow), and listeners use that."""

from __future__ import annotations

from dataclasses import dataclass

from bots.core import BotCore
from bots.fetch import AddressPolicy


@dataclass(frozen=True)
class SlackDeps:
    core: BotCore
    max_image_bytes: int = 20 * 1024 * 1024
    fetch_timeout_s: float = 10.0
    # For file downloads. Slack's file URLs point at public Slack hosts; `create_app` adds the configured API
    # origin (a proxy or local stand-in may serve the files from a private address), and nothing else.
    address_policy: AddressPolicy = AddressPolicy()
