"""Build the slack-bolt `App` for capbot: a Web API client on a configurable base URL, every listener attached."""

from __future__ import annotations

import secrets

from slack_bolt import App
from slack_sdk import WebClient

from bots.core import BotCore
from bots.fetch import AddressPolicy
from bots.slack.deps import SlackDeps
from bots.slack.install import InstallFlow, oauth_settings
from bots.slack.listeners import register_all

SLACK_API_URL = "https://slack.com/api/"


def create_app(
    core: BotCore,
    *,
    bot_token: str | None = None,
    install: InstallFlow | None = None,
    signing_secret: str | None,
    api_url: str = SLACK_API_URL,
    max_image_bytes: int = 20 * 1024 * 1024,
    fetch_timeout_s: float = 10.0,
    address_policy: AddressPolicy = AddressPolicy(),
) -> App:
    """A bolt app answering events, `/caption`, the suggest button and the correction modal.

    `process_before_response=True` makes every HTTP response wait for its listener; listeners only
    acknowledge and enqueue, so the response still comes within Slack's 3 s whatever the captioner's speed.
    `token_verification_enabled=False` keeps construction offline; `auth.test` runs on the first request.
    `signing_secret=None` is for Socket Mode only: HTTP requests are then checked against a random secret,
    so every one of them is refused (401) instead of being trusted unsigned.
    File downloads may reach `api_url`'s own origin whatever its address (a proxy or local stand-in serves
    the files there); every other host they touch is held to `address_policy`.

    One workspace: `bot_token`. Many: `install` (bots.slack.install), and each request is answered with the
    bot token its workspace installed capbot with; uninstalling or revoking deletes that workspace's tokens.
    """
    if (bot_token is None) == (install is None):
        raise ValueError("give a bot token (one workspace) or an install flow (many), not both or neither")
    client = WebClient(token=bot_token, base_url=api_url)
    if install is None:
        app = App(client=client, signing_secret=signing_secret or secrets.token_hex(32),
                  token_verification_enabled=False, process_before_response=True)
    else:
        app = App(client=client, signing_secret=signing_secret or secrets.token_hex(32),
                  oauth_settings=oauth_settings(install), process_before_response=True)
        app.enable_token_revocation_listeners()
    deps = SlackDeps(
        core=core, max_image_bytes=max_image_bytes, fetch_timeout_s=fetch_timeout_s,
        address_policy=address_policy.trusting(api_url),
    )
    register_all(app, deps)
    return app
