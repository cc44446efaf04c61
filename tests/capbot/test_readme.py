"""The README stays true: every setting is documented, every CLI command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from capbot.cli.root import app
from capbot.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    missing = [n for n in Settings.model_fields if f"`CAPBOT_{n.upper()}`" not in README]
    assert not missing, f"README lacks settings: {missing}"


def test_commands_named_in_the_readme_exist():
    import typer.main

    import capbot.cli  # noqa: F401  (registers every command)

    group = typer.main.get_command(app)
    named = set(re.findall(r"`capbot ([a-z][a-z-]*)", README))
    assert named, "the README names no commands"
    assert named <= set(group.commands), named - set(group.commands)
