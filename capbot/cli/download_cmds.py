"""`capbot data coco` and `capbot data redcaps`: download public captioning datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from capbot.cli.root import data_app
from storage.errors import UserError


@data_app.command("coco")
def coco(
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: CAPBOT_DATA_DIR/datasets/coco)."),
    parts: str = typer.Option("train2017,val2017,annotations", "--parts",
                              help="Comma-separated parts: train2017, val2017, annotations."),
    base_url: Optional[list[str]] = typer.Option(None, "--base-url",
                                                 help="Mirror to download from; repeat to try several in order "
                                                      "(default: http://images.cocodataset.org)."),
    keep_archives: bool = typer.Option(True, "--keep-archives/--delete-archives",
                                       help="Keep the zip files after extracting them."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds to wait for the server to answer or send."),
    retries: int = typer.Option(5, "--retries", min=0, help="Retries after failures that made no progress."),
) -> None:
    """Download and extract COCO 2017 images and caption annotations (resumes; skips what is complete)."""
    from training.data.coco_download import OFFICIAL_BASE_URL, download_coco

    root = out or _default_dir("coco")
    result = download_coco(
        root, parts=_split_list(parts), base_urls=tuple(base_url or (OFFICIAL_BASE_URL,)),
        keep_archives=keep_archives, timeout=timeout, retries=retries,
    )
    for part in result.parts:
        state = "already complete" if part.skipped else f"downloaded {part.downloaded_bytes} bytes"
        typer.echo(f"{part.name}: {state}, {part.files} files")
    typer.echo(f"COCO 2017 is in {result.root}")


@data_app.command("redcaps")
def redcaps(
    annotations: Optional[list[Path]] = typer.Option(None, "--annotations",
                                                     help="An official RedCaps annotation JSON file or a directory "
                                                          "of them; repeat for several."),
    hub: Optional[str] = typer.Option(None, "--hub", help="Read annotations from this Hugging Face dataset repo instead."),
    hub_split: str = typer.Option("train", "--hub-split", help="Split of the --hub dataset to read."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: CAPBOT_DATA_DIR/datasets/redcaps)."),
    workers: int = typer.Option(16, "--workers", min=1, max=256, help="Parallel downloads."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for each image server."),
    retries: int = typer.Option(2, "--retries", min=0, max=10, help="Retries after a timeout or dropped connection."),
    max_bytes: Optional[int] = typer.Option(None, "--max-bytes", min=1,
                                            help="Largest image file accepted (default: CAPBOT_MAX_IMAGE_BYTES)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/val/test shuffle."),
    ratios: str = typer.Option("0.7,0.1,0.2", "--ratios", help="train,val,test shares of the annotations."),
    subset: str = typer.Option("3500,500,1000", "--subset", help="Images to keep per split (train,val,test), or 'all'."),
) -> None:
    """Download RedCaps images, split them by ratio with a seed, and save a subset (datasets + COCO JSON)."""
    from capbot.settings import get_settings
    from training.data.image_fetch import FetchOptions
    from training.data.redcaps import build_redcaps, load_annotation_files, load_hub_records

    if bool(annotations) == bool(hub):
        raise UserError("give either --annotations FILE_OR_DIR or --hub NAME", reason="bad_arguments")
    shares = _numbers(ratios, float, "--ratios")
    counts = None if subset.strip().lower() == "all" else _numbers(subset, int, "--subset")
    options = FetchOptions(timeout=timeout, retries=retries, max_bytes=max_bytes or get_settings().max_image_bytes)
    records = load_annotation_files(annotations) if annotations else load_hub_records(hub, split=hub_split)
    build = build_redcaps(records, out or _default_dir("redcaps"), ratios=shares, counts=counts, seed=seed,
                          workers=workers, options=options)
    typer.echo(f"{len(records)} annotations, {build.attempted} images tried")
    typer.echo("saved " + ", ".join(f"{name} {n}" for name, n in build.counts.items()) + f" images to {build.out_dir}")
    if build.failures:
        typer.echo("failed downloads: " + ", ".join(f"{kind} {n}" for kind, n in sorted(build.failures.items())))
    for name, missing in build.shortfall.items():
        typer.echo(f"warning: {name} has {missing} fewer images than asked for (not enough downloadable annotations)")


def _default_dir(name: str) -> Path:
    from capbot.settings import get_settings

    return get_settings().data_dir / "datasets" / name


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _numbers(text: str, kind: type, option: str) -> list:
    try:
        return [kind(item) for item in _split_list(text)]
    except ValueError:
        raise UserError(f"{option} takes comma-separated numbers, got {text!r}", reason="bad_arguments") from None
