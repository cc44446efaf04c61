"""Systematic renames in user feedback ("every circle is a ball"): found in corrections, applied to base text.

Users correct captions one image at a time. When they consistently replace a word the model uses with a
word the base data never uses, the correction is about vocabulary, not about one image. Left alone, the
base subset mixed into retraining keeps teaching the old word on every such image, the two fight, and
the candidate learns neither; its base score is also measured against references in the old vocabulary.
`find_renames` detects such renames and `renamer` rewrites base references with them, so training
and the gate's base score both speak the users' vocabulary.

A rename old -> new is accepted only when all of these hold (`RenameRules` holds the thresholds):
- support: at least `min_support` corrections drop `old` from the model's caption and add `new`;
- consistency: those are at least `min_consistency` of the corrections whose model caption used `old`;
- one to one: `new` is the best-supported replacement of `old`, and `old` the best-supported word that
  `new` replaced (so a few images the model misread do not add a second rename to the same word);
- novelty: the base references use `old` and use `new` on at most `max_new_share` as many images, so
  "the model said square, users said circle" (a recognition error between two concepts the base data
  already names) is never taken for a rename.
Words are compared in lower case; singular and plural are separate words (and separate renames).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Sequence

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@dataclass(frozen=True)
class RenameRules:
    """Thresholds for accepting a rename (see the module docstring)."""

    min_support: int = 5
    min_consistency: float = 0.5
    max_new_share: float = 0.1


@dataclass(frozen=True)
class Rename:
    """Users call `old` `new`: `support` of the `uses` corrections whose model caption said `old` agree."""

    old: str
    new: str
    support: int
    uses: int

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
    pairs: Iterable[tuple[str, str]],
    base_frequencies: Mapping[str, int],
    rules: RenameRules = RenameRules(),
) -> list[Rename]:
    """Renames supported by (model caption, corrected caption) `pairs`, checked against the base data's
    word frequencies (`image_frequencies` of its references). Sorted by support, strongest first."""
    replaced, uses = _replacements(pairs)
    best_new = _best_by(replaced, key=0)
    best_old = _best_by(replaced, key=1)
    found = []
    for (old, new), support in replaced.items():
        if best_new.get(old) != new or best_old.get(new) != old:
            continue
        if support < rules.min_support or support < rules.min_consistency * uses[old]:
            continue
        old_images = base_frequencies.get(old, 0)
        if old_images == 0 or base_frequencies.get(new, 0) > rules.max_new_share * old_images:
            continue
        found.append(Rename(old, new, support, uses[old]))
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


def _replacements(pairs: Iterable[tuple[str, str]]) -> tuple[Counter, Counter]:
    """(how often each (old, new) word pair was swapped, how often each word was in a model caption)."""
    replaced: Counter = Counter()
    uses: Counter = Counter()
    for model_caption, corrected in pairs:
        said, wanted = set(words(model_caption)), set(words(corrected))
        if not said:
            continue  # no model caption recorded: nothing to compare
        uses.update(said)
        replaced.update((old, new) for old in said - wanted for new in wanted - said)
    return replaced, uses


def _best_by(replaced: Counter, key: int) -> dict[str, str]:
    """For each word on side `key` (0 = old, 1 = new), its single best-supported partner (none on a tie)."""
    best: dict[str, tuple[int, str | None]] = {}
    for pair, support in replaced.items():
        word, partner = pair[key], pair[1 - key]
        top = best.get(word)
        if top is None or support > top[0]:
            best[word] = (support, partner)
        elif support == top[0]:
            best[word] = (support, None)  # a tie: no single partner
    return {word: partner for word, (_, partner) in best.items() if partner is not None}
