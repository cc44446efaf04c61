"""Socket Mode: the same bolt app over a websocket opened by capbot (no public URL needed).

Used when an app-level token (xapp-...) is configured; needs the network, so tests only construct it.
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

from capbot.errors import UserError

log = logging.getLogger(__name__)


class SocketModeRunner:
    """Starts and stops a Socket Mode connection for `app` without blocking the caller."""

    def __init__(self, app: App, app_token: str) -> None:
        if not app_token.startswith("xapp-"):
            raise UserError("The Slack app-level token must start with xapp- (Basic Information > App-Level Tokens).",
                            reason="bad_app_token")
        self.handler = SocketModeHandler(app, app_token)

    def start(self) -> None:
        """Open the websocket in the background (returns at once)."""
        self.handler.connect()
        log.info("slack socket mode connected")

    def stop(self) -> None:
        """Close the websocket."""
        self.handler.close()
        log.info("slack socket mode closed")
