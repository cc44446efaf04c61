"""The capbot web server: the demo page, the /v1 JSON API (and the old /api routes), probes and metrics.

The page and the API go through the same `BotCore` as the chat bots (platform "web"), so captions and
corrections made here are stored, rate-limited and exported for training exactly like Slack or Discord ones.
"""

from capbot.web.app import create_web_app
from capbot.web.context import WebConfig

__all__ = ["WebConfig", "create_web_app"]
