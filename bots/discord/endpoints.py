"""Where discord.py talks to: the REST base URL and the gateway URL (a proxy or local stand-in in tests)."""

from __future__ import annotations

import discord
import yarl

DEFAULT_API_URL = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"


def apply_endpoints(api_url: str = DEFAULT_API_URL, gateway_url: str = DEFAULT_GATEWAY_URL) -> None:
    """Point discord.py's REST routes (including interaction callbacks and webhooks) and gateway at these URLs.

    discord.py keeps both as class attributes, so this affects every client in the process; call it
    before `login()`. A plain (unsharded) client connects to `DEFAULT_GATEWAY` without asking REST for it.
    """
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
