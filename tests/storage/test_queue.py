"""The review queue ranks captioned images by the model's uncertainty and users' disagreement (both backends)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from storage import captions, corrections
from storage.errors import InvalidArgument
from storage.models import UserOptOut
from storage.queue import caption_url, disagreement, review_queue, uncertainty
from tests.storage.helpers import make_caption

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_disagreement_counts_the_largest_group_of_equal_answers():
    assert disagreement([]) == 0.0
    assert disagreement(["a red circle"]) == 0.0
    assert disagreement(["a red circle", "A red  circle."]) == 0.0  # case, spacing and final dot do not count
    assert disagreement(["a red circle", "a blue circle"]) == pytest.approx(0.5)
    assert disagreement(["m", "x", "x", "x"]) == pytest.approx(0.25)
    assert disagreement(["m", "x", "y"]) == pytest.approx(2 / 3)
    assert uncertainty(0.9) == pytest.approx(0.1) and uncertainty(None) == pytest.approx(0.5)


def test_low_confidence_ranks_first_and_disputes_add_to_it(session, blobs):
    sure = make_caption(session, blobs, data=b"sure", text="a red circle", confidence=0.95, now=T0)
    unsure = make_caption(session, blobs, data=b"unsure", text="a red square", confidence=0.3, now=T0)
    middling = make_caption(session, blobs, data=b"middle", text="a blue circle", confidence=0.6, now=T0)
    disputed = make_caption(session, blobs, data=b"disputed", text="a green square", confidence=0.8, now=T0)
    corrections.record_correction(session, caption_id=disputed.id, user_id="U2", text="a green triangle", now=T0)
    corrections.record_correction(session, caption_id=disputed.id, user_id="U3", text="a green circle", now=T0)

    queue = review_queue(session, blobs, limit=10)

    assert [item.caption_id for item in queue] == [disputed.id, unsure.id, middling.id, sure.id]
    top = queue[0]
    assert top.disagreement == pytest.approx(2 / 3) and top.uncertainty == pytest.approx(0.2)
    assert top.score == pytest.approx(0.2 + 2 / 3)
    assert set(top.corrections) == {"a green triangle", "a green circle"} and top.users == 2
    assert top.image_path == blobs.path(disputed.image_sha256) and top.image_path.exists()
    assert queue[1].disagreement == 0.0 and queue[1].corrections == () and queue[1].users == 0
    assert [item.caption_id for item in review_queue(session, blobs, limit=2)] == [disputed.id, unsure.id]


def test_agreeing_users_settle_an_image_and_one_user_counts_once(session, blobs):
    agreed = make_caption(session, blobs, data=b"agreed", text="a red square", confidence=0.7, now=T0)
    for user in ("U2", "U3", "U4"):
        corrections.record_correction(session, caption_id=agreed.id, user_id=user, text="a red circle", now=T0)
    lone = make_caption(session, blobs, data=b"lone", text="a red square", confidence=0.7, now=T0)
    for text in ("a red circle", "a blue circle", "a green circle"):  # one user changing their mind
        corrections.record_correction(session, caption_id=lone.id, user_id="U9", text=text, now=T0)

    by_id = {item.caption_id: item for item in review_queue(session, blobs)}

    assert by_id[agreed.id].disagreement == pytest.approx(0.25) and by_id[agreed.id].users == 3
    assert by_id[lone.id].disagreement == pytest.approx(0.5) and by_id[lone.id].users == 1
    assert by_id[lone.id].corrections == ("a green circle",)


def test_newest_caption_of_an_image_gives_its_confidence(session, blobs):
    old = make_caption(session, blobs, data=b"same", text="a red circle", confidence=0.1, now=T0)
    newer = captions.record_caption(session, image_sha256=old.image_sha256, text="a red square", model_version="v2",
                                    platform="slack", confidence=0.9, now=T0 + timedelta(hours=1))
    [item] = review_queue(session, blobs)
    assert item.caption_id == newer.id and item.confidence == 0.9 and item.model_version == "v2"


def test_since_keeps_images_captioned_or_corrected_after_it(session, blobs):
    stale = make_caption(session, blobs, data=b"stale", text="a red circle", confidence=0.2, now=T0)
    fresh = make_caption(session, blobs, data=b"fresh", text="a red circle", confidence=0.9,
                         now=T0 + timedelta(days=2))
    revived = make_caption(session, blobs, data=b"revived", text="a red circle", confidence=0.9, now=T0)
    corrections.record_correction(session, caption_id=revived.id, user_id="U2", text="a red square",
                                  now=T0 + timedelta(days=2))
    since = T0 + timedelta(days=1)
    assert {item.caption_id for item in review_queue(session, blobs, since=since)} == {fresh.id, revived.id}
    assert stale.id in {item.caption_id for item in review_queue(session, blobs)}


def test_opted_out_users_and_withdrawn_corrections_do_not_count(session, blobs):
    caption = make_caption(session, blobs, data=b"img", text="a red circle", confidence=0.9, now=T0)
    gone = corrections.record_correction(session, caption_id=caption.id, user_id="U2", text="a red square", now=T0)
    corrections.withdraw_correction(session, gone.id, user_id="U2")
    corrections.record_correction(session, caption_id=caption.id, user_id="U3", text="a blue square", now=T0)
    session.add(UserOptOut(platform="slack", user_id="U3"))
    session.flush()
    [item] = review_queue(session, blobs)
    assert item.corrections == () and item.disagreement == 0.0


def test_images_without_their_blob_are_left_out(session, blobs):
    kept = make_caption(session, blobs, data=b"kept", text="a red circle", confidence=0.5, now=T0)
    lost = make_caption(session, blobs, data=b"lost", text="a red circle", confidence=0.1, now=T0)
    blobs.delete(lost.image_sha256)
    assert [item.caption_id for item in review_queue(session, blobs)] == [kept.id]


@pytest.mark.parametrize("limit", [0, -1, 1001, "5"])
def test_a_bad_limit_is_refused(session, blobs, limit):
    with pytest.raises(InvalidArgument) as refused:
        review_queue(session, blobs, limit=limit)
    assert refused.value.reason == "bad_limit"


def test_links_point_at_the_discord_message_or_the_web_caption():
    assert caption_url(platform="discord", caption_id=7, workspace_id="G1", channel_id="C1", message_ref="M1",
                       public_url=None) == "https://discord.com/channels/G1/C1/M1"
    assert caption_url(platform="web", caption_id=7, workspace_id=None, channel_id=None, message_ref=None,
                       public_url="https://capbot.example/") == "https://capbot.example/v1/captions/7"
    assert caption_url(platform="web", caption_id=7, workspace_id=None, channel_id=None, message_ref=None,
                       public_url=None) is None
    assert caption_url(platform="slack", caption_id=7, workspace_id="T1", channel_id="C1", message_ref="1.2",
                       public_url="https://capbot.example") is None
