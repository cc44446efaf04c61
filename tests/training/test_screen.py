"""Screening: copy-paste spam and the per-user cap set aside before consensus, with counts."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage.feedback import FeedbackRow
from training.data.screen import ScreenCounts, ScreenRules, cap_per_user, find_spam, screen_feedback

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle")
PLACES = ("on the left side", "on the right side", "in the middle", "")


def _row(n: int, user: str, text: str, model: str, *, platform: str = "slack", minutes: int | None = None):
    return FeedbackRow(f"{n:064d}", Path(f"/b/{n}"), text, model_caption=model, platform=platform, user_id=user,
                       correction_id=n, created_at=T0 + timedelta(minutes=n if minutes is None else minutes))


def _model_captions(seed: int, n: int) -> list[str]:
    """Model captions of n unrelated images (no word in most of them), worded as the synthetic task's model
    words them; the seed varies which colour and place each image has."""
    rng = random.Random(seed)
    colours, places = rng.sample(COLOURS, 6), rng.sample(PLACES, 4)
    return [f"a {colours[i % 6]} {SHAPES[i // 2 % 3]} {places[i % 4]}".strip() for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_text_pasted_on_unrelated_images_is_spam(seed):
    pasted = [_row(i, f"u{i % 4}", "Zorax plimilo!", model) for i, model in enumerate(_model_captions(seed, 12))]
    honest = [_row(100 + i, "u9", "a red ball", "a red circle") for i in range(3)]
    screened = screen_feedback(pasted + honest)
    assert [r.caption for r in screened.rows] == ["a red ball"] * 3
    assert screened.counts == ScreenCounts(corrections=15, spam=12, images=3, users=1) and screened.spam_texts == 1
    # Below the threshold (fewer unrelated images than spam_min_images) it is ordinary feedback.
    assert find_spam(pasted[:4]) == set() and find_spam(pasted[:5]) == {frozenset({"zorax", "plimilo"})}


def test_legitimate_repeated_corrections_are_not_spam():
    # Many users write "a red ball" on red circles: the model's captions share "red" with it.
    red_balls = [_row(i, f"u{i % 6}", "a red ball", f"a red circle {PLACES[i % 4]}".strip()) for i in range(30)]
    # "a ball" on circles of every colour shares no word with the captions, but the images are all circles.
    balls = [_row(100 + i, f"u{i % 6}", "a ball", f"a {COLOURS[i % 6]} circle") for i in range(30)]
    # Where the model misread a few of them (varied wrong captions), the text is still mostly related.
    misread = [_row(200 + i, "u1", "a red ball", model) for i, model in enumerate(_model_captions(7, 6))
               if "red" not in model]
    assert find_spam(red_balls + balls + misread) == set()
    assert screen_feedback(red_balls + balls + misread).counts.spam == 0


def test_texts_without_model_captions_are_not_judged():
    rows = [_row(i, "u1", "zorax plimilo", "") for i in range(20)]
    assert find_spam(rows) == set()


def test_a_user_or_a_web_address_contributes_at_most_the_cap():
    rows = [_row(i, "ip:3f2a", f"a red ball number {i}", "a red circle", platform="web", minutes=40 - i)
            for i in range(30)]
    rows += [_row(100 + i, "U7", "a blue ball", "a blue circle") for i in range(3)]
    kept, set_aside = cap_per_user(rows, 25)
    # The address's 25 earliest corrections (the last 25 listed: they were made first) stay, in input order.
    assert [r.correction_id for r in kept] == list(range(5, 30)) + [100, 101, 102]
    assert [r.correction_id for r in set_aside] == [0, 1, 2, 3, 4]
    screened = screen_feedback(rows, ScreenRules(max_images_per_user=25))
    assert screened.counts.over_user_cap == 5 and screened.counts.images == 28 and screened.counts.users == 2


def test_spam_is_set_aside_before_the_cap_and_consensus():
    models = _model_captions(3, 10)
    spam = [_row(i, "spammer", "buy zorax now", model) for i, model in enumerate(models)]
    # On image 0 two honest users agree, and the spammer's correction of it must not count as a vote.
    votes = [_row(0, "u1", "a red ball", models[0], minutes=50), _row(0, "u2", "a red ball", models[0], minutes=51)]
    later = [_row(300 + i, "spammer", f"a ball {n}", "a circle") for i, n in enumerate(("one", "two", "three"))]
    screened = screen_feedback(spam + votes + later, ScreenRules(max_images_per_user=2))
    assert screened.counts == ScreenCounts(corrections=15, spam=10, over_user_cap=1, outvoted=0, images=3, users=3)
    assert [(r.caption, r.supporters) for r in screened.rows][0] == ("a red ball", ("slack:u1", "slack:u2"))


def test_disputed_and_outvoted_are_counted():
    rows = [_row(1, "u1", "a red ball", "a red circle"), _row(1, "u2", "a blue ball", "a red circle", minutes=90),
            _row(2, "u1", "a red ball", "a red circle"), _row(2, "u2", "a red ball", "a red circle", minutes=91),
            _row(2, "u3", "a green ball", "a red circle", minutes=92)]
    screened = screen_feedback(rows)
    assert screened.counts == ScreenCounts(corrections=5, outvoted=1, disputed_images=1, images=1, users=2)


def test_rules_refuse_impossible_thresholds():
    with pytest.raises(ValueError):
        ScreenRules(max_images_per_user=0)
    with pytest.raises(ValueError):
        ScreenRules(spam_min_images=1)


def test_a_user_correcting_one_image_many_times_counts_once(database_url, tmp_path):
    # Through the real storage: the user's repeated corrections override each other, so against one other
    # user the image is a 1:1 dispute, not a 5:1 win.
    from storage import db
    from storage.captions import record_caption
    from storage.corrections import record_correction
    from storage.feedback import export_corrections
    from storage.images import store_image
    from tests.training.retrain_support import open_store

    engine, blobs = open_store(database_url, tmp_path)
    with db.session_scope(engine) as session:
        image = store_image(session, blobs, b"png bytes", format="png", width=4, height=4, platform="web")
        caption = record_caption(session, image_sha256=image.sha256, text="a red circle", model_version="v0",
                                 platform="web", user_id="ip:aa")
        for n in range(5):
            record_correction(session, caption_id=caption.id, user_id="ip:aa", text=f"a blue ball {'very ' * n}")
        record_correction(session, caption_id=caption.id, user_id="ip:bb", text="a red ball")
        corrections = export_corrections(session, blobs)
    engine.dispose()
    assert len(corrections) == 2
    screened = screen_feedback(corrections)
    assert screened.rows == [] and screened.counts.disputed_images == 1
