"""Feedback export (latest accepted per image, opt-outs excluded) and forgetting a user."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from storage import captions, channels, corrections, feedback, forget
from storage.db import session_scope
from storage.models import Caption, Correction, Image
from tests.storage.helpers import make_caption

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _correct(session, caption, user, text, minutes):
    return corrections.record_correction(session, caption_id=caption.id, user_id=user, text=text,
                                         now=T0 + timedelta(minutes=minutes))


def test_export_latest_accepted_per_image(session, blobs):
    dog = make_caption(session, blobs, data=b"dog")
    cat = make_caption(session, blobs, data=b"cat", text="a cat on a sofa")
    dog_again = captions.record_caption(session, image_sha256=dog.image_sha256, text="a dog outside",
                                        model_version="v1", platform="discord", user_id="D9")
    _correct(session, dog, "U2", "a brown dog", 1)
    latest_dog = _correct(session, dog_again, "U3", "a brown dog running on sand", 2)
    withdrawn = _correct(session, cat, "U2", "a grey cat", 3)
    corrections.withdraw_correction(session, withdrawn.id, user_id="U2")
    cat_fix = _correct(session, cat, "U4", "a tabby cat asleep", 4)

    rows = feedback.export_feedback(session, blobs)
    assert [(r.image_sha256, r.caption, r.correction_id, r.model_caption) for r in rows] == [
        (dog.image_sha256, "a brown dog running on sand", latest_dog.id, "a dog outside"),
        (cat.image_sha256, "a tabby cat asleep", cat_fix.id, "a cat on a sofa"),
    ]
    assert rows[0].image_path == blobs.path(dog.image_sha256) and rows[0].image_path.read_bytes() == b"dog"
    # Who made each correction (not who asked for the caption): retraining counts distinct users.
    assert [(r.platform, r.user_id, r.user) for r in rows] == [("discord", "U3", "discord:U3"), ("slack", "U4", "slack:U4")]
    assert [r.created_at for r in rows] == [T0 + timedelta(minutes=2), T0 + timedelta(minutes=4)]
    assert feedback.count_feedback(session) == 2
    since = feedback.export_feedback(session, blobs, since=T0 + timedelta(minutes=2))
    assert [r.caption for r in since] == ["a tabby cat asleep"]
    assert feedback.count_feedback(session, since=T0 + timedelta(minutes=2)) == 1
    assert [r.caption for r in feedback.export_feedback(session, blobs, until=T0 + timedelta(minutes=1))] == [
        "a brown dog"]


def test_opted_out_users_are_never_exported(session, blobs):
    dog = make_caption(session, blobs, data=b"dog")
    _correct(session, dog, "U2", "a brown dog", 1)
    _correct(session, dog, "U3", "a brown dog by the sea", 2)
    channels.set_user_opt_out(session, platform="slack", user_id="U3", opted_out=True)
    assert [r.caption for r in feedback.export_feedback(session, blobs)] == ["a brown dog"]
    channels.set_user_opt_out(session, platform="slack", user_id="U2", opted_out=True)
    assert feedback.export_feedback(session, blobs) == []
    assert feedback.count_feedback(session) == 0


def test_missing_blob_is_skipped(session, blobs):
    dog = make_caption(session, blobs, data=b"dog")
    _correct(session, dog, "U2", "a brown dog", 1)
    blobs.delete(dog.image_sha256)
    assert feedback.export_feedback(session, blobs) == []


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_forget_user_deletes_their_data_and_unshared_images(engine, blobs):
    with session_scope(engine) as session:
        mine = make_caption(session, blobs, data=b"mine", user_id="U1")
        shared = make_caption(session, blobs, data=b"shared", user_id="U1")
        theirs_of_shared = make_caption(session, blobs, data=b"shared", user_id="U2")
        theirs = make_caption(session, blobs, data=b"theirs", user_id="U2")
        _correct(session, mine, "U2", "U2 fixes U1's caption", 1)  # goes with U1's caption
        _correct(session, theirs, "U1", "U1 fixes U2's caption", 2)
        kept = _correct(session, theirs_of_shared, "U2", "U2 fixes the shared one", 3)
        _correct(session, make_caption(session, blobs, data=b"other", platform="discord", user_id="U1"),
                 "U1", "a discord correction", 4)
    with session_scope(engine) as session:
        result = forget.forget_user(session, blobs, user_id="U1", platform="slack")
    assert (result.corrections, result.captions, result.images, result.blobs) == (2, 2, 1, 1)
    assert not blobs.exists(mine.image_sha256)
    assert blobs.exists(shared.image_sha256) and blobs.exists(theirs.image_sha256)
    with session_scope(engine) as session:
        assert session.scalars(select(Caption.user_id).order_by(Caption.id)).all() == ["U2", "U2", "U1"]
        assert [c.id for c in session.scalars(select(Correction).where(Correction.platform == "slack"))] == [kept.id]
        assert session.get(Image, mine.image_sha256) is None
        result = forget.forget_user(session, blobs, user_id="U1")  # all platforms: the discord rows too
    assert (result.corrections, result.captions, result.images) == (1, 1, 1)
    with session_scope(engine) as session:
        assert _count(session, Caption) == 2 and _count(session, Image) == 2


def test_forget_rolled_back_keeps_blobs(engine, blobs):
    from storage.db import session_factory

    with session_scope(engine) as session:
        mine = make_caption(session, blobs, data=b"mine", user_id="U1")
    with session_factory(engine)() as session:
        assert forget.forget_user(session, blobs, user_id="U1").images == 1
        session.rollback()
        session.commit()  # a later commit of the same session must not delete the blob either
        assert captions.get_caption(session, mine.id) is not None
    assert blobs.exists(mine.image_sha256)


def test_image_posted_again_before_blob_deletion_keeps_its_bytes(engine, blobs):
    from sqlalchemy import event

    from storage.db import session_factory

    with session_scope(engine) as session:
        mine = make_caption(session, blobs, data=b"mine", user_id="U1")

    def repost(_session) -> None:
        # Runs after the commit and before forget's own blob deletion (listeners run in order).
        with session_scope(engine) as other:
            make_caption(other, blobs, data=b"mine", user_id="U2")

    with session_factory(engine)() as forgetting:
        event.listen(forgetting, "after_commit", repost, once=True)
        assert forget.forget_user(forgetting, blobs, user_id="U1").images == 1
        forgetting.commit()
    assert blobs.exists(mine.image_sha256)
    with session_scope(engine) as session:
        assert [c.user_id for c in captions.captions_for_image(session, mine.image_sha256)] == ["U2"]


def test_export_corrections_lists_each_users_accepted_correction(session, blobs):
    dog = make_caption(session, blobs, data=b"dog")
    cat = make_caption(session, blobs, data=b"cat", text="a cat")
    for minutes, text in enumerate(("a brown dog", "a brown dog on sand", "a black dog")):  # one user, three times
        _correct(session, dog, "U2", text, minutes)
    _correct(session, dog, "U3", "a brown dog", 5)
    _correct(session, dog, "U4", "a grey dog", 6)
    channels.set_user_opt_out(session, platform="slack", user_id="U4", opted_out=True)
    _correct(session, cat, "U2", "a tabby cat", 7)
    rows = feedback.export_corrections(session, blobs)
    assert [(r.image_sha256, r.user, r.caption, r.users) for r in rows] == [
        (dog.image_sha256, "slack:U2", "a black dog", 2), (dog.image_sha256, "slack:U3", "a brown dog", 2),
        (cat.image_sha256, "slack:U2", "a tabby cat", 1)]
    assert rows[0].model_caption == dog.text and rows[0].supporters == ()  # consensus fills supporters in
    assert [r.caption for r in feedback.export_corrections(session, blobs, since=T0 + timedelta(minutes=5))] == [
        "a tabby cat"]
    blobs.delete(dog.image_sha256)
    assert [r.caption for r in feedback.export_corrections(session, blobs)] == ["a tabby cat"]
