"""A deterministic synthetic captioning dataset of simple scenes, written in the COCO captions format.

Each image shows a *main* group (one, two or three identical shapes of one colour and size in one region)
on a plain or lightly textured background, sometimes with one small distractor shape on the opposite side.
Five reference captions per image, drawn from varied templates, always describe the main group first, so
the colour and shape a model should name are the ones of the largest / most numerous thing in the picture.

Layout (the same loader reads this and real COCO 2017):
    <out>/<split>/<split>_000000.png
    <out>/annotations/captions_<split>.json   COCO captions: images, annotations, info, licenses
    <out>/annotations/scenes_<split>.json     ground truth: every image's objects (main first)

Every image comes from its own RNG seeded by (seed, split, index), so the same seed gives byte-identical
files, and an image does not change when the size of another split changes.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from storage.errors import UserError

SPLITS = ("train", "val", "test")
# Image ids are unique across splits (as in COCO) and stable when another split grows.
SPLIT_ID_BASE = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 215, 40),
    "purple": (140, 55, 185),
    "orange": (250, 140, 25),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "centre")
# Background colour names never overlap object colour names, so a caption's first colour word is an object's.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "grey": (190, 190, 190),
    "dark grey": (70, 70, 70),
    "black": (18, 18, 18),
}
TEXTURES = ("plain", "noise", "gradient")  # no stripes or checks: their straight edges read as shapes

# Shapes are as big as the frame allows: a 64 px image seen in 8 px patches must show each outline clearly.
RADIUS = {"small": 0.15, "large": 0.28}  # fraction of the image side
GROUP_RADIUS = 0.135  # two or three small shapes in a row
MARGIN = 0.05  # between a shape at the left/right/top/bottom and the image border
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
DISTRACTOR_PROBABILITY = 0.25
SUPERSAMPLE = 4  # draw at 4x and downscale: smooth edges without depending on an anti-aliasing renderer
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars"}
COUNT_WORDS = {2: "two", 3: "three"}
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
POSITION_PHRASES = {
    "left": ("on the left", "on the left side", "to the left"),
    "right": ("on the right", "on the right side", "to the right"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "centre": ("in the centre", "in the middle"),
}


@dataclass(frozen=True)
class SceneObject:
    """A group of `count` identical shapes; `boxes` are their pixel bounding boxes (x0, y0, x1, y1)."""

    colour: str
    shape: str
    size: str
    position: str
    count: int
    boxes: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class Scene:
    """The ground truth of one image: objects in caption order (the main group first)."""

    image_id: int
    file_name: str
    background: str
    texture: str
    objects: tuple[SceneObject, ...]

    @property
    def main(self) -> SceneObject:
        """The group every reference caption describes first."""
        return self.objects[0]


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_synthetic` wrote."""

    out_dir: Path
    seed: int
    image_size: int
    images: dict[str, int] = field(default_factory=dict)  # split -> number of images
    captions: dict[str, int] = field(default_factory=dict)  # split -> number of reference captions

    def annotations(self, split: str) -> Path:
        """Path of the COCO captions file of `split`."""
        return self.out_dir / "annotations" / f"captions_{split}.json"


def generate_synthetic(
    out_dir: str | Path,
    *,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int = 0,
    image_size: int = 64,
    colours: Sequence[str] = tuple(COLOURS),
    shapes: Sequence[str] = SHAPES,
    captions_per_image: int = 5,
    progress: Callable[[int], None] | None = None,
) -> SyntheticSummary:
    """Write the train/val/test splits under `out_dir`; `progress(n)` is called after each n images."""
    out = Path(out_dir)
    _validate(out, (n_train, n_val, n_test), image_size, colours, shapes, captions_per_image)
    config = _Config(image_size, tuple(colours), tuple(shapes), captions_per_image)
    summary = SyntheticSummary(out_dir=out, seed=seed, image_size=image_size)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count in zip(SPLITS, (n_train, n_val, n_test)):
        scenes, captions = _write_split(out, split, count, seed, config, progress)
        _write_json(out / "annotations" / f"captions_{split}.json", _coco_json(split, scenes, captions, seed, config))
        _write_json(out / "annotations" / f"scenes_{split}.json", _scenes_json(split, scenes, seed))
        summary.images[split] = len(scenes)
        summary.captions[split] = sum(len(c) for c in captions)
    return summary


def load_scenes(dataset_dir: str | Path, split: str) -> dict[int, Scene]:
    """Read `<dataset_dir>/annotations/scenes_<split>.json` into `{image_id: Scene}`."""
    path = Path(dataset_dir) / "annotations" / f"scenes_{split}.json"
    if not path.is_file():
        raise UserError(f"no scene ground truth at {path} (only synthetic datasets have one)", reason="no_scenes")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {s["image_id"]: _scene_from_json(s) for s in raw["scenes"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a valid scenes file: {exc}", reason="invalid_scenes") from exc


def describe(obj: SceneObject, rng: random.Random) -> str:
    """A noun phrase for a group, e.g. 'two small blue squares' or 'a big red circle'."""
    size = rng.choice(SIZE_WORDS[obj.size])
    return f"{_determiner(obj.count, rng)} {size} {obj.colour} {_noun(obj)}"


# --- scene sampling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    image_size: int
    colours: tuple[str, ...]
    shapes: tuple[str, ...]
    captions_per_image: int


def _validate(out: Path, counts: Sequence[int], image_size: int, colours, shapes, captions_per_image: int) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory", reason="bad_output")
    if any(n < 0 for n in counts) or sum(counts) == 0:
        raise UserError("split sizes must be >= 0 and at least one image in total", reason="bad_sizes")
    if not 32 <= image_size <= 1024:
        raise UserError(f"image size must be between 32 and 1024 pixels, got {image_size}", reason="bad_size")
    unknown = [c for c in colours if c not in COLOURS] + [s for s in shapes if s not in SHAPES]
    if unknown or len(colours) < 2 or len(shapes) < 2:
        raise UserError(
            f"choose at least two of colours {list(COLOURS)} and shapes {list(SHAPES)}; unknown: {unknown}",
            reason="bad_concepts",
        )
    if not 1 <= captions_per_image <= 10:
        raise UserError("captions per image must be between 1 and 10", reason="bad_captions")


def _rng(seed: int, split: str, index: int) -> random.Random:
    # String seeds hash with SHA-512 inside `random`, independent of PYTHONHASHSEED.
    return random.Random(f"capbot-synthetic/{seed}/{split}/{index}")


def _sample_scene(rng: random.Random, image_id: int, file_name: str, config: _Config) -> Scene:
    count = rng.choice((1, 1, 2, 3))  # single objects most often: they carry size and position best
    size = rng.choice(SIZES) if count == 1 else "small"  # two or three large shapes do not fit side by side
    position = rng.choice(POSITIONS)
    main = SceneObject(rng.choice(config.colours), rng.choice(config.shapes), size, position, count)
    objects = [main]
    # A distractor is always a single small shape on the opposite side, and only when the main group is
    # clearly bigger (large, or several), so "the main object" is well defined from the pixels.
    if position in OPPOSITE and (size == "large" or count > 1) and rng.random() < DISTRACTOR_PROBABILITY:
        colour = rng.choice([c for c in config.colours if c != main.colour])
        shape = rng.choice([s for s in config.shapes if s != main.shape])
        objects.append(SceneObject(colour, shape, "small", OPPOSITE[position], 1))
    background = rng.choice(tuple(BACKGROUNDS))
    texture = rng.choice(TEXTURES)
    placed = tuple(_place(o, rng, config.image_size) for o in objects)
    return Scene(image_id, file_name, background, texture, placed)


def _place(obj: SceneObject, rng: random.Random, size_px: int) -> SceneObject:
    """Give each shape of a group its bounding box: in a row (top/bottom/centre) or column (left/right)."""
    r = GROUP_RADIUS if obj.count > 1 else RADIUS[obj.size]
    edge = {"left": MARGIN + r, "right": 1 - MARGIN - r, "top": MARGIN + r, "bottom": 1 - MARGIN - r}.get(obj.position, 0.5)
    cx = edge if obj.position in ("left", "right") else 0.5
    cy = edge if obj.position in ("top", "bottom") else 0.5
    jitter = 0.02
    cx, cy = (cx + rng.uniform(-jitter, jitter)) * size_px, (cy + rng.uniform(-jitter, jitter)) * size_px
    radius = r * size_px
    step = 2.2 * radius
    offsets = [(i - (obj.count - 1) / 2) * step for i in range(obj.count)]
    vertical = obj.position in ("left", "right")
    centres = [(cx, cy + o) if vertical else (cx + o, cy) for o in offsets]
    boxes = tuple((round(x - radius), round(y - radius), round(x + radius), round(y + radius)) for x, y in centres)
    return SceneObject(obj.colour, obj.shape, obj.size, obj.position, obj.count, boxes)


# --- drawing ------------------------------------------------------------------------------------------


def _render(scene: Scene, rng: random.Random, size_px: int) -> Image.Image:
    big = size_px * SUPERSAMPLE
    image = Image.new("RGB", (big, big), _jitter(BACKGROUNDS[scene.background], rng, 6))
    draw = ImageDraw.Draw(image)
    _draw_texture(draw, scene, big)
    for obj in scene.objects:
        fill = _jitter(COLOURS[obj.colour], rng, 12)
        for box in obj.boxes:
            _draw_shape(draw, obj.shape, tuple(v * SUPERSAMPLE for v in box), fill, rng)
    image = image.resize((size_px, size_px), Image.Resampling.BOX)
    if scene.texture == "noise":
        image = _add_noise(image, rng)
    return image


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(min(255, max(0, v + rng.randint(-amount, amount))) for v in rgb)  # type: ignore[return-value]


def _draw_texture(draw: ImageDraw.ImageDraw, scene: Scene, big: int) -> None:
    """A soft vertical brightness ramp: the background varies without edges that look like a shape's."""
    if scene.texture != "gradient":
        return
    base = BACKGROUNDS[scene.background]
    sign = 1 if sum(base) < 384 else -1  # lighten dark backgrounds, darken light ones
    for y in range(big):
        shift = sign * round(30 * y / big)
        draw.line((0, y, big, y), fill=tuple(v + shift for v in base))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box, fill, rng: random.Random) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.polygon(_regular(cx, cy, r * 1.15, 4, math.pi / 4 + rng.uniform(-0.15, 0.15)), fill=fill)
    elif shape == "triangle":
        draw.polygon(_regular(cx, cy + r * 0.12, r * 1.12, 3, -math.pi / 2 + rng.uniform(-0.1, 0.1)), fill=fill)
    elif shape == "star":
        outer = _regular(cx, cy, r * 1.1, 5, -math.pi / 2)
        inner = _regular(cx, cy, r * 0.45, 5, -math.pi / 2 + math.pi / 5)
        draw.polygon([p for pair in zip(outer, inner) for p in pair], fill=fill)
    else:  # pragma: no cover - guarded by _validate
        raise ValueError(shape)


def _regular(cx: float, cy: float, r: float, n: int, start: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(start + 2 * math.pi * k / n), cy + r * math.sin(start + 2 * math.pi * k / n)) for k in range(n)]


def _add_noise(image: Image.Image, rng: random.Random) -> Image.Image:
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0, 8, (image.height, image.width, 1))
    pixels = np.asarray(image, dtype=np.float32) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# --- captions -----------------------------------------------------------------------------------------


def _determiner(count: int, rng: random.Random) -> str:
    return rng.choice(("a", "a", "one")) if count == 1 else COUNT_WORDS[count]


def _noun(obj: SceneObject) -> str:
    return obj.shape if obj.count == 1 else PLURALS[obj.shape]


def _captions(scene: Scene, rng: random.Random, n: int) -> list[str]:
    """`n` distinct captions, each naming the main group's colour and shape before anything else."""
    main = scene.main
    pos = lambda: rng.choice(POSITION_PHRASES[main.position])  # noqa: E731 - a fresh phrase per template
    det = lambda: _determiner(main.count, rng)  # noqa: E731
    size = lambda: rng.choice(SIZE_WORDS[main.size])  # noqa: E731
    noun, colour = _noun(main), main.colour
    be = "is" if main.count == 1 else "are"
    templates = [
        lambda: f"{describe(main, rng)} {pos()}",
        lambda: f"{det()} {colour} {noun} {pos()}",
        lambda: f"there {be} {describe(main, rng)} {pos()}",
        lambda: f"{describe(main, rng)} on a {scene.background} background",
        lambda: f"{det()} {colour} {noun}",
        lambda: f"{det()} {size()} {colour} {noun}",
        lambda: f"a picture of {det()} {colour} {noun} {pos()}",
        lambda: f"{det()} {colour} {noun} {pos()} of the image",
    ]
    if len(scene.objects) > 1:
        other = scene.objects[1]
        templates += [
            lambda: f"{describe(main, rng)} and {describe(other, rng)}",
            lambda: f"{det()} {colour} {noun} {pos()} and {describe(other, rng)} opposite",
        ]
    order = rng.sample(range(len(templates)), len(templates))
    captions: list[str] = []
    for i in order:
        text = templates[i]()
        if text not in captions:
            captions.append(text)
        if len(captions) == n:
            break
    while len(captions) < n:  # only when n exceeds the distinct templates
        captions.append(templates[order[len(captions) % len(order)]]())
    return captions


# --- files --------------------------------------------------------------------------------------------


def _write_split(out: Path, split: str, count: int, seed: int, config: _Config, progress):
    image_dir = out / split
    image_dir.mkdir(parents=True, exist_ok=True)
    for stale in image_dir.glob(f"{split}_*.png"):  # a previous, larger run must not leave extra images
        stale.unlink()
    scenes, captions = [], []
    for index in range(count):
        rng = _rng(seed, split, index)
        file_name = f"{split}_{index:06d}.png"
        scene = _sample_scene(rng, SPLIT_ID_BASE[split] + index, file_name, config)
        _render(scene, rng, config.image_size).save(image_dir / file_name, format="PNG", optimize=False)
        scenes.append(scene)
        captions.append(_captions(scene, rng, config.captions_per_image))
        if progress is not None:
            progress(1)
    return scenes, captions


def _coco_json(split: str, scenes: list[Scene], captions: list[list[str]], seed: int, config: _Config) -> dict:
    images = [
        {"id": s.image_id, "file_name": s.file_name, "width": config.image_size, "height": config.image_size}
        for s in scenes
    ]
    annotations, ann_id = [], SPLIT_ID_BASE[split]
    for scene, texts in zip(scenes, captions):
        for text in texts:
            annotations.append({"id": ann_id, "image_id": scene.image_id, "caption": text})
            ann_id += 1
    info = {
        "description": f"capbot synthetic shapes, split {split}",
        "version": "1",
        "seed": seed,
        "image_size": config.image_size,
        "colours": list(config.colours),
        "shapes": list(config.shapes),
    }
    licenses = [{"id": 1, "name": "CC0 1.0 (generated)", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}]
    return {"info": info, "licenses": licenses, "images": images, "annotations": annotations}


def _scenes_json(split: str, scenes: list[Scene], seed: int) -> dict:
    return {"split": split, "seed": seed, "scenes": [asdict(s) for s in scenes]}


def _scene_from_json(raw: dict) -> Scene:
    objects = tuple(
        SceneObject(o["colour"], o["shape"], o["size"], o["position"], int(o["count"]), tuple(tuple(b) for b in o["boxes"]))
        for o in raw["objects"]
    )
    return Scene(int(raw["image_id"]), raw["file_name"], raw["background"], raw["texture"], objects)


def _write_json(path: Path, payload: dict) -> None:
    # Fixed key order and separators: the same seed must give byte-identical files.
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
