from pathlib import Path

import pytest

from capbot.settings import get_settings


def test_defaults_derive_paths_from_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = get_settings(data_dir=tmp_path / "d")
    assert settings.database_url == f"sqlite:///{(tmp_path / 'd' / 'capbot.db').as_posix()}"
    assert settings.blob_dir == tmp_path / "d" / "blobs"


def test_environment_prefix_and_postgres_url_normalised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPBOT_DATABASE_URL", "postgres://u@h:5432/db")
    monkeypatch.setenv("CAPBOT_NUM_BEAMS", "4")
    settings = get_settings()
    assert settings.database_url == "postgresql+psycopg://u@h:5432/db"
    assert settings.num_beams == 4


def test_secrets_do_not_print(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = get_settings(slack_bot_token="xoxb-123-secret")
    assert "xoxb-123-secret" not in repr(settings)
    assert settings.slack_bot_token.get_secret_value() == "xoxb-123-secret"


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path(".env").write_text("CAPBOT_MAX_NEW_TOKENS=7\n")
    assert get_settings().max_new_tokens == 7


@pytest.mark.parametrize("name, value", [
    ("CAPBOT_SLACK_API_URL", "slack.example/api/"),
    ("CAPBOT_DISCORD_API_URL", "ftp://discord.example/api"),
    ("CAPBOT_DISCORD_GATEWAY_URL", "https://gateway.example/"),
])
def test_platform_urls_must_be_absolute_urls_of_the_right_scheme(monkeypatch, capsys, name, value):
    from capbot.cli import main

    monkeypatch.setenv(name, value)
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: invalid settings: {name}:") and "absolute" in err and "\n" not in err


@pytest.mark.parametrize("value, says", [
    ("foo://x", "unsupported database 'foo'"),
    ("mysql://user:hunter2@db.example/capbot", "unsupported database 'mysql'"),
    ("not a url", "is not a database URL"),
])
def test_database_url_must_be_sqlite_or_postgres(monkeypatch, capsys, value, says):
    from capbot.cli import main

    monkeypatch.setenv("CAPBOT_DATABASE_URL", value)
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid settings: CAPBOT_DATABASE_URL:") and says in err and "\n" not in err
    assert "hunter2" not in err


@pytest.mark.parametrize("value, views", [(None, None), ("auto", None), ("", None), ("AUTO", None), ("0", 0), ("4", 4)])
def test_confidence_views_default_to_the_device_and_take_a_number(monkeypatch, value, views):
    from capbot.captioning import captioner_spec
    from capbot.settings import get_settings

    if value is not None:
        monkeypatch.setenv("CAPBOT_CONFIDENCE_VIEWS", value)
    settings = get_settings()
    assert settings.confidence_views == views
    assert captioner_spec(settings).options.confidence_views == views


@pytest.mark.parametrize("value", ["5", "-1", "many"])
def test_confidence_views_out_of_range_are_refused_at_start_up(monkeypatch, capsys, value):
    from capbot.cli import main

    monkeypatch.setenv("CAPBOT_CONFIDENCE_VIEWS", value)
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid settings: CAPBOT_CONFIDENCE_VIEWS:") and "\n" not in err
