"""Consensus: when several users correct the same image, which caption (if any) is trained on.

Input: accepted corrections, one per user and image (storage keeps one accepted correction per
platform + user id and image; a duplicate here is dropped, the user's latest kept, so a user counts once).
Output: one `FeedbackRow` per image that has a consensus, with the users who support it.

Agreement is judged on content words (`training.data.renames.words` minus `FUNCTION_WORDS`, lower case,
singular and plural distinct): "A red ball." and "a red ball on the left" say the same thing about
what is red and what it is; they differ in detail only. Per image:
- corrections with the same content words form a group;
- two groups *agree* when one's words contain the other's ("a red ball" and "a red ball on the left"),
  and *conflict* otherwise ("a red ball" and "a blue ball");
- a group's support is the number of distinct users in it and in the groups that agree with it;
- the best-supported group wins only with strictly more support than every group conflicting with it;
  otherwise the image is *disputed* and nothing of it is trained on;
- among best-supported groups that agree with each other, the one holding the latest correction wins
  (as the export did before consensus), and its latest correction's text is trained on;
- users in groups that conflict with the winner are *outvoted*: their corrections are not trained on
  and do not count as support.
A correction with no content word at all ("it is") forms a group of its own exact wording, which agrees
only with itself: it says nothing a content word could confirm.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from storage.corrections import comparable
from storage.feedback import FeedbackRow
from training.data.renames import FUNCTION_WORDS, words


@dataclass(frozen=True)
class Consensus:
    """The resolved feedback: one row per agreed image, and what was left out."""

    rows: list[FeedbackRow]  # one per image with a consensus, `supporters` filled in, oldest first
    disputed: list[str]  # image hashes with no majority: nothing of them is trained on
    outvoted: int  # corrections conflicting with their image's majority (not trained on)


def content_key(text: str) -> frozenset[str]:
    """What a correction says, for comparing it with others: its content words (or, when it has none,
    its whole normalised wording as one item, which no other text's words can contain)."""
    key = frozenset(words(text)) - FUNCTION_WORDS
    if key:
        return key
    return frozenset({"\0" + comparable(text)})


def agree(a: frozenset[str], b: frozenset[str]) -> bool:
    """Two content keys agree when one contains the other (the same statement, more or less detailed)."""
    return a <= b or b <= a


def resolve_consensus(corrections: Iterable[FeedbackRow]) -> Consensus:
    """Resolve each image's corrections (see the module docstring)."""
    by_image: dict[str, list[FeedbackRow]] = defaultdict(list)
    for row in corrections:
        by_image[row.image_sha256].append(row)
    rows, disputed, outvoted = [], [], 0
    for sha, image_rows in by_image.items():
        winner, lost = _resolve_image(_one_per_user(image_rows))
        outvoted += lost
        if winner is None:
            disputed.append(sha)
        else:
            rows.append(winner)
    rows.sort(key=lambda r: r.order)
    return Consensus(rows, disputed, outvoted)


def _one_per_user(rows: Sequence[FeedbackRow]) -> list[FeedbackRow]:
    latest: dict[str, FeedbackRow] = {}
    for row in sorted(rows, key=lambda r: r.order):
        latest[row.user] = row
    return list(latest.values())


def _resolve_image(rows: list[FeedbackRow]) -> tuple[FeedbackRow | None, int]:
    """(the winning row with its supporters, or None when disputed; how many corrections were outvoted)."""
    groups: dict[frozenset[str], list[FeedbackRow]] = defaultdict(list)
    for row in rows:
        groups[content_key(row.caption)].append(row)
    support = {key: _supporters(key, groups) for key in groups}
    best = max(len(users) for users in support.values())
    top = [key for key in groups if len(support[key]) == best]
    # The latest correction among the best-supported groups decides between groups that agree.
    key = max(top, key=lambda k: max(r.order for r in groups[k]))
    conflicting = [other for other in groups if not agree(key, other)]
    outvoted = sum(len(groups[other]) for other in conflicting)
    if any(len(support[other]) >= best for other in conflicting):
        return None, 0  # no majority: the image is disputed, nobody is outvoted
    chosen = max(groups[key], key=lambda r: r.order)
    users = tuple(sorted(support[key]))
    return replace(chosen, supporters=users), outvoted


def _supporters(key: frozenset[str], groups: dict[frozenset[str], list[FeedbackRow]]) -> set[str]:
    return {row.user for other, rows in groups.items() if agree(key, other) for row in rows}
