"""Socket Mode: the same bolt app over a websocket opened by capbot (no public URL needed).

Used when an app-level token (xapp-...) is configured. Tested against local stand-ins of the Web API and
the websocket (tests/fakes/slack_socket.py).
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from storage.errors import UserError

log = logging.getLogger(__name__)


class SocketModeRunner:
    """Starts and stops a Socket Mode connection for `app` without blocking the caller."""

    def __init__(self, app: App, app_token: str) -> None:
        if not app_token.startswith("xapp-"):
            raise UserError("The Slack app-level token must start with xapp- (Basic Information > App-Level Tokens).",
                            reason="bad_app_token")
        self.handler = SocketModeHandler(app, app_token)

    def start(self) -> None:
        """Open the websocket (the connection then lives in the background); a refusal is a `UserError`."""
        try:
            self.handler.connect()
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error") if exc.response is not None else "unknown_error"
            raise UserError(
                f"Slack refused to open a Socket Mode connection ({error}): check CAPBOT_SLACK_APP_TOKEN, an "
                "app-level token with the connections:write scope, and that Socket Mode is on for the app",
                reason="slack_refused") from exc
        except OSError as exc:
            raise UserError(f"cannot reach Slack to open a Socket Mode connection: {exc}",
                            reason="slack_unreachable") from exc
        log.info("slack socket mode connected")

    def stop(self) -> None:
        """Close the websocket."""
        self.handler.close()
        log.info("slack socket mode closed")
