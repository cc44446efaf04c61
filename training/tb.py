"""TensorBoard logging for a training run: scalars, evaluation metrics and captioned sample images.

Only the main process writes; other ranks get a `NullBoard`, so the training loop never branches on rank.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE = 256  # pixels per sample image in the grid
FONT_PX = 18  # caption text size: readable at TensorBoard's default image size
LINES_EACH = 3  # caption lines under each tile for the predicted and for the reference caption
PREDICTED, REFERENCE = (20, 20, 20), (90, 90, 90)  # the model's caption dark, the reference grey


class Board(Protocol):
    """What the training loop logs to."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...
    def samples(self, step: int, images: Sequence[Image.Image], predicted: Sequence[str], reference: Sequence[str]) -> None: ...
    def close(self) -> None: ...


class NullBoard:
    """Logs nothing (non-main ranks, or TensorBoard turned off)."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Ignore the values."""

    def samples(self, step: int, images, predicted, reference) -> None:
        """Ignore the samples."""

    def close(self) -> None:
        """Nothing to close."""


class TensorBoard:
    """A `SummaryWriter` under `logdir`: `train/loss`, `train/lr`, `train/samples_per_second`, `eval/cider` ..."""

    def __init__(self, logdir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when logging is on

        self.logdir = Path(logdir)
        self._writer = SummaryWriter(log_dir=str(self.logdir))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One point per tag, e.g. `{"train/loss": 1.2, "train/lr": 3e-4}`."""
        for tag, value in values.items():
            self._writer.add_scalar(tag, float(value), global_step=step)
        self._writer.flush()

    def samples(self, step: int, images: Sequence[Image.Image], predicted: Sequence[str], reference: Sequence[str]) -> None:
        """A grid of images, each with its predicted caption and one reference caption (also as text)."""
        grid = caption_grid(images, predicted, reference)
        self._writer.add_image("eval/samples", np.asarray(grid), global_step=step, dataformats="HWC")
        table = "\n".join(f"| {i} | {p} | {r} |" for i, (p, r) in enumerate(zip(predicted, reference)))
        self._writer.add_text("eval/captions", "| # | predicted | reference |\n|---|---|---|\n" + table, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


def caption_grid(images: Sequence[Image.Image], predicted: Sequence[str], reference: Sequence[str], *, columns: int = 4) -> Image.Image:
    """Tile images in rows of `columns`, writing 'model: predicted' and 'ref: reference' under each."""
    font = ImageFont.load_default(size=FONT_PX)  # Pillow's own scalable font (the bitmap one is ~8 px high)
    line_height = FONT_PX + 4
    cell_h = TILE + 2 * LINES_EACH * line_height + 8
    rows = max(1, -(-len(images) // columns))
    grid = Image.new("RGB", (columns * TILE, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    fits = lambda text: draw.textlength(text, font=font) <= TILE - 8  # noqa: E731
    for i, (image, pred, ref) in enumerate(zip(images, predicted, reference)):
        x, y = (i % columns) * TILE, (i // columns) * cell_h
        grid.paste(image.convert("RGB").resize((TILE, TILE)), (x, y))
        lines = [(line, PREDICTED) for line in _wrap("model: " + pred, LINES_EACH, fits)]
        lines += [(line, REFERENCE) for line in _wrap("ref: " + ref, LINES_EACH, fits)]
        for j, (line, colour) in enumerate(lines):
            draw.text((x + 4, y + TILE + 4 + j * line_height), line, fill=colour, font=font)
    return grid


def _wrap(text: str, max_lines: int, fits) -> list[str]:  # type: ignore[no-untyped-def]
    """`text` in lines that `fits(line)` accepts, at most `max_lines` (the last one ends in "..." if cut)."""
    lines, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and not fits(candidate):
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and not fits(lines[-1] + "..."):
            lines[-1] = lines[-1][:-1]
        lines[-1] += "..."
    return lines


def serve_tensorboard(logdir: str | Path, *, host: str = "127.0.0.1", port: int = 6006):
    """Start TensorBoard's web server on `logdir` in a background thread; return (url, wait_forever).

    Raises `UserError` when `logdir` does not exist (nothing has been trained there yet).
    """
    from storage.errors import UserError

    path = Path(logdir).expanduser()
    if not path.is_dir():
        raise UserError(f"no training logs at {path}; train first (`capbot train` writes them under its --run-dir) "
                        "or pass --logdir", reason="missing_logdir")
    from tensorboard import program

    # TensorBoard logs about 11 info lines every 5 s (each reload of the logdir): they would bury the URL.
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    board = program.TensorBoard()
    # --load_fast=false: the in-process Python reader. The Rust data server TensorBoard would otherwise start is
    # a child process that outlives a caller that only stops this thread (it kept logging after the tests).
    board.configure(argv=[None, "--logdir", str(path), "--host", host, "--port", str(port), "--load_fast", "false"])
    try:
        url = board.launch()
    except program.TensorBoardServerException as exc:  # e.g. the port is taken
        raise UserError(f"cannot start TensorBoard on {host}:{port}: {exc.msg}", reason="tensorboard_failed") from exc

    def wait_forever() -> None:
        import threading

        threading.Event().wait()

    return url, wait_forever
