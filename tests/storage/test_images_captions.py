"""Images (content-addressed, first sighting kept) and captions."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest

from storage import captions, images
from storage.errors import InvalidArgument
from tests.storage.helpers import make_caption

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_store_image_keeps_first_sighting_and_bytes_in_blobs(session, blobs):
    data = b"same bytes"
    first = images.store_image(session, blobs, data, format="JPEG", width=640, height=480,
                               platform="discord", workspace_id="G1", channel_id="C1", now=T0)
    again = images.store_image(session, blobs, data, format="jpeg", width=640, height=480,
                               platform="slack", channel_id="C9")
    assert first == again
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert (first.format, first.size_bytes, first.first_platform, first.first_channel_id) == ("jpeg", 10, "discord", "C1")
    assert first.first_seen_at == T0
    assert blobs.get(first.sha256) == data
    assert images.get_image(session, first.sha256) == first


def test_record_caption_round_trip(session, blobs):
    record = make_caption(session, blobs, options={"num_beams": 4, "max_new_tokens": 24}, latency_ms=812.5,
                          workspace_id="T1", channel_id="C1", message_ref="1700000000.000100", now=T0)
    loaded = captions.get_caption(session, record.id)
    assert loaded == record
    assert loaded.options == {"num_beams": 4, "max_new_tokens": 24}
    assert loaded.created_at == T0 and loaded.created_at.tzinfo is not None
    assert captions.find_caption_by_message(session, platform="slack", message_ref="1700000000.000100") == record
    assert captions.find_caption_by_message(session, platform="discord", message_ref="1700000000.000100") is None


def test_set_message_ref_after_posting(session, blobs):
    record = make_caption(session, blobs)
    updated = captions.set_message_ref(session, record.id, "M42")
    assert updated.message_ref == "M42"
    assert captions.find_caption_by_message(session, platform="slack", message_ref="M42").id == record.id
    with pytest.raises(InvalidArgument):
        captions.set_message_ref(session, record.id + 100, "M1")


def test_caption_needs_a_known_image_and_platform(session, blobs):
    with pytest.raises(InvalidArgument) as unknown:
        captions.record_caption(session, image_sha256="0" * 64, text="x", model_version="m", platform="slack")
    assert unknown.value.reason == "unknown_image"
    record = make_caption(session, blobs)
    with pytest.raises(InvalidArgument) as bad:
        captions.record_caption(session, image_sha256=record.image_sha256, text="x", model_version="m",
                                platform="irc")
    assert bad.value.reason == "bad_platform"
    assert [c.id for c in captions.captions_for_image(session, record.image_sha256)] == [record.id]
