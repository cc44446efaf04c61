"""The README and docs stay true: every setting is documented, every CLI command they name exists, every
link between them leads somewhere, and the README stays short enough for a newcomer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from capbot.cli.root import app
from capbot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_setting_is_in_the_configuration_table():
    missing = [n for n in Settings.model_fields if f"| `CAPBOT_{n.upper()}` |" not in CONFIGURATION]
    assert not missing, f"docs/configuration.md lacks settings: {missing}"


@pytest.mark.parametrize("text", [README, CLI_DOC], ids=["README.md", "docs/cli.md"])
def test_commands_named_exist(text):
    import typer.main

    import capbot.cli  # noqa: F401  (registers every command)

    group = typer.main.get_command(app)
    named = set(re.findall(r"`capbot ([a-z][a-z-]*)", text))
    assert named, "no commands named"
    assert named <= set(group.commands), named - set(group.commands)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_between_the_docs_resolve(doc):
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text())
    broken = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))
              and not (doc.parent / t).exists()]
    assert not broken, broken


def test_the_readme_is_for_a_newcomer():
    # The two commands, the offline try, the deployments and links: the reference lives in docs/.
    assert len(README.splitlines()) <= 120
    assert "## The two commands" in README and "## Try it offline" in README and "## Deployments" in README
    assert "| `CAPBOT_" not in README and "AUROC" not in README


def test_the_discord_invite_link_grants_what_the_bot_uses():
    import discord

    link = re.search(r"https://discord.com/oauth2/authorize\?\S*permissions=(\d+)", (ROOT / "docs" / "discord.md").read_text())
    granted = discord.Permissions(int(link.group(1)))
    # Replies, threads, and the review digest's image attachments (bots/discord/digest.py).
    assert granted.view_channel and granted.send_messages and granted.read_message_history
    assert granted.send_messages_in_threads and granted.attach_files
    assert not (granted.administrator or granted.manage_messages or granted.manage_channels)
