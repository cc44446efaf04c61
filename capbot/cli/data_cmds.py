"""`capbot data synthetic`: generate the offline shapes dataset (downloads live in download_cmds)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from capbot.cli.root import data_app


@data_app.command("synthetic")
def synthetic(
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: CAPBOT_DATA_DIR/datasets/synthetic)."),
    train: int = typer.Option(5000, "--train", min=0, help="Images in the train split."),
    val: int = typer.Option(500, "--val", min=0, help="Images in the val split."),
    test: int = typer.Option(500, "--test", min=0, help="Images in the test split."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    image_size: int = typer.Option(64, "--image-size", help="Square image side in pixels (32-1024)."),
    shapes: Optional[str] = typer.Option(
        None, "--shapes", help="Comma-separated shapes to draw, at least two of circle, square, triangle, star (default: all)."
    ),
) -> None:
    """Generate a deterministic COCO-format captioning dataset of coloured shapes (works offline)."""
    from training.data.synthetic import SHAPES, generate_synthetic

    if out is None:
        from capbot.settings import get_settings

        out = get_settings().data_dir / "datasets" / "synthetic"
    console = Console(stderr=True)
    columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("images", total=train + val + test)
        summary = generate_synthetic(
            out, n_train=train, n_val=val, n_test=test, seed=seed, image_size=image_size,
            shapes=[name.strip() for name in shapes.split(",")] if shapes else SHAPES,
            progress=lambda n: progress.advance(task, n),
        )
    counts = ", ".join(f"{split} {n}" for split, n in summary.images.items())
    typer.echo(f"wrote {summary.out_dir} ({counts} images, {sum(summary.captions.values())} captions, seed {seed})")
