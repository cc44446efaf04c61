"""Image posts through the real events endpoint: signed requests in, Web API calls out to the fake Slack."""

from __future__ import annotations

from bots.fetch import AddressPolicy
from storage import captions
from storage.db import session_scope
from tests.bots.slack.conftest import file_share
from tests.fakes.http_images import ImageServer, png_bytes

RED = png_bytes(color=(200, 40, 40))


def test_image_post_gets_a_threaded_caption_reply(make_slack, bot_store):
    h = make_slack()
    photo = h.slack.add_file("F1", RED)
    response = h.event(file_share([photo]))
    assert response.status_code == 200
    [post] = h.slack.wait_for("chat.postMessage")
    assert post.args["channel"] == "C1" and post.args["thread_ts"] == "1700000000.000100"
    assert "a red picture" in post.args["text"] and "stub-v1" in post.args["text"]
    button = post.args["blocks"][-1]["elements"][0]
    assert button["action_id"] == "suggest_caption" and button["text"]["text"] == "Suggest a better caption"
    with session_scope(bot_store.engine) as session:
        stored = captions.get_caption(session, int(button["value"]))
    assert stored.text == "a red picture" and stored.user_id == "U_ALICE" and stored.platform == "slack"
    [download] = h.slack.calls("download")
    assert download.headers["authorization"] == "Bearer xoxb-test-token"


def test_files_download_from_the_configured_slack_host_under_the_production_policy(make_slack):
    # The fake Slack is on 127.0.0.1, like a proxy or stand-in set with CAPBOT_SLACK_API_URL.
    h = make_slack(policy=AddressPolicy())
    h.event(file_share([h.slack.add_file("F1", RED)]))
    assert "a red picture" in h.slack.wait_for_first("chat.postMessage", "chat.postEphemeral").args["text"]


def test_file_links_to_other_private_hosts_are_refused(make_slack):
    h = make_slack(policy=AddressPolicy())
    with ImageServer() as elsewhere:  # 127.0.0.1 too, but not the configured Slack origin
        photo = {**h.slack.add_file("F1", RED), "url_private_download": elsewhere.url("/image.png")}
        h.event(file_share([photo]))
        [notice] = h.slack.wait_for("chat.postEphemeral")
        assert elsewhere.state.requests == []
    assert "127.0.0.1, a loopback address" in notice.args["text"] and h.slack.calls("chat.postMessage") == []


def test_reply_goes_into_an_existing_thread(make_slack):
    h = make_slack()
    h.event(file_share([h.slack.add_file("F1", RED)], ts="1700000100.000200", thread_ts="1700000000.000100"))
    [post] = h.slack.wait_for("chat.postMessage")
    assert post.args["thread_ts"] == "1700000000.000100"


def test_retried_event_is_answered_once(make_slack):
    h = make_slack()
    event = file_share([h.slack.add_file("F1", RED)])
    first = h.event(event, event_id="EvRetry")
    h.slack.wait_for("chat.postMessage")
    retries = [h.event(event, event_id="EvRetry", headers={"x-slack-retry-num": str(n), "x-slack-retry-reason": "http_timeout"})
               for n in (1, 2)]
    assert first.status_code == 200 and all(r.status_code == 200 for r in retries)
    marker = h.marker()
    assert [c.args["thread_ts"] for c in h.slack.calls("chat.postMessage")] == ["1700000000.000100", marker.args["thread_ts"]]
    assert [c.args["file"] for c in h.slack.calls("download")] == ["F1", "FMARK1"]


def test_non_image_file_gets_no_reply(make_slack):
    h = make_slack()
    pdf = h.slack.add_file("F2", b"%PDF-1.4 ...", mimetype="application/pdf", name="report.pdf")
    assert h.event(file_share([pdf])).status_code == 200
    h.event({"type": "message", "channel": "C1", "user": "U_ALICE", "ts": "1700000001.0", "text": "hello"}, event_id="Ev2")
    marker = h.marker()
    assert h.slack.calls("chat.postMessage") == [marker] and h.slack.calls("chat.postEphemeral") == []
    assert [c.args["file"] for c in h.slack.calls("download")] == ["FMARK1"]


def test_only_the_image_files_of_a_post_are_captioned(make_slack):
    h = make_slack()
    files = [h.slack.add_file("F2", b"hello", mimetype="text/plain", name="a.txt"), h.slack.add_file("F1", RED)]
    h.event(file_share(files))
    assert len(h.slack.wait_for("chat.postMessage")) == 1
    assert [c.args["file"] for c in h.slack.calls("download")] == ["F1"]


def test_oversized_file_is_refused_from_metadata_without_downloading(make_slack):
    h = make_slack(max_image_bytes=1000)
    big = h.slack.add_file("F3", RED, size=5_000_000)
    h.event(file_share([big]))
    [notice] = h.slack.wait_for("chat.postEphemeral")
    assert notice.args["user"] == "U_ALICE" and "5.0 MB" in notice.args["text"] and "limit" in notice.args["text"]
    assert h.slack.calls("download") == [] and h.slack.calls("chat.postMessage") == []


def test_a_file_that_is_not_really_an_image_is_refused_with_the_reason(make_slack):
    h = make_slack()
    renamed = h.slack.add_file("F4", b"%PDF-1.4 renamed to .png", mimetype="image/png", name="photo.png")
    h.event(file_share([renamed]))
    [notice] = h.slack.wait_for("chat.postEphemeral")
    assert notice.args["user"] == "U_ALICE" and "not an image in a supported format" in notice.args["text"]
    assert h.slack.calls("chat.postMessage") == []


def test_html_page_instead_of_the_file_is_refused(make_slack):
    h = make_slack()
    photo = h.slack.add_file("F1", RED)
    h.slack.state.download_token = "xoxb-other"  # ours no longer opens files: Slack serves its sign-in page
    h.event(file_share([photo]))
    [notice] = h.slack.wait_for("chat.postEphemeral")
    assert "web page instead of the image" in notice.args["text"] and "files:read" in notice.args["text"]
    assert h.slack.calls("chat.postMessage") == []
    [download] = h.slack.calls("download")
    assert download.headers["authorization"] == "Bearer xoxb-test-token"


def test_file_stub_is_completed_with_files_info(make_slack):
    h = make_slack()
    h.slack.add_file("F1", RED)
    h.event(file_share([{"id": "F1", "mimetype": "image/png", "file_access": "check_file_info"}]))
    h.slack.wait_for("chat.postMessage")
    assert [c.args["file"] for c in h.slack.calls("files.info")] == ["F1"]


def test_channel_turned_off_gets_no_auto_caption(make_slack):
    h = make_slack()
    from bots.core import Origin

    h.core.set_channel(Origin("slack", "T1", "C1", "U_ADMIN"), False, allowed=True)
    h.event(file_share([h.slack.add_file("F1", RED)]))
    marker = h.marker(channel="C2")  # a channel where auto-captioning is on
    assert h.slack.calls("chat.postMessage") == [marker] and h.slack.calls("chat.postEphemeral") == []
    assert [c.args["file"] for c in h.slack.calls("download")] == ["FMARK1"]


def test_file_deleted_before_download_is_explained(make_slack):
    h = make_slack()
    h.event(file_share([{"id": "F404", "mimetype": "image/png", "file_access": "check_file_info"}]))
    [notice] = h.slack.wait_for("chat.postEphemeral")
    assert "That file is gone" in notice.args["text"]
