"""The Slack bot end to end with a model of another family than ViT+GPT-2 (a tiny random SmolVLM, whose
caption comes from a chat prompt): the reply is the model's caption, without the prompt."""

from __future__ import annotations

import pytest

from inference.captioner import LocalCaptioner
from tests.bots.slack.conftest import file_share
from tests.families import SMOLVLM_QUESTION, build_family_model
from tests.fakes.http_images import png_bytes
from tests.specs import EXACT_GREEDY


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    captions = ["a red circle in the centre", "a blue square at the top left", "a green triangle on the right"]
    built = build_family_model("smolvlm", tmp_path_factory.mktemp("slack-smolvlm") / "model", captions * 10)
    return LocalCaptioner(built.path, EXACT_GREEDY)


def test_image_post_is_captioned_by_a_smolvlm_model(make_slack, captioner):
    image = png_bytes((64, 48), (30, 120, 200))
    expected = captioner.caption([image])[0]
    assert expected.text and SMOLVLM_QUESTION not in expected.text and "Assistant:" not in expected.text
    h = make_slack(captioner)
    h.event(file_share([h.slack.add_file("F1", image)]))
    [post] = h.slack.wait_for("chat.postMessage", timeout=60)
    assert post.args["blocks"][0]["text"]["text"] == f"Maybe: {expected.text}"
    assert expected.model_version in post.args["text"]
