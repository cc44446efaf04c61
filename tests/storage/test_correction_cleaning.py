"""Cleaning a correction by Unicode rules: control and bidi characters out, grapheme clusters (emoji
families, flags, combining marks, joiners in scripts that need them) kept whole, markup removed whole
(script and style elements with their content, terminal escape sequences with their parameters)."""

from __future__ import annotations

import pytest

from storage.corrections import clean_correction_text
from storage.errors import CorrectionRefused

FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467"  # man ZWJ woman ZWJ girl: one grapheme
WALES = "\U0001F3F4\U000E0067\U000E0062\U000E0077\U000E006C\U000E0073\U000E007F"  # black flag + tag letters
THUMB = "\U0001F44D\U0001F3FD"  # thumbs up, medium skin tone
KISS = "\U0001F469\u200D\u2764\uFE0F\u200D\U0001F48B\u200D\U0001F468"

CLEANED = [
    # terminal escapes go whole, not leaving "[31m"
    ("\x1b[31ma red car\x1b[0m", "a red car"),
    ("\x1b[1;38;5;196mbold red\x1b[m text", "bold red text"),
    ("a \x1b]0;owned\x07window title", "a window title"),
    ("\x9b31ma red car", "a red car"),
    # markup: script and style elements go with their content; other tags go, their text stays
    ("<script>alert(document.cookie)</script> a dog on a sofa", "a dog on a sofa"),
    ("a cat <SCRIPT type='x'>steal()</SCRIPT > asleep", "a cat asleep"),
    ("<style>body{display:none}</style>two birds", "two birds"),
    ("a <b>brown</b> dog <!-- note --> running", "a brown dog running"),
    ("a dog <script>never closed(", "a dog"),
    ("a dog <scr<script>x</script>ipt>alert(1)</script> sleeping", "a dog sleeping"),
    # bidi controls out, so the stored text reads as typed
    ("a dog \u202eeltit", "a dog eltit"),
    ("\u2067a boat\u2069 on a lake", "a boat on a lake"),
    ("a\u200f red\u200e kite", "a red kite"),
    # other invisible characters standing alone go; control characters separate words as spaces do
    ("a\u200b\u200bcat\ufeff on a\u00ad mat\u2060", "acat on a mat"),
    ("a dog\x00on\ta\x07 beach\r\nat dusk", "a dog on a beach at dusk"),
    # grapheme clusters stay whole
    (f"a family {FAMILY} at the beach", f"a family {FAMILY} at the beach"),
    (f"the flag of Wales {WALES} on a pole", f"the flag of Wales {WALES} on a pole"),
    (f"a thumbs up {THUMB} and a kiss {KISS}", f"a thumbs up {THUMB} and a kiss {KISS}"),
    ("cafe\u0301 tables in the sun", "caf\u00e9 tables in the sun"),  # NFC joins the accent
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 a cat", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 a cat"),
    ("\u0915\u094d\u200d\u0937 a temple at night", "\u0915\u094d\u200d\u0937 a temple at night"),
    # plain text is untouched apart from spacing and emphasis, as before
    ("  a *very* _small_ dog  ", "a very small dog"),
]

REFUSED = [
    ("<script>alert(document.cookie)</script>", "empty"),
    ("\x1b[31m\x1b[0m", "empty"),
    ("\u202e\u202e\u202e", "empty"),
    (f"{FAMILY} {FAMILY}", "no_words"),
    ("a\ud800b", "too_short"),  # a lone surrogate (JSON allows "\ud800") is no character at all
]


@pytest.mark.parametrize(("raw", "stored"), CLEANED)
def test_cleaned_by_unicode_rules(raw, stored):
    assert clean_correction_text(raw) == stored


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_nothing_left_is_refused_with_a_reason(raw, reason):
    with pytest.raises(CorrectionRefused) as refused:
        clean_correction_text(raw)
    assert refused.value.reason == reason
