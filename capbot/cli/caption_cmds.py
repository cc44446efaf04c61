"""`capbot caption IMAGE...`: caption image files with the configured captioner (local engine or the Modal
class, CAPBOT_CAPTIONER), one line (or JSON object) each; exit status 2 when a file cannot be captioned."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from capbot.cli.root import app
from storage.errors import UserError


# Exit status when a file could not be captioned (the others still are): a user error, as everywhere in the CLI.
USER_ERROR = 2


@dataclass(frozen=True)
class Unreadable:
    """Why a file cannot be captioned: a stable code and a sentence."""

    code: str
    message: str


@app.command("caption")
def caption(
    images: list[Path] = typer.Argument(..., metavar="IMAGE...", help="Image files to caption (JPEG, PNG, GIF, WebP, "
                                        "TIFF, ...)."),
    model: Optional[str] = typer.Option(None, "--model", help="Hub id or model directory (default: CAPBOT_MODEL)."),
    beams: Optional[int] = typer.Option(None, "--beams", min=1, max=16, help="1 = greedy; more = beam search (default: what the server uses: CAPBOT_NUM_BEAMS, and at least CAPBOT_NUM_ALTERNATIVES + 1)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, max=128, help="Longest caption in tokens (default: CAPBOT_MAX_NEW_TOKENS)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line on stdout for each image, in "
                                 "order: its caption and confidence, or its error."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: CAPBOT_DEVICE)."),
) -> None:
    """Caption image files. By default an image gets the caption the web API and the bots give it (the same
    captioner spec). A file that cannot be captioned prints `error: PATH: REASON` (with --json, a JSON line with
    its error) and the command exits 2; the other files are still captioned."""
    from capbot.captioning import captioner_spec, configured_captioner
    from capbot.settings import get_settings

    settings = get_settings()
    spec = captioner_spec(settings).with_choices(beams=beams, max_new_tokens=max_new_tokens)
    console = Console(stderr=True)
    out = Output(console, as_json)
    if not any(path.is_file() for path in images):
        # Nothing to caption: say so per file without first loading (or downloading) a model.
        for path in images:
            out.error(path, _unreadable(path))
        raise SystemExit(USER_ERROR)
    source = f"Modal app {settings.modal_app_name}" if settings.captioner == "modal" else (model or settings.model)
    try:
        with console.status(f"loading model {source}"):
            captioner = configured_captioner(settings, spec, model, device=device)
    except UserError as exc:
        out.failure(exc)  # with --json, scripts read why on stdout too; main() prints it on stderr
        raise
    failed = _caption_files(captioner, images, spec.options, out, spec.batch_size)
    if failed:
        raise SystemExit(USER_ERROR)


class Output:
    """Where results and per-file errors go: text lines (errors on stderr) or JSON lines on stdout."""

    def __init__(self, console: Console, as_json: bool) -> None:
        self.console, self.as_json = console, as_json

    def caption(self, path: Path, cap) -> None:  # type: ignore[no-untyped-def]
        """One captioned file."""
        if self.as_json:
            self._json({"path": str(path), "caption": cap.text, "confidence": _rounded(cap.confidence),
                        "alternatives": list(cap.alternatives), "model_version": cap.model_version,
                        "timings_ms": {k: round(v, 2) for k, v in cap.timings_ms.items()}})
        else:
            sys.stdout.write(f"{path}: {cap.text}\n")
            sys.stdout.flush()

    def error(self, path: Path, why: Unreadable) -> None:
        """One file that cannot be captioned."""
        if self.as_json:
            self._json({"path": str(path), "error": {"code": why.code, "message": why.message}})
        else:
            self.console.print(f"error: {path}: {why.message}", markup=False, highlight=False, soft_wrap=True)

    def failure(self, exc: UserError) -> None:
        """The command as a whole failed (e.g. the model does not load)."""
        if self.as_json:
            self._json({"error": {"code": exc.reason or "error", "message": exc.message}})

    def _json(self, record: dict) -> None:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def _caption_files(captioner, paths: list[Path], options, out: Output, batch_size: int) -> int:
    """Caption `paths` in batches, printing results in order; returns how many failed."""
    failed = 0
    columns = (TextColumn("captioning"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=out.console, transient=True, disable=len(paths) <= batch_size) as progress:
        task = progress.add_task("images", total=len(paths))
        for start in range(0, len(paths), batch_size):
            batch = paths[start:start + batch_size]
            read = {p: _read(captioner, p) for p in batch}
            good = [p for p in batch if isinstance(read[p], bytes)]
            captions = dict(zip(good, captioner.caption([read[p] for p in good], options))) if good else {}
            for path in batch:
                if path in captions:
                    out.caption(path, captions[path])
                else:
                    failed += 1
                    out.error(path, read[path])
            progress.advance(task, len(batch))
    return failed


def _read(captioner, path: Path) -> bytes | Unreadable:
    """The file's bytes once the intake accepts them, or why it cannot be captioned.

    The captioner gets the file as it is (a remote one sends it unchanged); checking here first keeps
    one bad file from failing the rest of its batch."""
    from inference.images import load_image

    try:
        data = path.read_bytes()
    except IsADirectoryError:
        return Unreadable("is_a_directory", "is a directory")
    except FileNotFoundError:
        return Unreadable("no_such_file", "no such file")
    except OSError as exc:
        return Unreadable("unreadable", exc.strerror or str(exc))
    try:
        load_image(data, max_bytes=captioner.max_image_bytes, max_pixels=captioner.max_image_pixels)
    except UserError as exc:
        return Unreadable(exc.reason or "not_image", exc.message)
    return data


def _unreadable(path: Path) -> Unreadable:
    """Why `path` (not a regular file) cannot be read as an image."""
    if path.is_dir():
        return Unreadable("is_a_directory", "is a directory")
    if not path.exists():
        return Unreadable("no_such_file", "no such file")
    return Unreadable("not_a_file", "not a regular file")


def _rounded(confidence: float | None) -> float | None:
    return None if confidence is None else round(confidence, 4)
