"""The manifest asks for exactly the scopes the code's Web API calls need, and routes everything to our URL."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import bots.slack
from bots.slack.http import EVENTS_PATH

SLACK_DIR = Path(bots.slack.__file__).parent
MANIFEST = yaml.safe_load((SLACK_DIR / "manifest.yaml").read_text())
CONVERSATION_KINDS = ("channels", "groups", "im", "mpim")

# Scopes each Web API method needs (api.slack.com/methods); a call missing here fails the test below.
METHOD_SCOPES = {
    "chat_postMessage": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "views_open": set(),
    "files_info": {"files:read"},
    "files_upload_v2": {"files:write"},  # the review digest's images, /caption mydata's archive
    "conversations_open": {"im:write"},  # /caption mydata: the user's direct messages with the bot
    "users_info": {"users:read"},
    "conversations_info": {f"{kind}:read" for kind in CONVERSATION_KINDS},
    "conversations_history": {f"{kind}:history" for kind in CONVERSATION_KINDS},
}
OTHER_SCOPES = {
    "commands",  # the /caption slash command
    "files:read",  # downloading url_private_download with the bot token
    *(f"{kind}:history" for kind in CONVERSATION_KINDS),  # the message.* events
}


def web_api_calls() -> set[str]:
    source = "\n".join(p.read_text() for p in SLACK_DIR.rglob("*.py"))
    return set(re.findall(r"client\.([a-z]+_[A-Za-z0-9_]+)\(", source))


def test_every_web_api_call_is_known():
    calls = web_api_calls()
    assert calls and calls <= set(METHOD_SCOPES), calls - set(METHOD_SCOPES)


def test_scopes_are_exactly_those_used():
    needed = set().union(*(METHOD_SCOPES[m] for m in web_api_calls())) | OTHER_SCOPES
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == needed


def test_events_match_the_message_listener_and_the_install_flow():
    assert set(MANIFEST["settings"]["event_subscriptions"]["bot_events"]) == {
        *(f"message.{k}" for k in CONVERSATION_KINDS), "app_uninstalled", "tokens_revoked"}


def test_the_install_flow_asks_for_the_manifests_scopes_and_comes_back_to_its_redirect_url():
    from bots.slack.install import REDIRECT_PATH, manifest_bot_scopes

    assert manifest_bot_scopes() == tuple(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert [url.endswith(REDIRECT_PATH) for url in MANIFEST["oauth_config"]["redirect_urls"]] == [True]


def test_all_requests_go_to_the_events_route():
    settings = MANIFEST["settings"]
    urls = [settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"],
            *(c["url"] for c in MANIFEST["features"]["slash_commands"])]
    assert all(url.endswith(EVENTS_PATH) for url in urls)
    assert [c["command"] for c in MANIFEST["features"]["slash_commands"]] == ["/caption"]
