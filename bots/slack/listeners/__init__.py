"""Slack listeners split by kind; each module exposes `register(app, deps)`."""

from __future__ import annotations

from slack_bolt import App

from bots.slack.deps import SlackDeps
from bots.slack.listeners import actions, commands, events, views


def register_all(app: App, deps: SlackDeps) -> None:
    """Attach every capbot listener to `app`."""
    for module in (events, commands, actions, views):
        module.register(app, deps)
