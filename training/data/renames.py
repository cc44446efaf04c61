"""Systematic renames in user feedback ("every circle is a ball"): found in corrections, applied to base text.

Users correct captions one image at a time. When they consistently replace a word the model uses with a
word the base data never uses, the correction is about vocabulary, not about one image. Left alone, the
base subset mixed into retraining keeps teaching the old word on every such image, the two fight, and
the candidate learns neither; its base score is also measured against references in the old vocabulary.
`find_renames` detects such renames and `renamer` rewrites base references with them, so training
and the gate's base score both speak the users' vocabulary.

A rename old -> new is accepted only when all of these hold (`RenameRules` holds the thresholds):
- content words: neither word is a function word (`FUNCTION_WORDS`, see there why);
- edits only: a correction counts only when it keeps at least one content word of the model's caption
  ("a red circle" -> "a red ball" keeps "red"); one that keeps none is a new caption (or junk), which
  says the model was wrong, not what a thing is called;
- support: at least `min_support` corrections drop `old` from the model's caption and add `new`;
- consistency: those are at least `min_consistency` of the corrections whose model caption used `old`;
- users: they come from at least `min_users` distinct users (platform + user id), so one person's
  habit, or one spammer, never rewrites the base data;
- one to one: `new` is the best-supported replacement of `old`, and `old` the best-supported word that
  `new` replaced (so a few images the model misread do not add a second rename to the same word);
- novelty: the base references use `old` and use `new` on at most `max_new_share` as many images, so
  "the model said square, users said circle" (a recognition error between two concepts the base data
  already names) is never taken for a rename.
Words are compared in lower case; singular and plural are separate words (and separate renames).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from itertools import product
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")

# Words that never name what a picture shows, so a change in them is wording, not vocabulary. A rename
# says what users call a thing (a noun, an adjective, a verb: the open word classes); the closed classes
# below only carry grammar, count, or frame the picture. Taking one as `old` would rewrite nearly every
# base reference ("the" -> "plimilo" from random-word feedback turned every caption into junk), and
# letting them compete as partners would let a wording habit ("a" -> "the") hide a real rename.
FUNCTION_WORDS = frozenset(
    # articles, determiners and quantifiers
    "a an the this that these those some any each every another other others both either neither no none "
    "all such many much more most few several lots lot its their his her my your our "
    # pronouns and wh-words
    "it they them he him she we us you i me who whom whose which what where there here "
    # prepositions (spatial ones included: they relate things, they do not name them)
    "of with without in on at to into onto from by for about over under above below behind beside "
    "besides between among near next up down off out through across along around against inside "
    "outside towards toward upon within like as "
    # conjunctions
    "and or but nor so yet than then if while "
    # be, have, do and modal auxiliaries
    "is are was were be been being am has have had do does did can could will would may might "
    # numbers (digits are not words here at all)
    "zero one two three four five six seven eight nine ten eleven twelve dozen hundred first second "
    "third single couple pair "
    # the picture itself rather than what it shows
    "picture pictures image images photo photos photograph photographs pic view shot closeup "
    "showing shows shown depicting depicts".split()
)


@dataclass(frozen=True)
class RenameRules:
    """Thresholds for accepting a rename (see the module docstring)."""

    min_support: int = 5
    min_consistency: float = 0.5
    max_new_share: float = 0.1
    min_users: int = 3  # distinct users (platform + user id) among the supporting corrections


class CaptionEdit(NamedTuple):
    """One correction as rename evidence: what the model said, what the user wrote, and who they are."""

    model_caption: str  # empty when unknown: such a correction counts for nothing
    corrected: str
    user: str  # any key unique per person, e.g. "slack:U123"


@dataclass(frozen=True)
class Rename:
    """Users call `old` `new`: `support` of the `uses` corrections whose model caption said `old` agree,
    made by `users` distinct users."""

    old: str
    new: str
    support: int
    uses: int
    users: int

    def to_dict(self) -> dict:
        """JSON-ready form (run metrics, the CLI)."""
        return asdict(self)


def words(text: str) -> list[str]:
    """The lower-cased words of `text` (letters and inner apostrophes; digits and punctuation dropped)."""
    return _WORD.findall(text.lower())


def image_frequencies(captions_per_image: Iterable[Sequence[str]]) -> Counter:
    """How many images have each word in at least one of their captions."""
    counts: Counter = Counter()
    for captions in captions_per_image:
        counts.update({w for caption in captions for w in words(caption)})
    return counts


def find_renames(
    edits: Iterable[CaptionEdit],
    base_frequencies: Mapping[str, int],
    rules: RenameRules = RenameRules(),
) -> list[Rename]:
    """Renames supported by the corrections in `edits`, checked against the base data's word frequencies
    (`image_frequencies` of its references). Sorted by support, strongest first."""
    evidence = _evidence(edits)
    best_new = _best_by(evidence.support, key=0)
    best_old = _best_by(evidence.support, key=1)
    found = []
    for (old, new), support in evidence.support.items():
        if best_new.get(old) != new or best_old.get(new) != old:
            continue
        if support < rules.min_support or support < rules.min_consistency * evidence.uses[old]:
            continue
        if len(evidence.users[old, new]) < rules.min_users:
            continue
        old_images = base_frequencies.get(old, 0)
        if old_images == 0 or base_frequencies.get(new, 0) > rules.max_new_share * old_images:
            continue
        found.append(Rename(old, new, support, evidence.uses[old], len(evidence.users[old, new])))
    return sorted(found, key=lambda r: (-r.support, r.old))


def renamer(renames: Sequence[Rename]) -> Callable[[str], str]:
    """A function replacing every whole-word `old` by its `new` (a capital first letter is kept), with the
    pattern built once: a base dataset has hundreds of thousands of captions to rewrite."""
    if not renames:
        return lambda text: text
    table = {r.old: r.new for r in renames}
    pattern = re.compile(r"\b(" + "|".join(re.escape(old) for old in sorted(table, key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)

    def swap(match: re.Match) -> str:
        new = table[match.group(0).lower()]
        return new[:1].upper() + new[1:] if match.group(0)[:1].isupper() else new

    return lambda text: pattern.sub(swap, text)


@dataclass
class _Evidence:
    support: Counter  # (old, new) -> corrections that dropped `old` and added `new`
    uses: Counter  # word -> corrections whose model caption used it
    users: defaultdict  # (old, new) -> the set of users behind its support


def _evidence(edits: Iterable[CaptionEdit]) -> _Evidence:
    """Count content-word swaps over the corrections that are edits of the model's caption."""
    evidence = _Evidence(Counter(), Counter(), defaultdict(set))
    for edit in edits:
        said, wanted = set(words(edit.model_caption)) - FUNCTION_WORDS, set(words(edit.corrected)) - FUNCTION_WORDS
        if not said:
            continue  # no model caption recorded (or only function words): nothing to compare
        evidence.uses.update(said)
        if not said & wanted:
            continue  # a new caption, not an edit of this one
        for pair in product(said - wanted, wanted - said):
            evidence.support[pair] += 1
            evidence.users[pair].add(edit.user)
    return evidence


def _best_by(support_by_pair: Counter, key: int) -> dict[str, str]:
    """For each word on side `key` (0 = old, 1 = new), its single best-supported partner (none on a tie)."""
    best: dict[str, tuple[int, str | None]] = {}
    for pair, support in support_by_pair.items():
        word, partner = pair[key], pair[1 - key]
        top = best.get(word)
        if top is None or support > top[0]:
            best[word] = (support, partner)
        elif support == top[0]:
            best[word] = (support, None)  # a tie: no single partner
    return {word: partner for word, (_, partner) in best.items() if partner is not None}
