"""Bots: the platform-free core and the Slack and Discord adapters."""
