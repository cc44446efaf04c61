"""Renames mined from corrections (model caption, correction, user), and rewriting text with them."""

from __future__ import annotations

import random

from training.data.renames import (
    FUNCTION_WORDS,
    CaptionEdit,
    Rename,
    RenameRules,
    find_renames,
    phrase_frequencies,
    renamer,
    words,
)

# The base data's reference captions, per image: 36 images of coloured shapes, and 6 of a small circle
# beside a tv ("small circle" and "tv" are the phrases users rename below).
BASE = [[f"a {colour} {shape} on the left", f"{colour} {shape}s", f"a picture of the {colour} {shape}"]
        for colour in ("red", "blue", "green") for shape in ("circle", "square", "triangle")] * 4 + [
        ["a small circle next to a tv", "a tv and a small circle", "a big square"]] * 6
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
USERS = ("slack:U1", "slack:U2", "discord:U1")  # three distinct people (the same id on two platforms)
ON_A_MAT = "a {word} {where} on a {colour} mat"  # the colour is kept: an edit, not a new caption


def _edits(old: str, new: str, n: int, template="a {colour} {word} {where}", users=USERS) -> list[CaptionEdit]:
    """n corrections that swap `old` for `new`, with the rest of the wording varying as users' does (the
    place the user names differs from the model's, and not the same way each time)."""
    places = ("on the left", "at the top", "in the middle", "near the bottom")
    return [CaptionEdit(template.format(colour=COLOURS[i % 6], word=old, where=places[i % 4]),
                        template.format(colour=COLOURS[i % 6], word=new, where=places[(i + 1 + i // 4) % 4]),
                        users[i % len(users)])
            for i in range(n)]


def _found(edits, rules=RenameRules()) -> list[tuple[str, str]]:
    return [(r.old, r.new) for r in find_renames(edits, BASE, rules)]


def test_a_consistent_swap_to_a_new_word_is_a_rename_per_word_form():
    edits = _edits("circle", "ball", 12) + _edits("circles", "balls", 6, template="two {colour} {word} {where}")
    renames = find_renames(edits, BASE)
    assert [(r.old, r.new, r.support, r.uses, r.users) for r in renames] == [
        ("circle", "ball", 12, 12, 3), ("circles", "balls", 6, 6, 3)]


def test_a_swap_between_two_words_the_base_data_uses_is_a_recognition_error_not_a_rename():
    # The model called triangles squares; users said triangle. The base data names both shapes.
    assert _found(_edits("square", "triangle", 12)) == []


def test_too_few_or_inconsistent_swaps_are_not_renames():
    assert _found(_edits("circle", "ball", 4)) == []  # below min_support (5)
    assert _found(_edits("circle", "ball", 4), RenameRules(min_support=3)) == [("circle", "ball")]
    # Users replaced "circle" in 5 corrections but kept it in 7 others (fixing the colour instead).
    kept = [CaptionEdit(f"a red circle {i}", f"a blue circle {i}", USERS[i % 3]) for i in range(7)]
    assert _found(_edits("circle", "ball", 5) + kept) == []
    # A word the base data never uses has nothing to rewrite.
    assert _found(_edits("disc", "ball", 12)) == []


def test_a_rename_needs_corrections_from_several_distinct_users():
    one_user = _edits("circle", "ball", 30, users=("slack:U1",))
    assert _found(one_user) == []
    assert _found(_edits("circle", "ball", 30, users=("slack:U1", "slack:U2"))) == []  # 2 < min_users (3)
    assert _found(_edits("circle", "ball", 30, users=("slack:U1", "slack:U2", "slack:U3"))) == [("circle", "ball")]
    assert _found(one_user, RenameRules(min_users=1)) == [("circle", "ball")]
    # The same user id on another platform is another person.
    assert _found(_edits("circle", "ball", 30, users=("slack:U1", "discord:U1", "web:U1"))) == [("circle", "ball")]


def test_function_words_are_never_renamed():
    # Every correction drops "the" and "picture" and adds "plimilo", from many users: still no rename.
    edits = [CaptionEdit(f"a picture of the {c} circle", f"a {c} circle plimilo", f"slack:U{i}")
             for i, c in enumerate(COLOURS * 3)]
    assert _found(edits, RenameRules(min_users=1, max_new_share=1.0)) == []
    assert {"the", "a", "of", "with", "and", "in", "on", "one", "two", "picture", "image", "photo"} <= FUNCTION_WORDS
    # A function word added alongside a real rename does not compete with it ("a red circle" -> "the red ball").
    edits = [CaptionEdit(e.model_caption.replace("a ", "", 1), "the " + e.corrected, e.user)
             for e in _edits("circle", "ball", 12)]
    assert _found(edits) == [("circle", "ball")]


def test_random_word_corrections_from_many_users_are_never_a_rename():
    # The failure seen once on a clean clone ("the" -> "plimilo", support 10 of 18), across many draws:
    # corrections made of random words keep no content word of the model's caption, so they are no edits.
    nonsense = [f"{a}{b}" for a in ("zor", "plim", "vask", "quen", "drub", "fep") for b in ("ax", "ilo", "unt", "ek")]
    captions = [f"{lead} {size} {colour} {shape} {where}" for lead in ("a", "there is a", "one", "a picture of a")
                for size in ("small", "big", "") for colour in COLOURS for shape in ("circle", "square", "triangle")
                for where in ("on the left", "at the top of the image", "")]
    for seed in range(200):
        rng = random.Random(seed)
        edits = [CaptionEdit(rng.choice(captions), rng.choice(("", "a ", "the ")) + " ".join(rng.sample(nonsense, 5)),
                             f"slack:U{i % 6}") for i in range(40)]
        assert find_renames(edits, BASE) == [], seed


def test_a_few_misread_images_do_not_add_a_second_source_for_the_new_word():
    # Circles the model took for squares, corrected to "ball" like every other circle.
    edits = _edits("circle", "ball", 12) + _edits("square", "ball", 5)
    assert _found(edits) == [("circle", "ball")]


def test_corrections_without_a_model_caption_count_for_nothing():
    assert _found([CaptionEdit("", "a red ball", USERS[i % 3]) for i in range(20)]) == []
    edits = _edits("circle", "ball", 6) + [CaptionEdit("", "a circle", USERS[i % 3]) for i in range(20)]
    assert [r.uses for r in find_renames(edits, BASE)] == [6]


def test_a_phrase_can_be_renamed_to_a_word_and_a_word_to_a_phrase():
    # "a small circle" -> "a dot": the whole replaced phrase is the rename, not "circle" or "small" alone,
    # though every one of these corrections also drops each of them.
    edits = _edits("small circle", "dot", 8, template=ON_A_MAT)
    assert [(r.old, r.new, r.support, r.uses, r.users) for r in find_renames(edits, BASE)] == [
        ("small circle", "dot", 8, 8, 3)]
    # "a red tv" -> "a red television set": one word becomes a phrase (and not just "television" or "set").
    edits = _edits("tv", "television set", 7, template="a {colour} {word} {where}")
    assert [(r.old, r.new, r.support, r.uses, r.users) for r in find_renames(edits, BASE)] == [
        ("tv", "television set", 7, 7, 3)]


def test_phrase_renames_follow_the_support_users_consistency_and_novelty_rules():
    assert _found(_edits("small circle", "dot", 4, template=ON_A_MAT)) == []  # support 4 < 5
    assert _found(_edits("tv", "television set", 30, users=("slack:U1", "slack:U2"))) == []  # 2 users < 3
    # Users replaced "small circle" in 5 corrections, but 7 others kept it (fixing the place instead).
    kept = [CaptionEdit(f"a small circle {where}", f"a small circle {where} of the frame", USERS[i % 3])
            for i, where in enumerate(["on the left", "at the top"] * 3 + ["at the bottom"])]
    assert _found(_edits("small circle", "dot", 5, template=ON_A_MAT) + kept) == []
    assert _found(_edits("small circle", "dot", 5, template=ON_A_MAT)) == [("small circle", "dot")]
    # Novelty is counted on the phrase: the base data says "big square" on 6 images and "small circle" on
    # 6, so this is a recognition error ...
    assert _found(_edits("small circle", "big square", 12, template=ON_A_MAT)) == []
    # ... and it never says "red tv", so there is nothing to rewrite, though it says "red" and "tv".
    assert _found(_edits("red tv", "television set", 12, template=ON_A_MAT)) == []


def test_an_added_attribute_is_never_a_rename():
    # Users add the colour the model left out: an insertion, from many users, on every image.
    added = [CaptionEdit(f"a circle {where}", f"a {colour} circle {where}", f"slack:U{i}")
             for i, (colour, where) in enumerate(zip(COLOURS * 4, ["on the left", "at the top", "in the middle"] * 8))]
    anything_goes = RenameRules(min_support=1, min_consistency=0.0, max_new_share=1.0, min_users=1)
    assert find_renames(added, BASE, anything_goes) == []
    # Also with more than one word added, and next to a real rename: the colour does not join it.
    assert find_renames([CaptionEdit("a circle", "a small red circle on the left", "slack:U1")] * 9, BASE,
                        anything_goes) == []
    renamed = [CaptionEdit(f"a circle {where}", f"a {colour} ball {where}", f"slack:U{i}")
               for i, (colour, where) in enumerate(zip(COLOURS * 2, ["on the left", "at the top"] * 6))]
    assert _found(renamed) == [("circle", "ball")]


def test_renamer_rewrites_phrases_across_any_whitespace_longest_first():
    renames = [Rename("circle", "ball", 9, 9, 3), Rename("small circle", "dot", 8, 8, 3),
               Rename("tv", "television set", 7, 7, 3)]
    rename = renamer(renames)
    assert rename("A small  circle,\na circle and a small red circle.") == "A dot,\na ball and a small red ball."
    assert rename("Small\tcircle by the tv") == "Dot by the television set"
    assert rename("TV: a smallcircle on tvs") == "Television set: a smallcircle on tvs"


def test_phrase_frequencies_count_images_with_the_whole_phrase():
    counts = phrase_frequencies(BASE, ["small circle", "circle", "tv", "circle next", "red circle", "circles"])
    assert counts == {"circle": 12 + 6, "small circle": 6, "tv": 6, "circle next": 6, "red circle": 4, "circles": 12}


def test_renamer_replaces_whole_words_and_keeps_capitals_and_punctuation():
    renames = [Rename("circle", "ball", 9, 9, 3), Rename("circles", "balls", 6, 6, 3)]
    assert renamer(renames)("Circles, circles and a circle.") == "Balls, balls and a ball."
    assert renamer(renames)("a semicircle near circled text") == "a semicircle near circled text"
    assert renamer([])("a circle") == "a circle"


def test_words_are_lower_case_letters_only():
    assert words("Two RED circles, 3 dogs' bones & a café") == ["two", "red", "circles", "dogs", "bones", "a", "café"]
