"""The Discord adapter: parses Discord events and interactions, calls `bots.core.BotCore`, formats replies.

Entry points: `CapBot` (the `commands.Bot` subclass) and `run_discord_bot` (start, run until stopped, close).
"""

from bots.discord.bot import CapBot, build_intents
from bots.discord.endpoints import apply_endpoints
from bots.discord.run import DiscordLoginError, run_discord_bot

__all__ = ["CapBot", "DiscordLoginError", "apply_endpoints", "build_intents", "run_discord_bot"]
