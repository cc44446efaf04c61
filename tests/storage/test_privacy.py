"""Consent per community, the retention sweep, open reviews, privacy notices and a person's own data."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from storage import captions, channels, communities, confirmations, corrections, feedback, images, retention, reviews, runs, userdata
from storage.errors import InvalidArgument
from storage.models import Image

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _caption(session, blobs, data, *, workspace="T1", platform="slack", user="U1", days_ago=0, now=T0):
    when = now - timedelta(days=days_ago)
    image = images.store_image(session, blobs, data, format="png", width=4, height=3, platform=platform, now=when)
    return captions.record_caption(session, image_sha256=image.sha256, text="a kite in the sky", model_version="base",
                                   platform=platform, user_id=user, workspace_id=workspace, now=when)


def _correct(session, caption, user, text="a red kite over a field"):
    return corrections.record_correction(session, caption_id=caption.id, user_id=user, text=text,
                                         platform=caption.platform)


# --- consent ---------------------------------------------------------------------------------------------------

def test_withdrawn_consent_takes_the_communitys_corrections_out_of_every_export(session, blobs):
    ours = _caption(session, blobs, b"ours", workspace="T1")
    theirs = _caption(session, blobs, b"theirs", workspace="T2")
    _correct(session, ours, "U2")
    _correct(session, theirs, "U3")
    assert {r.user_id for r in feedback.export_corrections(session, blobs)} == {"U2", "U3"}

    communities.set_training_consent(session, platform="slack", workspace_id="T1", consent=False, by="UADMIN")
    assert [r.user_id for r in feedback.export_corrections(session, blobs)] == ["U3"]
    assert [r.user_id for r in feedback.export_feedback(session, blobs)] == ["U3"]
    assert feedback.count_feedback(session) == 1

    communities.set_training_consent(session, platform="slack", workspace_id="T1", consent=True, by="UADMIN")
    assert {r.user_id for r in feedback.export_corrections(session, blobs)} == {"U2", "U3"}


def test_the_default_decides_for_communities_that_never_chose(session, blobs):
    chose = _caption(session, blobs, b"chose", workspace="T1")
    silent = _caption(session, blobs, b"silent", workspace="T2")
    web = _caption(session, blobs, b"web", workspace=None, platform="web")
    for caption, user in ((chose, "U1"), (silent, "U2"), (web, "U3")):
        _correct(session, caption, user)
    communities.set_training_consent(session, platform="slack", workspace_id="T1", consent=True)

    assert [r.user_id for r in feedback.export_corrections(session, blobs, consent_default=False)] == ["U1"]
    assert feedback.count_feedback(session, consent_default=False) == 1
    assert len(feedback.export_corrections(session, blobs, consent_default=True)) == 3


def test_consent_follows_the_caption_of_the_image_not_the_correcting_user(session, blobs):
    # A Slack caption corrected through the web API still belongs to the Slack workspace it was posted in.
    posted = _caption(session, blobs, b"posted", workspace="T1")
    corrections.record_correction(session, caption_id=posted.id, user_id="key:abc", text="a blue kite flying", platform="web")
    communities.set_training_consent(session, platform="slack", workspace_id="T1", consent=False)
    assert feedback.export_corrections(session, blobs) == []


def test_community_choices_are_stored_per_workspace_and_validated(session):
    assert communities.get_choices(session, platform="discord", workspace_id="G1").training_consent is None
    communities.set_image_retention(session, platform="discord", workspace_id="G1", days=0, by="U9", now=T0)
    communities.set_training_consent(session, platform="discord", workspace_id="G1", consent=False, by="U9", now=T0)
    choices = communities.get_choices(session, platform="discord", workspace_id="G1")
    assert (choices.training_consent, choices.image_retention_days, choices.updated_by) == (False, 0, "U9")
    assert communities.get_choices(session, platform="discord", workspace_id="G2").image_retention_days is None
    with pytest.raises(InvalidArgument) as bad:
        communities.set_image_retention(session, platform="discord", workspace_id="G1", days=-1)
    assert bad.value.reason == "bad_retention"
    with pytest.raises(InvalidArgument):
        communities.set_training_consent(session, platform="discord", workspace_id="", consent=True)


@pytest.mark.parametrize(("operator", "community", "effective"),
                         [(None, None, None), (30, None, 30), (None, 7, 7), (30, 7, 7), (7, 30, 7), (30, 0, 0)])
def test_the_stricter_retention_applies(operator, community, effective):
    assert communities.effective_retention(operator, community) == effective


# --- the retention sweep -----------------------------------------------------------------------------------------

def _has_file(session, blobs, caption) -> bool:
    return blobs.exists(caption.image_sha256)


def test_sweep_removes_uncorrected_files_past_retention_and_keeps_rows(session, blobs):
    old = _caption(session, blobs, b"old", days_ago=31)
    young = _caption(session, blobs, b"young", days_ago=29)
    corrected = _caption(session, blobs, b"corrected", days_ago=90)
    confirmed = _caption(session, blobs, b"confirmed", days_ago=90)
    _correct(session, corrected, "U2")
    confirmations.record_confirmation(session, caption_id=confirmed.id, user_id="U3")

    result = retention.sweep_images(session, blobs, retention_days=30, now=T0)

    assert result.removed_shas == [old.image_sha256]
    assert not _has_file(session, blobs, old)
    assert all(_has_file(session, blobs, c) for c in (young, corrected, confirmed))
    row = session.get(Image, old.image_sha256)
    assert row is not None and row.blob_removed_at == T0  # the row (and its caption) stay
    assert retention.sweep_images(session, blobs, retention_days=30, now=T0).removed == 0  # nothing twice


def test_no_retention_anywhere_removes_nothing(session, blobs):
    old = _caption(session, blobs, b"old", days_ago=3650)
    assert retention.sweep_images(session, blobs, retention_days=None, now=T0).removed == 0
    assert _has_file(session, blobs, old)


def test_a_community_may_keep_less_than_the_operator_and_shared_images_wait_for_the_longest(session, blobs):
    communities.set_image_retention(session, platform="slack", workspace_id="TSHORT", days=1)
    short = _caption(session, blobs, b"short", workspace="TSHORT", days_ago=2)
    long = _caption(session, blobs, b"long", workspace="TLONG", days_ago=2)
    shared_short = _caption(session, blobs, b"shared", workspace="TSHORT", days_ago=2)
    _caption(session, blobs, b"shared", workspace="TLONG", days_ago=2)  # the same image, elsewhere

    result = retention.sweep_images(session, blobs, retention_days=None, now=T0)

    assert result.removed_shas == [short.image_sha256]
    assert _has_file(session, blobs, long) and _has_file(session, blobs, shared_short)


def test_a_running_retraining_keeps_every_image_it_may_have_exported(session, blobs):
    withdrawn = _caption(session, blobs, b"withdrawn", days_ago=40)
    plain = _caption(session, blobs, b"plain", days_ago=40)
    fix = _correct(session, withdrawn, "U2")
    corrections.withdraw_correction(session, fix.id, user_id="U2")
    run = runs.start_run(session, base_version=None)

    result = retention.sweep_images(session, blobs, retention_days=30, now=T0)
    assert result.removed_shas == [plain.image_sha256] and result.kept_for_training == 1
    assert _has_file(session, blobs, withdrawn)

    runs.finish_run(session, run.id, status="failed", reason="test")
    assert retention.sweep_images(session, blobs, retention_days=30, now=T0).removed_shas == [withdrawn.image_sha256]


def test_an_open_review_keeps_its_image_until_it_closes(session, blobs):
    reviewed = _caption(session, blobs, b"reviewed", days_ago=40)
    reviews.record_review_posts(session, [reviewed.image_sha256], now=T0 - timedelta(days=1))

    result = retention.sweep_images(session, blobs, retention_days=30, now=T0)
    assert result.removed == 0 and result.kept_for_review == 1
    later = T0 + reviews.REVIEW_OPEN
    assert retention.sweep_images(session, blobs, retention_days=30, now=later).removed_shas == [reviewed.image_sha256]


def test_a_dry_sweep_changes_nothing(session, blobs):
    old = _caption(session, blobs, b"old", days_ago=31)
    assert retention.sweep_images(session, blobs, retention_days=30, now=T0, dry_run=True).removed == 1
    assert _has_file(session, blobs, old) and session.get(Image, old.image_sha256).blob_removed_at is None


def test_an_image_posted_again_gets_its_file_back(session, blobs):
    old = _caption(session, blobs, b"again", days_ago=31)
    retention.sweep_images(session, blobs, retention_days=30, now=T0)
    assert session.get(Image, old.image_sha256).blob_removed_at is not None
    _caption(session, blobs, b"again")
    assert _has_file(session, blobs, old) and session.get(Image, old.image_sha256).blob_removed_at is None


def test_an_image_recorded_without_its_file_is_marked_and_restored(session, blobs):
    record = images.record_image_without_blob(session, blobs, sha256=_sha(b"held"), size_bytes=4, format="png",
                                              width=1, height=1, now=T0)
    assert record.blob_removed_at == T0 and not blobs.exists(record.sha256)
    with pytest.raises(InvalidArgument):
        images.restore_blob(session, blobs, record.sha256, b"other bytes")
    images.restore_blob(session, blobs, record.sha256, b"held")
    assert blobs.get(record.sha256) == b"held" and images.get_image(session, record.sha256).blob_removed_at is None


def _sha(data: bytes) -> str:
    from storage.blobs import sha256_of

    return sha256_of(data)


# --- notices ----------------------------------------------------------------------------------------------------

def test_each_channel_gets_its_privacy_notice_once(session):
    assert channels.claim_privacy_notice(session, platform="slack", channel_id="C1")
    assert not channels.claim_privacy_notice(session, platform="slack", channel_id="C1")
    assert channels.claim_privacy_notice(session, platform="discord", channel_id="C1")


def test_channel_switches_are_listed_per_community(session):
    channels.set_auto_caption(session, platform="slack", channel_id="C2", enabled=False, workspace_id="T1")
    channels.set_auto_caption(session, platform="slack", channel_id="C1", enabled=True, workspace_id="T1")
    channels.set_auto_caption(session, platform="slack", channel_id="C9", enabled=False, workspace_id="T2")
    assert channels.channel_switches(session, platform="slack", workspace_id="T1") == [("C1", True), ("C2", False)]


# --- a person's own data -----------------------------------------------------------------------------------------

def test_a_users_archive_holds_their_captions_corrections_and_kept_images(session, blobs):
    mine = _caption(session, blobs, b"mine", user="U1")
    gone = _caption(session, blobs, b"gone", user="U1", days_ago=40)
    _caption(session, blobs, b"someone else's", user="U7")
    someone_elses = _caption(session, blobs, b"corrected by me", user="U7")
    fix = _correct(session, someone_elses, "U1", "a blue kite")
    retention.sweep_images(session, blobs, retention_days=30, now=T0)
    channels.set_user_opt_out(session, platform="slack", user_id="U1", opted_out=True)

    archive = userdata.user_archive(session, blobs, user_id="U1", platform="slack", now=T0)

    assert archive.filename == "capbot-data-slack-U1.zip"
    assert (archive.summary.captions, archive.summary.corrections) == (2, 1)
    assert (archive.summary.images, archive.summary.images_gone) == (2, 1)
    with zipfile.ZipFile(io.BytesIO(archive.data)) as z:
        document = json.loads(z.read(userdata.DATA_FILE))
        assert z.read(f"images/{mine.image_sha256}.png") == b"mine"
        assert z.read(f"images/{someone_elses.image_sha256}.png") == b"corrected by me"
        assert "README.txt" in z.namelist()
    assert [c["id"] for c in document["captions"]] == [mine.id, gone.id]
    assert document["corrections"] == [{
        "id": fix.id, "kind": "correction", "platform": "slack", "caption_id": someone_elses.id,
        "caption_text": someone_elses.text, "text": "a blue kite", "status": "accepted",
        "created_at": document["corrections"][0]["created_at"], "status_changed_at": None,
        "image_sha256": someone_elses.image_sha256, "image_file": f"images/{someone_elses.image_sha256}.png"}]
    removed = next(i for i in document["images"] if i["sha256"] == gone.image_sha256)
    assert removed["file"] is None and removed["removed_at"] == T0.isoformat()
    assert document["opted_out"] == ["slack"] and document["user"] == {"id": "U1", "platform": "slack"}


def test_an_archive_of_a_stranger_is_empty_but_valid(session, blobs):
    archive = userdata.user_archive(session, blobs, user_id="nobody")
    with zipfile.ZipFile(io.BytesIO(archive.data)) as z:
        document = json.loads(z.read(userdata.DATA_FILE))
    assert document["captions"] == document["corrections"] == document["images"] == []
    assert archive.filename == "capbot-data-nobody.zip"
