"""Score generated captions against synthetic ground truth: does it name the main object's colour and shape?

A caption's colour is its first colour word and its shape its first shape word (singular or plural), since
every synthetic reference describes the main group first. `aliases` say which word a concept must now be
called by, e.g. `{"circle": "ball"}` after users renamed circles: then only "ball"/"balls" counts as right
for a circle, and "circle" is read as the old name (wrong).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from training.data.synthetic import COLOURS, SHAPES, Scene

_WORD = re.compile(r"[a-z]+")


def parse_concepts(caption: str, *, aliases: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """(colour word, shape word) first mentioned in `caption`, shapes singularised; None when absent."""
    colour_words, shape_words = _vocabulary(aliases or {})
    colour = shape = None
    for word in _WORD.findall(caption.lower()):
        if colour is None and word in colour_words:
            colour = word
        if shape is None and word in shape_words:
            shape = shape_words[word]
    return colour, shape


def concept_accuracy(
    predictions: Mapping[int, str],
    scenes: Mapping[int, Scene],
    *,
    aliases: Mapping[str, str] | None = None,
) -> dict:
    """Fraction of predictions naming the main object's colour, shape, and both; overall and per concept.

    Returns `{"n", "colour", "shape", "both", "by_shape": {shape: {"n", "colour", "shape", "both"}},
    "by_colour": {...}, "by_size": {...}, "by_count": {1: {...}, 2: ...}}` (the breakdowns show which
    scenes a model still gets wrong). Every prediction's id must be in `scenes`.
    """
    aliases = dict(aliases or {})
    unknown = [i for i in predictions if i not in scenes]
    if unknown:
        raise KeyError(f"{len(unknown)} predictions have no scene, e.g. image {unknown[0]}")
    rows = []
    for image_id, caption in predictions.items():
        main = scenes[image_id].main
        colour, shape = parse_concepts(caption, aliases=aliases)
        colour_ok = colour == aliases.get(main.colour, main.colour)
        shape_ok = shape == aliases.get(main.shape, main.shape)
        rows.append(_Row(main.colour, main.shape, main.size, main.count, colour_ok, shape_ok))
    return {
        **_rates(rows),
        **{f"by_{key}": _breakdown(rows, key) for key in ("shape", "colour", "size", "count")},
    }


@dataclass(frozen=True)
class _Row:
    colour: str
    shape: str
    size: str
    count: int
    colour_ok: bool
    shape_ok: bool


def _breakdown(rows: list[_Row], key: str) -> dict:
    values = sorted({getattr(r, key) for r in rows})
    return {v: _rates([r for r in rows if getattr(r, key) == v]) for v in values}


def _rates(rows: list[_Row]) -> dict:
    n = len(rows)
    if n == 0:
        return {"n": 0, "colour": 0.0, "shape": 0.0, "both": 0.0}
    return {
        "n": n,
        "colour": sum(r.colour_ok for r in rows) / n,
        "shape": sum(r.shape_ok for r in rows) / n,
        "both": sum(r.colour_ok and r.shape_ok for r in rows) / n,
    }


def _vocabulary(aliases: Mapping[str, str]) -> tuple[set[str], dict[str, str]]:
    """Colour words, and shape word -> singular, including alias words and their plurals."""
    colours = set(COLOURS) | {new for old, new in aliases.items() if old in COLOURS}
    singular = set(SHAPES) | {new for old, new in aliases.items() if old in SHAPES}
    shapes = {word: word for word in singular}
    shapes.update({_plural(word): word for word in singular})
    return colours, shapes


def _plural(word: str) -> str:
    return word + "es" if word.endswith(("s", "x", "ch", "sh")) else word + "s"
