"""Corrections: every refusal carries its reason and stores nothing; valid ones are cleaned and kept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from storage import corrections
from storage.corrections import MAX_LENGTH, clean_correction_text
from storage.errors import CorrectionNotFound, CorrectionRefused
from storage.models import Correction
from tests.storage.helpers import make_caption

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

REFUSED = [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("ok", "too_short"),
    ("**", "empty"),
    ("x" * (MAX_LENGTH + 1), "too_long"),
    ("a" * 10_000, "too_long"),
    ("12345 678", "no_words"),
    ("a cat with <@U024BE7LH>", "mention"),
    ("a cat with <@!80351110224678912>", "mention"),
    ("ping <@&123456> please", "mention"),
    ("posted in <#C024BE7LR|general>", "mention"),
    ("hey <!here> a cat", "mention"),
    ("a cat <!date^1392734382^{date} at {time}|Feb 18> ok", "mention"),
    ("@everyone look a cat", "mention"),
    ("a cat @here", "mention"),
    ("a cat see https://example.com/cat.png", "link"),
    ("a cat <http://evil.example|click me>", "link"),
    ("cat at www.example.com today", "link"),
    ("A dog on a beach.", "same_as_caption"),
    ("  a   DOG on a beach ", "same_as_caption"),
    ("**a dog on a beach**", "same_as_caption"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_refusals_carry_a_reason(text, reason):
    with pytest.raises(CorrectionRefused) as refused:
        clean_correction_text(text, "a dog on a beach")
    assert refused.value.reason == reason
    assert refused.value.message  # something the bot can show


CLEANED = [
    ("  a brown dog  ", "a brown dog"),
    ("a **brown** dog", "a brown dog"),
    ("a ~~black~~ brown dog", "a black brown dog"),
    ("a `brown` dog ||running||", "a brown dog running"),
    ("> a brown dog", "a brown dog"),
    ("a brown dog <:doge:123456789>", "a brown dog"),
    ("a <b>brown</b> dog", "a brown dog"),
    ("a brown\n\ndog\x00", "a brown dog"),
    ("_a brown dog_ with snake_case", "a brown dog with snake_case"),
    ("email@example dog", "email@example dog"),
]


@pytest.mark.parametrize(("text", "expected"), CLEANED)
def test_markup_is_stripped(text, expected):
    assert clean_correction_text(text, "a dog on a beach") == expected


def _count(session) -> int:
    return session.scalar(select(func.count()).select_from(Correction))


def test_record_stores_cleaned_text(session, blobs):
    caption = make_caption(session, blobs)
    record = corrections.record_correction(session, caption_id=caption.id, user_id="U2", text=" a *brown* dog ", now=T0)
    assert (record.text, record.status, record.platform, record.image_sha256) == (
        "a brown dog", "accepted", "slack", caption.image_sha256)
    assert corrections.get_correction(session, record.id) == record


@pytest.mark.parametrize(("caption_id", "text", "reason"), [
    (10_000, "a brown dog", "unknown_caption"),
    (None, "a cat with <@U1>", "mention"),
    (None, "a dog on a beach!", "same_as_caption"),
])
def test_refused_correction_stores_nothing(session, blobs, caption_id, text, reason):
    caption = make_caption(session, blobs)
    with pytest.raises(CorrectionRefused) as refused:
        corrections.record_correction(session, caption_id=caption_id or caption.id, user_id="U2", text=text)
    assert refused.value.reason == reason
    assert _count(session) == 0


def test_newer_correction_by_same_user_overrides(session, blobs):
    caption = make_caption(session, blobs)
    first = corrections.record_correction(session, caption_id=caption.id, user_id="U2", text="a brown dog", now=T0)
    other = corrections.record_correction(session, caption_id=caption.id, user_id="U3", text="a puppy", now=T0)
    second = corrections.record_correction(session, caption_id=caption.id, user_id="U2", text="a brown puppy",
                                           now=T0 + timedelta(minutes=1))
    statuses = {c.id: c.status for c in corrections.corrections_for_caption(session, caption.id)}
    assert statuses == {first.id: "overridden", other.id: "accepted", second.id: "accepted"}


def test_withdraw_only_own_correction(session, blobs):
    caption = make_caption(session, blobs)
    record = corrections.record_correction(session, caption_id=caption.id, user_id="U2", text="a brown dog")
    with pytest.raises(CorrectionNotFound):
        corrections.withdraw_correction(session, record.id, user_id="U3")
    withdrawn = corrections.withdraw_correction(session, record.id, user_id="U2", now=T0)
    assert (withdrawn.status, withdrawn.status_changed_at) == ("withdrawn", T0)
    assert corrections.withdraw_correction(session, record.id, user_id="U2").status == "withdrawn"
