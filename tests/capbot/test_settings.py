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


@pytest.mark.parametrize("env, says", [
    ({"CAPBOT_SLACK_CLIENT_ID": "1.2"}, "go together"),
    ({"CAPBOT_SLACK_CLIENT_SECRET": "cs-hunter2"}, "go together"),
    ({"CAPBOT_SLACK_CLIENT_ID": "1.2", "CAPBOT_SLACK_CLIENT_SECRET": "cs-hunter2", "CAPBOT_SLACK_BOT_TOKEN": "xoxb-1",
      "CAPBOT_PUBLIC_URL": "https://c.example"}, "choose one"),
    ({"CAPBOT_SLACK_CLIENT_ID": "1.2", "CAPBOT_SLACK_CLIENT_SECRET": "cs-hunter2", "CAPBOT_SLACK_APP_TOKEN": "xapp-1",
      "CAPBOT_PUBLIC_URL": "https://c.example"}, "not Socket Mode"),
    ({"CAPBOT_SLACK_CLIENT_ID": "1.2", "CAPBOT_SLACK_CLIENT_SECRET": "cs-hunter2"}, "CAPBOT_PUBLIC_URL is not"),
    ({"CAPBOT_IMAGE_RETENTION_DAYS": "-1"}, "CAPBOT_IMAGE_RETENTION_DAYS"),
    ({"CAPBOT_RETENTION_SWEEP_CRON": "every hour"}, "retention_sweep_cron"),
    ({"CAPBOT_MODAL_SWEEP_CRON": "* * *"}, "CAPBOT_MODAL_SWEEP_CRON"),
    ({"CAPBOT_DISCORD_SHARDS": "0"}, "CAPBOT_DISCORD_SHARDS"),
])
def test_privacy_and_many_community_settings_are_checked_at_start_up(monkeypatch, capsys, env, says):
    from capbot.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid settings:") and says in err and "\n" not in err
    assert "hunter2" not in err


def test_the_install_flow_needs_id_secret_and_public_url(tmp_path, monkeypatch):
    from capbot.settings import get_settings

    monkeypatch.chdir(tmp_path)
    settings = get_settings(slack_client_id="1.2", slack_client_secret="cs", public_url="https://c.example/")
    assert settings.slack_install_flow and settings.public_url == "https://c.example"
    assert not get_settings().slack_install_flow
