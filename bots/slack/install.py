"""Many workspaces: Slack's OAuth v2 install flow through slack-bolt, with slack_sdk's SQLAlchemy installation
and state stores in capbot's own database (their tables come from capbot's migrations, storage/models.py).

A workspace admin opens `GET /slack/install` (bolt's page with an "Add to Slack" link carrying a one-time
`state`, also set as a cookie), approves the bot scopes the manifest lists on Slack's consent screen, and Slack
sends the browser to `GET /slack/oauth_redirect?code=...&state=...` at CAPBOT_PUBLIC_URL. bolt checks the
state (the cookie must match, and the state store gives each state out once, for 10 minutes), exchanges the
code for the workspace's bot token (`oauth.v2.access`) and saves the installation. Each request from Slack is
then answered with the bot token of the team it came from; `app_uninstalled` and `tokens_revoked` delete it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import Engine

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_EXPIRATION_S = 600
MANIFEST = Path(__file__).with_name("manifest.yaml")


@lru_cache(maxsize=1)
def manifest_bot_scopes() -> tuple[str, ...]:
    """The bot scopes bots/slack/manifest.yaml asks for: the install flow asks for exactly these."""
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return tuple(manifest["oauth_config"]["scopes"]["bot"])


@dataclass(frozen=True)
class InstallFlow:
    """What the install flow needs: the app's credentials, the database, and where Slack sends installers."""

    client_id: str
    client_secret: str = field(repr=False)  # never printed
    engine: Engine = field(repr=False)
    public_url: str  # CAPBOT_PUBLIC_URL: the redirect URI is this + REDIRECT_PATH
    scopes: tuple[str, ...] = field(default_factory=manifest_bot_scopes)

    @property
    def redirect_uri(self) -> str:
        """Where Slack sends the installer's browser back (must be listed in the app's Redirect URLs)."""
        return self.public_url.rstrip("/") + REDIRECT_PATH


def oauth_settings(flow: InstallFlow) -> OAuthSettings:
    """bolt's OAuth settings over capbot's database, on bolt's default paths."""
    return OAuthSettings(
        client_id=flow.client_id,
        client_secret=flow.client_secret,
        scopes=list(flow.scopes),
        redirect_uri=flow.redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store=SQLAlchemyInstallationStore(client_id=flow.client_id, engine=flow.engine),
        state_store=SQLAlchemyOAuthStateStore(expiration_seconds=STATE_EXPIRATION_S, engine=flow.engine),
        state_expiration_seconds=STATE_EXPIRATION_S,
    )
