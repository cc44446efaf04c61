"""bolt's request verification, exercised through capbot's real route."""

from __future__ import annotations

import json
import time

from tests.bots.slack.conftest import file_share
from tests.fakes.http_images import png_bytes


def test_bad_signature_is_refused(make_slack):
    h = make_slack()
    response = h.event(file_share([h.slack.add_file("F1", png_bytes())]), secret="not-the-secret")
    assert response.status_code == 401
    marker = h.marker()  # a signed post after it is answered, so the refused one would have been by now
    assert [c.args["file"] for c in h.slack.calls("download")] == ["FMARK1"]
    assert h.slack.calls("chat.postMessage") == [marker]


def test_stale_timestamp_is_refused(make_slack):
    h = make_slack()
    ten_minutes_ago = int(time.time()) - 600  # signed correctly, but replayed too late
    response = h.event(file_share([h.slack.add_file("F1", png_bytes())]), timestamp=ten_minutes_ago)
    assert response.status_code == 401
    assert h.command("optout", timestamp=ten_minutes_ago).status_code == 401


def test_missing_signature_is_refused(make_slack):
    h = make_slack()
    response = h.http.post("/slack/events", content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 401


def test_refusals_use_the_apis_json_error_shape(make_slack):
    h = make_slack()
    unsigned = h.http.post("/slack/events", content=b"{}", headers={"content-type": "application/json"})
    forged = h.event(file_share([h.slack.add_file("F1", png_bytes())]), secret="not-the-secret")
    for response in (unsigned, forged):
        assert response.status_code == 401 and response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert set(error) == {"code", "message"} and error["code"] == "unauthorized", response.text
        assert "signature" in error["message"]


def test_url_verification_challenge(make_slack):
    h = make_slack()
    body = json.dumps({"token": "legacy", "challenge": "abc123", "type": "url_verification"}).encode()
    response = h.post(body, "application/json")
    assert response.status_code == 200 and response.json()["challenge"] == "abc123"


def test_without_a_signing_secret_http_requests_are_refused(bot_store):
    # Socket Mode set-ups have no signing secret; the HTTP route must then trust nothing.
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from bots.core import BotCore
    from bots.slack.app import create_app
    from bots.slack.http import slack_router
    from tests.bots.captioners import ColourCaptioner
    from tests.bots.slack.conftest import SlackHarness
    from tests.fakes.slack_api import FakeSlack

    core = BotCore(ColourCaptioner(), bot_store, fetch_url=lambda url: b"")
    with FakeSlack() as slack:
        web = FastAPI()
        web.include_router(slack_router(create_app(core, bot_token="xoxb-test-token", signing_secret=None,
                                                   api_url=slack.api_url)))
        with TestClient(web) as http:
            h = SlackHarness(slack, core, http)
            assert h.command("optout").status_code == 401
    core.close()
