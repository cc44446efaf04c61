"""What every Slack listener needs, passed to each `register(app, deps)` instead of globals."""

from __future__ import annotations

from dataclasses import dataclass

from bots.core import BotCore
from bots.fetch import AddressPolicy


@dataclass(frozen=True)
class SlackDeps:
    core: BotCore
    bot_token: str  # sent only to Slack's file download URLs; never logged
    max_image_bytes: int = 20 * 1024 * 1024
    fetch_timeout_s: float = 10.0
    # Slack's file URLs point at public Slack hosts, so the default policy holds in production; tests pass
    # AddressPolicy(allow_private=True) to reach the local fake.
    address_policy: AddressPolicy = AddressPolicy()
