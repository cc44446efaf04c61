"""The review digest: the bots post the top of the review queue to the admin's channel, on the schedule, through
the real slack_sdk and discord.py clients talking to the local stand-ins; off unless configured."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from bots.slack.blocks import SUGGEST_ACTION
from capbot.cli import main
from capbot.digest import digest_job, start_digest
from capbot.settings import get_settings
from storage import corrections, db, reviews
from storage.blobs import LocalBlobStore
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.http_images import png_bytes
from tests.fakes.slack_api import FakeSlack
from tests.storage.helpers import make_caption
from training.scheduler import stop_scheduler

SLACK_TOKEN = "xoxb-digest-token"
SLACK_CHANNEL = "C0REVIEW"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    """A migrated SQLite database with four captioned images: (engine, blobs, captions by name)."""
    url = f"sqlite:///{tmp_path / 'capbot.db'}"
    db.upgrade(url)
    engine = db.create_engine_for(url)
    blobs = LocalBlobStore(tmp_path / "blobs")
    with db.session_scope(engine) as session:
        made = {
            "sure": make_caption(session, blobs, data=png_bytes(color=(1, 2, 3)), text="a red circle",
                                 confidence=0.95, now=T0),
            "unsure": make_caption(session, blobs, data=png_bytes(color=(4, 5, 6)), text="a blue square",
                                   confidence=0.35, now=T0),
            "middling": make_caption(session, blobs, data=png_bytes(color=(7, 8, 9)), text="a green circle",
                                     confidence=0.7, now=T0),
            "disputed": make_caption(session, blobs, data=png_bytes(color=(10, 11, 12)), text="a red square",
                                     confidence=0.8, now=T0),
        }
        corrections.record_correction(session, caption_id=made["disputed"].id, user_id="U2",
                                      text="a red triangle", now=T0 + timedelta(hours=1))
    yield engine, blobs, made
    engine.dispose()


def _settings(tmp_path, monkeypatch, **values):
    monkeypatch.chdir(tmp_path)  # no stray .env
    return get_settings(data_dir=tmp_path / "data", **values)


def test_slack_digest_posts_images_captions_confidence_and_the_correction_button(tmp_path, monkeypatch, store):
    engine, blobs, made = store
    with FakeSlack(SLACK_TOKEN) as slack:
        settings = _settings(tmp_path, monkeypatch, slack_bot_token=SLACK_TOKEN, slack_api_url=slack.api_url,
                             digest_slack_channel=SLACK_CHANNEL, digest_cron="0 9 * * *", digest_size=2)
        digest = digest_job(settings, engine, blobs)
        assert digest() == {"slack": 2}
        messages = slack.calls("chat.postMessage")
        second = digest()  # the next digest goes on down the queue instead of repeating itself
        later = slack.calls("chat.postMessage")[len(messages):]

    intro, first_item, second_item = messages
    assert all(m.args["channel"] == SLACK_CHANNEL for m in messages)
    assert "Review digest: 2 image(s)" in intro.args["text"] and "Suggest a better caption" in intro.args["text"]
    # Highest score first: the disputed caption (0.2 + 0.5), then the unsure one (0.65).
    assert "a red square" in first_item.args["text"] and "80% sure" in first_item.args["text"]
    assert "1 user(s) said: \u201ca red triangle\u201d" in first_item.args["text"]
    assert "a blue square" in second_item.args["text"] and "35% sure" in second_item.args["text"]
    [button] = first_item.args["blocks"][1]["elements"]
    assert button["action_id"] == SUGGEST_ACTION and button["value"] == str(made["disputed"].id)
    uploads = [slack.state.uploads[f"FUP{n}"] for n in range(1, 5)]
    assert all(u["channel"] == SLACK_CHANNEL and u["data"] for u in uploads)
    order = ("disputed", "unsure", "middling", "sure")
    assert [u["data"] for u in uploads] == [blobs.get(made[name].image_sha256) for name in order]  # the images
    assert second == {"slack": 2} and "a green circle" in later[1].args["text"] and "a red circle" in later[2].args["text"]


def test_discord_digest_posts_each_image_with_its_suggest_button(tmp_path, monkeypatch, store):
    engine, blobs, made = store
    fake = FakeDiscord().start()
    try:
        settings = _settings(tmp_path, monkeypatch, discord_token=fake.token, discord_api_url=fake.api_url,
                             discord_gateway_url=fake.gateway_url, digest_discord_channel=fake.channel_id,
                             digest_cron="0 9 * * 1-5", digest_size=1, public_url="https://capbot.example")
        assert digest_job(settings, engine, blobs)() == {"discord": 1}
        posts = fake.requests_matching(lambda r: r.method == "POST" and r.path == f"/channels/{fake.channel_id}/messages")
        assert fake.unrouted() == []
    finally:
        fake.stop()
    intro, item = posts
    assert intro.json["content"].startswith("Review digest: 1 image(s)")
    assert "a red square" in item.json["content"] and "80% sure" in item.json["content"]
    [image] = item.files.values()
    assert image == blobs.get(made["disputed"].image_sha256)
    [row] = item.json["components"]
    assert row["components"][0]["custom_id"] == f"capbot:suggest:{made['disputed'].id}"


def test_the_schedule_runs_the_digest_and_one_failing_platform_does_not_stop_the_other(tmp_path, monkeypatch, store,
                                                                                       caplog):
    engine, blobs, made = store
    with FakeSlack(SLACK_TOKEN) as slack:
        settings = _settings(tmp_path, monkeypatch, slack_bot_token=SLACK_TOKEN, slack_api_url=slack.api_url,
                             digest_slack_channel=SLACK_CHANNEL, discord_token="not-a-valid-token",
                             discord_api_url=slack.base_url + "/no-discord-here", digest_discord_channel="12345678",
                             digest_cron="0 9 * * *", digest_size=1)
        scheduler = start_digest(settings, engine, blobs)
        try:
            job = scheduler.get_job("capbot-digest")
            assert job.name == "digest" and job.next_run_time.hour == 9
            job.modify(next_run_time=datetime.now(timezone.utc))  # a tick now instead of at 09:00
            [_intro, item] = slack.wait_for("chat.postMessage", count=2, timeout=30)
        finally:
            stop_scheduler(scheduler)
    assert "a red square" in item.args["text"]
    with db.session_scope(engine) as session:  # an open review: the retention sweep keeps its image a while
        assert reviews.open_reviews(session) == {made["disputed"].image_sha256}
    assert any(r.message.startswith("review digest not posted to discord") for r in caplog.records)
    assert "not-a-valid-token" not in caplog.text  # tokens never reach the logs


def test_off_by_default_and_nothing_to_review_posts_nothing(tmp_path, monkeypatch, store):
    engine, blobs, _made = store
    with FakeSlack(SLACK_TOKEN) as slack:
        plain = _settings(tmp_path, monkeypatch, slack_bot_token=SLACK_TOKEN, slack_api_url=slack.api_url,
                          digest_slack_channel=SLACK_CHANNEL)  # a channel but no schedule: off
        assert digest_job(plain, engine, blobs) is None and start_digest(plain, engine, blobs) is None
        empty_root = tmp_path / "empty"
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        db.upgrade(url)
        empty = db.create_engine_for(url)
        try:
            on = plain.model_copy(update={"digest_cron": "0 9 * * *"})
            assert digest_job(on, empty, LocalBlobStore(empty_root))() == {}
        finally:
            empty.dispose()
        assert slack.state.calls == []


@pytest.mark.parametrize("values, message", [
    ({"digest_cron": "0 9 * * *"}, "neither CAPBOT_DIGEST_SLACK_CHANNEL nor CAPBOT_DIGEST_DISCORD_CHANNEL"),
    ({"digest_cron": "at nine", "digest_slack_channel": "C0REVIEW", "slack_bot_token": "x"},
     "digest_cron 'at nine' is not a valid crontab expression"),
    ({"digest_cron": "0 25 * * *", "digest_slack_channel": "C0REVIEW", "slack_bot_token": "x"},
     "digest_cron '0 25 * * *' is not a valid crontab expression"),
    ({"digest_slack_channel": "#reviews", "slack_bot_token": "x"}, "must be a Slack channel id like C0123ABCD"),
    ({"digest_slack_channel": "C0REVIEW"}, "CAPBOT_SLACK_BOT_TOKEN is not"),
    ({"digest_discord_channel": "reviews", "discord_token": "x"}, "must be a Discord channel id"),
    ({"digest_discord_channel": "123456789"}, "CAPBOT_DISCORD_TOKEN is not"),
    ({"digest_size": 0}, "greater than or equal to 1"),
])
def test_bad_digest_settings_are_refused_naming_the_setting(tmp_path, monkeypatch, values, message):
    with pytest.raises(ValidationError) as refused:
        _settings(tmp_path, monkeypatch, **values)
    assert message in str(refused.value)


def test_capbot_run_stops_at_once_on_bad_digest_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAPBOT_DIGEST_CRON", "0 9 * * *")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: invalid settings: CAPBOT_DIGEST_CRON: ") and "nowhere to go" in err
