"""Systematic renames in user feedback ("every circle is a ball", "a tv is a television set"): found in
corrections, applied to base text.

Users correct captions one image at a time. When they consistently replace a word or phrase the model
uses with one the base data never uses, the correction is about vocabulary, not about one image. Left
alone, the base subset mixed into retraining keeps teaching the old name on every such image, the two
fight, and the candidate learns neither; its base score is also measured against references in the old
vocabulary. `find_renames` detects such renames and `renamer` rewrites base references with them, so
training and the gate's base score both speak the users' vocabulary.

Each correction is aligned with the model's caption word by word (`difflib`); every span of the caption
the correction *replaced* (not ones it only deleted or inserted) gives candidate renames: the replaced
words and the replacing words, trimmed of function words at their edges, and their sub-phrases of up to
`RenameRules.max_phrase_words` words (so "a circle" -> "a round disc" offers "circle" -> "round disc",
"circle" -> "round" and "circle" -> "disc", and the one-to-one rule below keeps the whole phrase). Words
and phrases are compared in lower case, as word sequences (punctuation and spacing do not matter).

A rename old -> new is accepted only when all of these hold (`RenameRules` holds the thresholds):
- content words: each side begins and ends with a content word, not a function word (`FUNCTION_WORDS`,
  see there why); function words inside a phrase are kept ("top of the hill");
- edits only: a correction counts only when it keeps at least one content word of the model's caption
  ("a red circle" -> "a red ball" keeps "red"); one that keeps none is a new caption (or junk), which
  says the model was wrong, not what a thing is called;
- replacements only: words a correction adds without replacing any ("a circle" -> "a red circle") teach
  the model to say more, not a new name; they are trained on like any correction, never a rename;
- support: at least `min_support` corrections drop `old` from the model's caption and put `new` in
  its place;
- consistency: those are at least `min_consistency` of the corrections whose model caption used `old`;
- users: they come from at least `min_users` distinct users (platform + user id), so one person's
  habit, or one spammer, never rewrites the base data;
- one to one: `new` is the best-supported replacement of `old`, and `old` the best-supported phrase
  that `new` replaced (so a few images the model misread do not add a second rename to the same word).
  When a phrase and its own parts are equally supported (every "circle" became "round disc", so
  "round" and "disc" are as supported), the phrase that contains the others is the one;
- novelty: the base references use `old` and use `new` on at most `max_new_share` as many images, so
  "the model said square, users said circle" (a recognition error between two concepts the base data
  already names) is never taken for a rename.
Singular and plural are separate words (and separate renames).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from typing import Callable, Iterable, NamedTuple, Sequence

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
    max_phrase_words: int = 3  # longest phrase on either side ("television set" is 2)


class CaptionEdit(NamedTuple):
    """One correction as rename evidence: what the model said, what the user wrote, and who they are."""

    model_caption: str  # empty when unknown: such a correction counts for nothing
    corrected: str
    user: str  # any key unique per person, e.g. "slack:U123"


@dataclass(frozen=True)
class Rename:
    """Users call `old` `new` (each a word or a phrase of words separated by single spaces): `support` of
    the `uses` corrections whose model caption said `old` agree, made by `users` distinct users."""

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


def phrase_frequencies(captions_per_image: Iterable[Sequence[str]], phrases: Iterable[str]) -> Counter:
    """How many images have each of `phrases` (lower-case words joined by single spaces) in at least one
    of their captions, as whole words."""
    wanted = set(phrases)
    counts: Counter = Counter()
    if not wanted:
        return counts
    for captions in captions_per_image:
        texts = [_padded(words(caption)) for caption in captions]
        counts.update(p for p in wanted if any(f" {p} " in text for text in texts))
    return counts


def find_renames(
    edits: Iterable[CaptionEdit],
    base_captions: Iterable[Sequence[str]],
    rules: RenameRules = RenameRules(),
) -> list[Rename]:
    """Renames supported by the corrections in `edits`, checked against the base data's reference captions
    (`base_captions`: each image's captions). Sorted by support, strongest first."""
    evidence = _evidence(edits, rules.max_phrase_words)
    best_new = _best_by(evidence.support, key=0)
    best_old = _best_by(evidence.support, key=1)
    supported = [(old, new) for (old, new), support in evidence.support.items()
                 if best_new.get(old) == new and best_old.get(new) == old and support >= rules.min_support
                 and len(evidence.users[old, new]) >= rules.min_users]
    uses = evidence.uses({old for old, _ in supported})
    supported = [(old, new) for old, new in supported
                 if evidence.support[old, new] >= rules.min_consistency * uses[old]]
    base = phrase_frequencies(base_captions, {p for pair in supported for p in pair})
    found = [Rename(old, new, evidence.support[old, new], uses[old], len(evidence.users[old, new]))
             for old, new in supported if 0 < base[old] and base[new] <= rules.max_new_share * base[old]]
    return sorted(found, key=lambda r: (-r.support, r.old))


def renamer(renames: Sequence[Rename]) -> Callable[[str], str]:
    """A function replacing every whole-word `old` by its `new`, longest `old` first (a phrase's words may
    be separated by any whitespace; a capital first letter is kept), with the pattern built once: a base
    dataset has hundreds of thousands of captions to rewrite."""
    if not renames:
        return lambda text: text
    table = {r.old: r.new for r in renames}
    alternatives = (r"\s+".join(re.escape(w) for w in old.split()) for old in sorted(table, key=len, reverse=True))
    pattern = re.compile(r"\b(" + "|".join(alternatives) + r")\b", re.IGNORECASE)

    def swap(match: re.Match) -> str:
        new = table[" ".join(match.group(0).lower().split())]
        return new[:1].upper() + new[1:] if match.group(0)[:1].isupper() else new

    return lambda text: pattern.sub(swap, text)


class _Evidence:
    """What the corrections that are edits of the model's caption say about replaced phrases."""

    def __init__(self) -> None:
        self.support: Counter = Counter()  # (old, new) -> corrections that replaced `old` by `new`
        self.users: defaultdict = defaultdict(set)  # (old, new) -> the set of users behind its support
        self.said: list[str] = []  # each counted model caption's words, padded for phrase look-ups

    def uses(self, phrases: set[str]) -> Counter:
        """phrase -> corrections whose model caption used it."""
        return Counter(p for text in self.said for p in phrases if f" {p} " in text)


def _evidence(edits: Iterable[CaptionEdit], max_words: int) -> _Evidence:
    evidence = _Evidence()
    for edit in edits:
        said, wanted = words(edit.model_caption), words(edit.corrected)
        if not set(said) - FUNCTION_WORDS:
            continue  # no model caption recorded (or only function words): nothing to compare
        evidence.said.append(_padded(said))
        if not (set(said) & set(wanted)) - FUNCTION_WORDS:
            continue  # a new caption, not an edit of this one
        for pair in _replacements(said, wanted, max_words):
            evidence.support[pair] += 1
            evidence.users[pair].add(edit.user)
    return evidence


def _replacements(said: list[str], wanted: list[str], max_words: int) -> set[tuple[str, str]]:
    """(old, new) phrase pairs from the spans of `said` that `wanted` replaced: old gone from `wanted`,
    new absent from `said`. Deletions and insertions give none."""
    said_text, wanted_text = _padded(said), _padded(wanted)
    pairs = set()
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, said, wanted, autojunk=False).get_opcodes():
        if tag != "replace":
            continue
        olds = [p for p in _phrases(said[i1:i2], max_words) if f" {p} " not in wanted_text]
        news = [p for p in _phrases(wanted[j1:j2], max_words) if f" {p} " not in said_text]
        pairs.update((old, new) for old in olds for new in news)
    return pairs


def _phrases(span: list[str], max_words: int) -> list[str]:
    """The sub-phrases of `span` of at most `max_words` words that begin and end with a content word."""
    return [" ".join(span[i:j]) for i in range(len(span)) for j in range(i + 1, min(len(span), i + max_words) + 1)
            if span[i] not in FUNCTION_WORDS and span[j - 1] not in FUNCTION_WORDS]


def _best_by(support_by_pair: Counter, key: int) -> dict[str, str]:
    """For each phrase on side `key` (0 = old, 1 = new), its single best-supported partner: none on a tie,
    unless one of the tied partners contains all the others (a phrase and its own parts)."""
    top: dict[str, tuple[int, list[str]]] = {}
    for pair, support in support_by_pair.items():
        phrase, partner = pair[key], pair[1 - key]
        best = top.get(phrase)
        if best is None or support > best[0]:
            top[phrase] = (support, [partner])
        elif support == best[0]:
            best[1].append(partner)
    chosen = {phrase: _containing_all(partners) for phrase, (_, partners) in top.items()}
    return {phrase: partner for phrase, partner in chosen.items() if partner is not None}


def _containing_all(phrases: list[str]) -> str | None:
    longest = max(phrases, key=lambda p: len(p.split()))
    return longest if all(f" {p} " in f" {longest} " for p in phrases) else None


def _padded(text_words: list[str]) -> str:
    """Words joined by spaces with a space at each end, so `f" {phrase} " in` matches whole words only."""
    return " " + " ".join(text_words) + " "
