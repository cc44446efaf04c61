"""Many workspaces: the OAuth v2 install flow (slack-bolt over capbot's database), each team answered with its
own bot token, bad and reused states refused, installations kept across a restart, uninstalling and revoking,
and no token in the logs. Against the local Slack stand-in, on SQLite and PostgreSQL.

What cannot run offline: Slack's own consent screen (the test plays the browser Slack sends back with a code)."""

from __future__ import annotations

import contextlib
import html
import io
import json
import logging
import re
import time
from datetime import datetime
from functools import partial
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from slack_sdk.signature import SignatureVerifier

from bots.core import BotCore
from bots.fetch import fetch_image_bytes
from bots.slack.app import create_app
from bots.slack.http import slack_router
from bots.slack.install import InstallFlow, manifest_bot_scopes
from bots.store import SqlBotStore
from capbot.logs import _Formatter
from storage import db
from storage.blobs import LocalBlobStore
from storage.models import Base
from tests.bots.captioners import ColourCaptioner
from tests.bots.slack.conftest import LOCAL, SECRET, file_share
from tests.fakes.http_images import png_bytes
from tests.fakes.slack_api import FakeSlack

PUBLIC_URL = "https://capbot.example.test"
TOKENS = {"TA": "xoxb-team-a-0000000000-secret", "TB": "xoxb-team-b-1111111111-secret"}
COOKIE = "slack-app-oauth-state"


class Installed:
    """capbot's Slack app in install-flow mode on one database; `restart()` builds a new one on the same data."""

    def __init__(self, slack: FakeSlack, url: str, blobs: LocalBlobStore) -> None:
        self.slack, self.url, self.blobs = slack, url, blobs
        self._stack = contextlib.ExitStack()
        self.start()

    def start(self) -> None:
        self.engine = db.create_engine_for(self.url)
        store = SqlBotStore(self.engine, self.blobs)
        fetch = partial(fetch_image_bytes, max_bytes=1_000_000, timeout_s=5, policy=LOCAL)
        self.core = BotCore(ColourCaptioner(), store, fetch_url=fetch)
        flow = InstallFlow(client_id=self.slack.state.client_id, client_secret=self.slack.state.client_secret,
                           engine=self.engine, public_url=PUBLIC_URL)
        bolt = create_app(self.core, install=flow, signing_secret=SECRET, api_url=self.slack.api_url,
                          address_policy=LOCAL)
        web = FastAPI()
        web.include_router(slack_router(bolt))
        self.http = TestClient(web)

    def stop(self) -> None:
        self.http.close()
        self.core.close()
        self.engine.dispose()

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- the browser's side of the install flow ---

    def open_install_page(self) -> tuple[str, dict[str, list[str]]]:
        """GET /slack/install: returns the state cookie and the query of the "Add to Slack" link."""
        page = self.http.get("/slack/install")
        assert page.status_code == 200, page.text
        state = re.search(rf"{COOKIE}=([^;]+)", page.headers["set-cookie"]).group(1)
        link = html.unescape(re.search(r'href="(https://slack.com/oauth/v2/authorize[^"]+)"', page.text).group(1))
        return state, parse_qs(urlsplit(link).query)

    def come_back(self, code: str, state: str, cookie: str | None = None):
        """Slack sends the installer's browser back with a code and the state."""
        self.http.cookies.clear()
        headers = {"cookie": f"{COOKIE}={cookie or state}"}
        return self.http.get("/slack/oauth_redirect", params={"code": code, "state": state}, headers=headers)

    def install(self, team: str) -> None:
        state, _ = self.open_install_page()
        done = self.come_back(self.slack.add_team(team, TOKENS[team]), state)
        assert done.status_code == 200, done.text

    # --- Slack's side: signed events ---

    def event(self, team: str, event: dict, event_id: str):
        body = json.dumps({"token": "legacy", "team_id": team, "api_app_id": "A1", "type": "event_callback",
                           "event_id": event_id, "event_time": int(time.time()), "event": event}).encode()
        ts = str(int(time.time()))
        headers = {"content-type": "application/json", "x-slack-request-timestamp": ts,
                   "x-slack-signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)}
        return self.http.post("/slack/events", content=body, headers=headers)

    def command(self, team: str, text: str, user: str):
        form = {"token": "legacy", "team_id": team, "channel_id": f"C{team}", "user_id": user, "command": "/caption",
                "text": text, "response_url": self.slack.response_url(f"r{team}"), "trigger_id": "trig"}
        body = urlencode(form).encode()
        ts = str(int(time.time()))
        headers = {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": ts,
                   "x-slack-signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)}
        return self.http.post("/slack/events", content=body, headers=headers)

    def post_image(self, team: str, n: int):
        """Post an image in `team`'s channel C-<team>; returns the caption's chat.postMessage call."""
        ts = f"1700000000.{n:06d}"
        photo = self.slack.add_file(f"F{team}{n}", png_bytes(color=(40, 60, 200)))
        assert self.event(team, file_share([photo], ts=ts, channel=f"C{team}"), f"Ev{team}{n}").status_code == 200
        [post] = self.slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == ts)
        return post

    def bot_of(self, team: str):
        store = SQLAlchemyInstallationStore(client_id=self.slack.state.client_id, engine=self.engine)
        return store.find_bot(enterprise_id=None, team_id=team)


@pytest.fixture
def installed(database_url, tmp_path):
    db.upgrade(database_url)
    with FakeSlack() as slack:
        app = Installed(slack, database_url, LocalBlobStore(tmp_path / "blobs"))
        yield app
        app.stop()


def bearer(call) -> str:
    return call.headers.get("authorization", "").removeprefix("Bearer ")


def test_the_install_page_asks_for_the_manifests_scopes_and_comes_back_to_the_public_url(installed):
    state, query = installed.open_install_page()
    assert query["state"] == [state] and query["client_id"] == [installed.slack.state.client_id]
    assert query["scope"][0].split(",") == list(manifest_bot_scopes())
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/slack/oauth_redirect"]


def test_two_teams_are_each_answered_with_their_own_token(installed):
    installed.install("TA")
    installed.install("TB")
    [access_a, access_b] = installed.slack.calls("oauth.v2.access")
    assert access_a.args["redirect_uri"] == f"{PUBLIC_URL}/slack/oauth_redirect"

    for n, team in enumerate(("TA", "TB", "TA"), start=1):
        post = installed.post_image(team, n)
        assert bearer(post) == TOKENS[team] and "a blue picture" in post.args["text"]
        [download] = installed.slack.wait_for("download", where=lambda c, n=n, t=team: c.args["file"] == f"F{t}{n}")
        assert bearer(download) == TOKENS[team]
    installed.slack.state.users["U_ADMIN_B"] = {"id": "U_ADMIN_B", "is_admin": True}
    assert installed.command("TB", "training off", "U_ADMIN_B").status_code == 200  # a lazy listener's calls too
    [lookup] = installed.slack.wait_for("users.info")
    assert bearer(lookup) == TOKENS["TB"]
    [answer] = installed.slack.wait_for("respond")
    assert "nothing from here trains the model" in answer.args["text"]
    for call in installed.slack.state.calls:  # nothing went out with another token, or with none
        if call.method not in ("oauth.v2.access", "respond"):
            assert bearer(call) in TOKENS.values(), call.method


def test_installations_survive_a_restart(installed):
    installed.install("TA")
    installed.restart()
    assert bearer(installed.post_image("TA", 1)) == TOKENS["TA"]


def test_a_bad_a_foreign_and_a_reused_state_are_refused(installed):
    state, _ = installed.open_install_page()
    code = installed.slack.add_team("TA", TOKENS["TA"])
    assert installed.come_back(code, "not-a-state-we-gave").status_code == 401  # not in the state store
    assert installed.come_back(code, state, cookie="someone-elses-state").status_code == 400  # another browser
    assert installed.slack.calls("oauth.v2.access") == [] and installed.bot_of("TA") is None

    assert installed.come_back(code, state).status_code == 200
    assert installed.bot_of("TA").bot_token == TOKENS["TA"]
    assert installed.come_back(code, state).status_code == 401  # a state works once
    assert len(installed.slack.calls("oauth.v2.access")) == 1


def test_an_expired_state_is_refused(installed):
    state, _ = installed.open_install_page()
    states = SQLAlchemyOAuthStateStore(expiration_seconds=600, engine=installed.engine).oauth_states
    with installed.engine.begin() as connection:  # ten minutes later
        connection.execute(states.update().values(expire_at=datetime(2000, 1, 1)))
    assert installed.come_back(installed.slack.add_team("TA", TOKENS["TA"]), state).status_code == 401
    assert installed.bot_of("TA") is None


def test_uninstalling_and_revoking_remove_the_teams_tokens(installed):
    installed.install("TA")
    installed.install("TB")
    installed.slack.revoke_team("TA")
    assert installed.event("TA", {"type": "app_uninstalled"}, "EvGone").status_code == 200
    assert installed.bot_of("TA") is None and installed.bot_of("TB") is not None

    revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOTTB"]}}
    assert installed.event("TB", revoked, "EvRevoked").status_code == 200
    assert installed.bot_of("TB") is None
    with installed.engine.connect() as connection:
        tokens = connection.execute(sqlalchemy.text("SELECT bot_token FROM slack_bots WHERE bot_token IS NOT NULL"))
        assert list(tokens) == []


def test_an_event_from_a_team_that_never_installed_is_not_answered(installed):
    installed.install("TA")
    photo = installed.slack.add_file("FX", png_bytes(color=(1, 2, 3)))
    installed.event("TX", file_share([photo], ts="1700000009.000001", channel="CTX"), "EvStranger")
    assert bearer(installed.post_image("TA", 1)) == TOKENS["TA"]  # answered after the stranger's event
    assert [c for c in installed.slack.calls("chat.postMessage") if c.args.get("channel") == "CTX"] == []


def test_tokens_never_reach_the_log(installed):
    # capbot run's log format, at its most verbose: slack_sdk logs response bodies (tokens included) at DEBUG.
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(_Formatter(as_json=False))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        installed.install("TA")
        installed.post_image("TA", 1)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = out.getvalue()
    assert "oauth.v2.access" in text  # the log did see the exchange
    assert TOKENS["TA"] not in text and installed.slack.state.client_secret not in text


def test_the_migrated_tables_are_the_ones_slack_sdk_defines():
    ours = Base.metadata.tables
    theirs = sqlalchemy.MetaData()
    SQLAlchemyInstallationStore(client_id="x", engine=sqlalchemy.create_engine("sqlite://"))
    for table in (SQLAlchemyInstallationStore.build_installations_table(theirs, "slack_installations"),
                  SQLAlchemyInstallationStore.build_bots_table(theirs, "slack_bots"),
                  SQLAlchemyOAuthStateStore.build_oauth_states_table(theirs, "slack_oauth_states")):
        mine = ours[table.name]
        assert [(c.name, repr(c.type), c.nullable, c.primary_key) for c in mine.columns] == \
            [(c.name, repr(c.type), c.nullable, c.primary_key) for c in table.columns]
        assert {tuple(c.name for c in i.columns) for i in mine.indexes} == \
            {tuple(c.name for c in i.columns) for i in table.indexes}
