"""`capbot caption IMAGE...`: caption image files with the configured captioner (local engine or the Modal
class, CAPBOT_CAPTIONER), one line (or JSON object) each."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from capbot.cli.root import app
from storage.errors import UserError


@app.command("caption")
def caption(
    images: list[Path] = typer.Argument(..., help="Image files to caption (JPEG, PNG, GIF, WebP, TIFF, ...)."),
    model: Optional[str] = typer.Option(None, "--model", help="Hub id or model directory (default: CAPBOT_MODEL)."),
    beams: Optional[int] = typer.Option(None, "--beams", min=1, max=16, help="1 = greedy; more = beam search (default: what the server uses, CAPBOT_NUM_BEAMS and at least CAPBOT_NUM_ALTERNATIVES + 1)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, max=128, help="Longest caption in tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per image per line."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: CAPBOT_DEVICE)."),
) -> None:
    """Caption image files. Unreadable images print `error: PATH: REASON`; the rest are still captioned.

    By default an image gets the caption the web API and the bots give it (the same captioner spec)."""
    from capbot.captioning import captioner_spec, configured_captioner
    from capbot.settings import get_settings

    settings = get_settings()
    spec = captioner_spec(settings).with_choices(beams=beams, max_new_tokens=max_new_tokens)
    console = Console(stderr=True)
    if not any(path.is_file() for path in images):
        # Nothing to caption: say so per file without first loading (or downloading) a model.
        for path in images:
            console.print(f"error: {path}: {_unreadable(path)}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(1)
    source = f"Modal app {settings.modal_app_name}" if settings.captioner == "modal" else (model or settings.model)
    with console.status(f"loading model {source}"):
        captioner = configured_captioner(settings, spec, model, device=device)
    failed = _caption_files(captioner, images, spec.options, console, as_json, spec.batch_size)
    if failed:
        raise SystemExit(1)


def _caption_files(captioner, paths: list[Path], options, console: Console, as_json: bool, batch_size: int) -> int:
    """Caption `paths` in batches, printing results in order; returns how many failed."""
    failed = 0
    columns = (TextColumn("captioning"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True, disable=len(paths) <= batch_size) as progress:
        task = progress.add_task("images", total=len(paths))
        for start in range(0, len(paths), batch_size):
            batch = paths[start:start + batch_size]
            read = {p: _read(captioner, p) for p in batch}
            good = [p for p in batch if isinstance(read[p], bytes)]
            captions = dict(zip(good, captioner.caption([read[p] for p in good], options))) if good else {}
            for path in batch:
                if path in captions:
                    _print_caption(path, captions[path], as_json)
                else:
                    failed += 1
                    console.print(f"error: {path}: {read[path]}", markup=False, highlight=False, soft_wrap=True)
            progress.advance(task, len(batch))
    return failed


def _read(captioner, path: Path) -> bytes | str:
    """The file's bytes once the intake accepts them, or the reason it cannot be captioned.

    The captioner gets the file as it is (a remote one sends it unchanged); checking here first keeps
    one bad file from failing the rest of its batch."""
    from inference.images import load_image

    try:
        data = path.read_bytes()
    except IsADirectoryError:
        return "is a directory"
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        load_image(data, max_bytes=captioner.max_image_bytes, max_pixels=captioner.max_image_pixels)
    except UserError as exc:
        return exc.message
    return data


def _unreadable(path: Path) -> str:
    """Why `path` (not a regular file) cannot be read as an image."""
    if path.is_dir():
        return "is a directory"
    return "no such file" if not path.exists() else "not a regular file"


def _print_caption(path: Path, cap, as_json: bool) -> None:
    if as_json:
        record = {"path": str(path), "caption": cap.text, "model_version": cap.model_version,
                  "timings_ms": {k: round(v, 2) for k, v in cap.timings_ms.items()}}
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(f"{path}: {cap.text}\n")
    sys.stdout.flush()
