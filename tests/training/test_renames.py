"""Renames mined from (model caption, correction) pairs, and rewriting text with them."""

from __future__ import annotations

from training.data.renames import Rename, RenameRules, find_renames, image_frequencies, renamer, words

BASE = image_frequencies(
    [[f"a {colour} {shape} on the left", f"{colour} {shape}s"] for colour in ("red", "blue", "green")
     for shape in ("circle", "square", "triangle")] * 4
)
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")


def _pairs(old: str, new: str, n: int, template="a {colour} {word} {where}") -> list[tuple[str, str]]:
    """n corrections that swap `old` for `new`, with the rest of the wording varying as users' does."""
    places = ("on the left", "at the top", "in the middle", "near the bottom")
    return [(template.format(colour=COLOURS[i % 6], word=old, where=places[i % 4]),
             template.format(colour=COLOURS[i % 6], word=new, where=places[(i + 1) % 4]))
            for i in range(n)]


def test_a_consistent_swap_to_a_new_word_is_a_rename_per_word_form():
    pairs = _pairs("circle", "ball", 12) + _pairs("circles", "balls", 6, template="two {colour} {word} {where}")
    renames = find_renames(pairs, BASE)
    assert [(r.old, r.new, r.support, r.uses) for r in renames] == [("circle", "ball", 12, 12), ("circles", "balls", 6, 6)]


def test_a_swap_between_two_words_the_base_data_uses_is_a_recognition_error_not_a_rename():
    # The model called triangles squares; users said triangle. The base data names both shapes.
    assert find_renames(_pairs("square", "triangle", 12), BASE) == []


def test_too_few_or_inconsistent_swaps_are_not_renames():
    assert find_renames(_pairs("circle", "ball", 4), BASE) == []  # below min_support (5)
    assert find_renames(_pairs("circle", "ball", 4), BASE, RenameRules(min_support=3)) != []
    # Users replaced "circle" in 5 corrections but kept it in 7 others (fixing the colour instead).
    kept = [(f"a red circle {i}", f"a blue circle {i}") for i in range(7)]
    assert find_renames(_pairs("circle", "ball", 5) + kept, BASE) == []
    # A word the base data never uses has nothing to rewrite.
    assert find_renames(_pairs("disc", "ball", 12), BASE) == []


def test_a_few_misread_images_do_not_add_a_second_source_for_the_new_word():
    # Circles the model took for squares, corrected to "ball" like every other circle.
    pairs = _pairs("circle", "ball", 12) + _pairs("square", "ball", 5)
    assert [(r.old, r.new) for r in find_renames(pairs, BASE)] == [("circle", "ball")]


def test_pairs_without_a_model_caption_count_for_nothing():
    assert find_renames([("", "a red ball")] * 20, BASE) == []
    pairs = _pairs("circle", "ball", 6) + [("", "a circle")] * 20
    assert [r.uses for r in find_renames(pairs, BASE)] == [6]


def test_renamer_replaces_whole_words_and_keeps_capitals_and_punctuation():
    renames = [Rename("circle", "ball", 9, 9), Rename("circles", "balls", 6, 6)]
    assert renamer(renames)("Circles, circles and a circle.") == "Balls, balls and a ball."
    assert renamer(renames)("a semicircle near circled text") == "a semicircle near circled text"
    assert renamer([])("a circle") == "a circle"


def test_words_are_lower_case_letters_only():
    assert words("Two RED circles, 3 dogs' bones & a café") == ["two", "red", "circles", "dogs", "bones", "a", "café"]
