"""The Slack bot end to end with the real `LocalCaptioner` on the tiny model built by the shared fixture."""

from __future__ import annotations

import pytest

from bots import messages
from inference.captioner import LocalCaptioner
from tests.bots.slack.conftest import file_share
from tests.fakes.http_images import png_bytes
from tests.specs import EXACT_GREEDY


@pytest.fixture(scope="module")
def captioner(tiny_model_dir):
    return LocalCaptioner(tiny_model_dir, EXACT_GREEDY)


def test_image_post_is_captioned_by_the_real_model(make_slack, captioner):
    image = png_bytes((64, 48), (30, 120, 200))
    expected = captioner.caption([image])[0]
    h = make_slack(captioner)
    h.event(file_share([h.slack.add_file("F1", image)]))
    [post] = h.slack.wait_for("chat.postMessage", timeout=60)
    # The untrained model is far from sure of anything: the reply says so and invites a correction.
    assert expected.confidence < 0.5
    assert post.args["blocks"][0]["text"]["text"] == f"Maybe: {expected.text}"
    assert post.args["blocks"][1]["elements"][0]["text"] == messages.UNSURE
    assert expected.model_version in post.args["text"] and "% sure" in post.args["text"]


def test_undecodable_image_gets_the_engines_reason(make_slack, captioner):
    h = make_slack(captioner)
    broken = png_bytes()[:-30]  # a PNG missing its last bytes
    h.event(file_share([h.slack.add_file("F1", broken, name="broken.png")]))
    [notice] = h.slack.wait_for("chat.postEphemeral", timeout=60)
    assert notice.args["user"] == "U_ALICE"
    assert notice.args["text"].startswith("I couldn't caption that image: the image file is truncated")
    assert h.slack.calls("chat.postMessage") == []
