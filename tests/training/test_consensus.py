"""Consensus: several users' corrections of one image resolved into one caption, or set aside as disputed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from storage.feedback import FeedbackRow
from training.data.consensus import agree, content_key, resolve_consensus

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
_ids = iter(range(1, 10_000))


def _row(image: str, user: str, text: str, minutes: int = 0, model: str = "a red circle") -> FeedbackRow:
    return FeedbackRow(image * 64, Path(f"/b/{image}"), text, model_caption=model, platform="slack", user_id=user,
                       correction_id=next(_ids), created_at=T0 + timedelta(minutes=minutes))


def test_content_keys_ignore_wording_and_function_words():
    assert content_key("A red ball.") == content_key("the red ball") == frozenset({"red", "ball"})
    assert content_key("it is") != content_key("it was") and content_key("it is") == content_key("It is!")
    assert agree(content_key("a red ball"), content_key("a red ball on the left"))
    assert not agree(content_key("a red ball"), content_key("a blue ball"))
    assert not agree(content_key("it is"), content_key("a ball"))  # no content words agree with nothing else


def test_the_majority_wins_and_the_minority_is_outvoted():
    rows = [_row("a", "u1", "a red ball", 1), _row("a", "u2", "a red ball", 2), _row("a", "u3", "a blue ball", 3)]
    consensus = resolve_consensus(rows)
    (winner,) = consensus.rows
    assert winner.caption == "a red ball" and winner.supporters == ("slack:u1", "slack:u2")
    assert winner.user_id == "u2"  # the latest correction of the winning group stands for it
    assert consensus.outvoted == 1 and consensus.disputed == []


def test_a_tie_between_conflicting_corrections_is_disputed():
    rows = [_row("a", "u1", "a red ball", 1), _row("a", "u2", "a blue ball", 2)]
    assert resolve_consensus(rows).rows == [] and resolve_consensus(rows).disputed == ["a" * 64]
    # Two against two: still no majority, whoever came last.
    rows += [_row("a", "u3", "a red ball", 3), _row("a", "u4", "blue ball", 4)]
    consensus = resolve_consensus(rows)
    assert consensus.rows == [] and consensus.disputed == ["a" * 64] and consensus.outvoted == 0


def test_more_or_less_detail_agrees_and_supports():
    rows = [_row("a", "u1", "a ball", 1), _row("a", "u2", "a red ball on the left", 2), _row("a", "u3", "a red ball", 3)]
    (winner,) = resolve_consensus(rows).rows
    # Every group agrees with the others: all three support it, and the latest correction is trained on.
    assert winner.caption == "a red ball" and len(winner.supporters) == 3
    # Two users disagree on the colour, all three on "ball": what nobody contradicts wins, and the
    # conflicting details are not trained on.
    common = [_row("b", "u1", "a ball", 1), _row("b", "u2", "a red ball", 2), _row("b", "u3", "a blue ball", 3)]
    (winner,) = resolve_consensus(common).rows
    assert winner.caption == "a ball" and len(winner.supporters) == 3
    # Without the common statement, the colours conflict with no majority.
    assert resolve_consensus(common[1:]).disputed == ["b" * 64]


def test_a_single_user_counts_once_per_image():
    # Storage keeps one accepted correction per user and image; a duplicate here (a hand-made list) still
    # counts once, the user's latest.
    rows = [_row("a", "u1", "a blue ball", n) for n in range(5)] + [_row("a", "u2", "a red ball", 6)]
    assert resolve_consensus(rows).disputed == ["a" * 64]
    rows.append(_row("a", "u1", "a red ball", 7))  # u1 changes their mind: now two agree
    (winner,) = resolve_consensus(rows).rows
    assert winner.caption == "a red ball" and winner.supporters == ("slack:u1", "slack:u2")


def test_images_are_resolved_independently_and_returned_oldest_first():
    rows = [_row("b", "u1", "a green square", 5), _row("a", "u1", "a red ball", 9), _row("a", "u2", "a red ball", 1)]
    consensus = resolve_consensus(rows)
    assert [(r.image_sha256[0], r.caption, len(r.supporters)) for r in consensus.rows] == [
        ("b", "a green square", 1), ("a", "a red ball", 2)]
