"""`capbot ... --help` as a newcomer reads it: no Python type names, running sentences, one way of writing
defaults, and the commands in the order they are needed. Every command is checked, so new ones are too."""

from __future__ import annotations

import re

import pytest

from capbot.cli import command, main

TYPE_NAMES = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\]|int range|float range)>|\{[a-z_]+\}")


def _paths(group, prefix=()):
    yield prefix
    for name, sub in getattr(group, "commands", {}).items():
        yield from _paths(sub, (*prefix, name))


COMMAND_PATHS = list(_paths(command()))


def _help(capsys, monkeypatch, *words: str, columns: int = 120) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main([*words, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("words", COMMAND_PATHS, ids=lambda w: " ".join(w) or "capbot")
def test_help_names_values_not_python_types(words, capsys, monkeypatch):
    shown = _help(capsys, monkeypatch, *words)
    assert not TYPE_NAMES.search(shown), TYPE_NAMES.search(shown).group(0)


def _options(words):
    found = command()
    for word in words:
        found = found.commands[word]
    return found, [p for p in found.params if p.help]


@pytest.mark.parametrize("words", COMMAND_PATHS, ids=lambda w: " ".join(w) or "capbot")
def test_defaults_are_written_one_way_at_the_end(words):
    found, params = _options(words)
    for param in params:
        mentions = re.findall(r"default", param.help, re.IGNORECASE)
        stated = re.search(r"\(default: [^()]+(\([^()]*\)[^()]*)*\)$", param.help)
        assert len(mentions) <= 1 + param.help.count("torch's default"), (words, param.name, param.help)
        if "default:" in param.help:
            assert stated, (words, param.name, param.help)
        assert param.show_default is False  # typer's own "[default: x]" would be a second way
    # Help paragraphs are running text: the terminal wraps them, not the docstring's line breaks.
    for paragraph in (found.help or "").split("\n\n"):
        assert "\n" not in paragraph, (words, paragraph)


def test_a_value_default_is_stated_like_a_setting(capsys, monkeypatch):
    shown = " ".join(_help(capsys, monkeypatch, "data", "synthetic", columns=200).split())
    assert "Images in the train split. (default: 5000)" in shown
    assert "[default:" not in shown
    shown = " ".join(_help(capsys, monkeypatch, "train", columns=200).split())
    assert "(default: CAPBOT_MODEL)" in shown and "(default: --register)" in shown and "(default: 1000)" in shown


def test_a_docstring_is_not_broken_mid_sentence(capsys, monkeypatch):
    shown = _help(capsys, monkeypatch, "run", columns=500)  # wide enough for the paragraph on one line
    assert "Without any bot token it still serves the web page and says which bots are off and why." in shown


def test_models_init_is_listed_first(capsys, monkeypatch):
    shown = _help(capsys, monkeypatch, "models")
    listed = re.findall(r"│ (\w+) ", shown.split("Commands")[1])
    assert listed[0] == "init", listed
    assert {"list", "promote", "rollback"} <= set(listed)


def test_run_help_names_its_model_and_data_directory(capsys, monkeypatch):
    shown = " ".join(_help(capsys, monkeypatch, "run", columns=200).split())
    assert "--model" in shown and "CAPBOT_MODEL" in shown
    assert "--data-dir" in shown and "CAPBOT_DATA_DIR" in shown


def test_caption_usage_names_its_argument(capsys, monkeypatch):
    shown = _help(capsys, monkeypatch, "caption")
    assert "Usage: capbot caption [OPTIONS] IMAGE..." in shown
