"""Storage commands: `capbot db upgrade|current`, `capbot models list|promote|rollback`,
`capbot feedback export|queue`, `capbot forget-user`, `capbot export-user`, `capbot sweep-images`. Each opens the configured database, does one unit of work
through storage/ functions and prints the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Column, Table
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from capbot.cli.root import app, db_app, feedback_app, models_app
from storage.errors import UserError

@dataclass(frozen=True)
class _Store:
    engine: Engine
    blob_dir: Path
    settings: Any


@contextmanager
def _open_store() -> Iterator[_Store]:
    """The configured database (migrated first when it is the embedded SQLite one) and blob directory."""
    from capbot.cli.database import open_database
    from capbot.settings import get_settings

    settings = get_settings()
    with open_database(settings.database_url) as engine:
        yield _Store(engine=engine, blob_dir=Path(settings.blob_dir or settings.data_dir / "blobs"), settings=settings)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def upgrade(revision: str = typer.Option("head", "--revision", help="Target revision (default: newest).")) -> None:
    """Create or migrate the database schema (safe to run again)."""
    from capbot.settings import get_settings
    from storage import db

    url = get_settings().database_url
    reached = db.upgrade(url, revision)
    typer.echo(f"database {_shown(url)} is at revision {reached}")


@db_app.command("current")
def current() -> None:
    """Show the schema revision of the database and the newest one this capbot knows."""
    from capbot.settings import get_settings
    from storage import db

    url = get_settings().database_url
    engine = db.create_engine_for(url)
    try:
        at = db.current_revision(engine)
    finally:
        engine.dispose()
    head = db.head_revision()
    state = "up to date" if at == head else "needs `capbot db upgrade`"
    typer.echo(f"database {_shown(url)}: revision {at or 'none'} (newest {head}; {state})")


@models_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List registered model versions, newest first; the active one serves."""
    from storage import registry
    from storage.db import session_scope

    with _open_store() as store, session_scope(store.engine) as session:
        versions = registry.list_versions(session)
    if as_json:
        typer.echo(json.dumps([_version_json(v) for v in versions], indent=2))
        return
    if not versions:
        typer.echo("no model versions registered; the configured base model serves")
        return
    # Ids are what `models promote` takes: never wrapped or cut. Every other cell folds rather than being cut.
    id_width = max(len(v.id) for v in versions)
    table = Table(Column("id", no_wrap=True, min_width=id_width), Column("status", no_wrap=True),
                  Column("created", overflow="fold"), Column("parent", overflow="fold"),
                  Column("metrics", overflow="fold"), Column("location", overflow="fold"))
    for v in versions:
        metrics = "\n".join(_metric(name, value) for name, value in v.metrics.items())
        status = f"[bold green]{v.status}[/]" if v.status == "active" else v.status
        table.add_row(v.id, status, _when(v.created_at), v.parent_id or "", metrics, v.location)
    Console().print(table)


@models_app.command("promote")
def promote(version: str = typer.Argument(..., help="The version id to make active.")) -> None:
    """Make a version the active one (the previous active one is retired and can be rolled back to)."""
    from storage import registry
    from storage.db import session_scope

    with _open_store() as store, session_scope(store.engine) as session:
        before = registry.get_active(session)
        promoted = registry.promote(session, version)
    previous = f" (was {before.id})" if before and before.id != promoted.id else ""
    typer.echo(f"active model version: {promoted.id}{previous}")
    _warn_if_missing(promoted.location)


@models_app.command("rollback")
def rollback() -> None:
    """Re-activate the version that was active before the current one."""
    from storage import registry
    from storage.db import session_scope

    from training.inherited_renames import all_renames, lineage_renames

    with _open_store() as store, session_scope(store.engine) as session:
        before = registry.get_active(session)
        restored = registry.rollback(session)
        kept = all_renames(lineage_renames(session, restored.id))
    typer.echo(f"rolled back {before.id if before else 'nothing'} -> active model version: {restored.id}")
    # Retraining applies the renames of the active version's lineage, so a rollback changes them too.
    typer.echo("renames the next retraining applies to the base data: "
               + (", ".join(f"{r.old!r} -> {r.new!r}" for r in kept) or "none"))
    _warn_if_missing(restored.location)


def _count(n: int, noun: str) -> str:
    """"1 feedback row", "3 feedback rows"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _metric(name: str, value: object) -> str:
    """One metric for the table: numbers to 4 significant digits, lists (renames) by their length."""
    if isinstance(value, float):
        return f"{name}={value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        return f"{name}: {len(value)}"
    return f"{name}={value}"


def _warn_if_missing(location: str) -> None:
    # Only a warning: the location may live on a volume mounted where the captioner runs, not here.
    path = Path(location).expanduser()
    if path.is_absolute() and not path.exists():
        typer.echo(f"warning: {location} does not exist on this machine; the captioner must be able to load it",
                   err=True)


@feedback_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="File to write (.jsonl or .csv)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only corrections after this ISO 8601 time (UTC if no zone)."),
    since_last_run: bool = typer.Option(False, "--since-last-run", help="Only corrections since the last promoted training run started."),
    until: Optional[str] = typer.Option(None, "--until", help="Only corrections up to this ISO 8601 time."),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl or csv (default: from the file name)."),
) -> None:
    """Write the feedback retraining would use: one caption per image, agreed by its users (opted-out users and
    communities that do not consent to training excluded, copy-paste spam and corrections beyond the per-user
    cap set aside; see docs/retraining.md and docs/privacy.md)."""
    from capbot.app import screen_rules
    from capbot.settings import get_settings
    from storage import feedback, runs
    from storage.blobs import LocalBlobStore
    from storage.db import session_scope
    from storage.feedback_file import write_feedback_file
    from training.data.screen import screen_feedback

    fmt = _export_format(out, fmt)
    if since and since_last_run:
        raise UserError("use --since or --since-last-run, not both", reason="bad_option")
    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    with _open_store() as store, session_scope(store.engine) as session:
        if since_last_run:
            last = runs.last_promoted_run(session)
            start = last.started_at if last else None
        corrections = feedback.export_corrections(session, LocalBlobStore(store.blob_dir), since=start, until=end,
                                                  consent_default=store.settings.training_consent_default)
    screened = screen_feedback(corrections, screen_rules(store.settings))
    written = write_feedback_file(screened.rows, out, fmt)
    window = f" since {start.isoformat()}" if start else ""
    counts = screened.counts
    typer.echo(f"wrote {_count(written, 'feedback row')}{window} to {out} (from {_count(counts.corrections, 'correction')} "
               f"by {_count(counts.users, 'agreeing user')}; set aside: {counts.spam} copy-paste spam, "
               f"{counts.over_user_cap} beyond the per-user cap, {counts.outvoted} outvoted, "
               f"{_count(counts.disputed_images, 'disputed image')})")


@feedback_app.command("queue")
def queue(
    limit: int = typer.Option(20, "--limit", help="How many images to list (1-1000)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only images captioned or corrected after this ISO 8601 time (UTC if no zone)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The captioned images most worth a human look: low confidence first, disputed ones higher still.

    Score = (1 - confidence) + disagreement between the caption and users' corrections (storage.queue).
    """
    from capbot.settings import get_settings
    from storage.blobs import LocalBlobStore
    from storage.db import session_scope
    from storage.queue import MAX_LIMIT, review_queue

    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"--limit must be between 1 and {MAX_LIMIT}, got {limit}", reason="bad_limit")
    start = _parse_time(since, "--since")
    public_url = get_settings().public_url or None
    with _open_store() as store, session_scope(store.engine) as session:
        items = review_queue(session, LocalBlobStore(store.blob_dir), limit=limit, since=start,
                             public_url=public_url)
    if as_json:
        typer.echo(json.dumps([_queue_json(item) for item in items], indent=2))
        return
    if not items:
        typer.echo("nothing to review: no captioned images" + (f" since {start.isoformat()}" if start else ""))
        return
    table = Table("score", "confidence", "caption", "corrections", "caption id", "image")
    for item in items:
        confidence = "?" if item.confidence is None else f"{item.confidence:.2f}"
        corrected = "; ".join(item.corrections) + (f" ({item.users} users)" if item.users > 1 else "")
        if item.confirmations:
            corrected = f"{corrected} ({item.confirmations} confirmed)".strip()
        table.add_row(f"{item.score:.2f}", confidence, item.caption, corrected, str(item.caption_id),
                      item.url or str(item.image_path))
    Console(width=200).print(table)


def _queue_json(item) -> dict:  # type: ignore[no-untyped-def]
    return {"score": round(item.score, 4), "uncertainty": round(item.uncertainty, 4),
            "disagreement": round(item.disagreement, 4), "image_sha256": item.image_sha256,
            "image_path": str(item.image_path), "url": item.url, "caption_id": item.caption_id,
            "caption": item.caption, "confidence": item.confidence, "model_version": item.model_version,
            "corrections": list(item.corrections), "confirmations": item.confirmations, "users": item.users,
            "platform": item.platform,
            "channel_id": item.channel_id,
            "captioned_at": item.captioned_at.isoformat() if item.captioned_at else None}


@app.command("forget-user")
def forget_user(
    user_id: str = typer.Argument(..., help="The platform user id (Slack U..., Discord snowflake)."),
    platform: Optional[str] = typer.Option(None, "--platform", help="discord, slack, web or cli (default: all)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a user's corrections, captions and the images no one else uses (blobs included)."""
    from storage import forget
    from storage.blobs import LocalBlobStore
    from storage.db import session_scope

    where = f" on {platform}" if platform else " on every platform"
    if not yes and not _confirm(f"Delete everything stored about user {user_id}{where}?"):
        raise UserError("nothing deleted (not confirmed; pass --yes to skip the question)", reason="not_confirmed")
    with _open_store() as store, session_scope(store.engine) as session:
        result = forget.forget_user(session, LocalBlobStore(store.blob_dir), user_id=user_id, platform=platform)
    typer.echo(
        f"forgot user {user_id}{where}: {result.corrections} corrections, {result.captions} captions, "
        f"{result.images} images ({result.blobs} blobs) deleted"
    )


@app.command("export-user")
def export_user(
    user_id: str = typer.Argument(..., help="The platform user id (Slack U..., Discord snowflake, web key:/ip:)."),
    platform: Optional[str] = typer.Option(None, "--platform", help="discord, slack, web or cli (default: all)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Zip file to write (default: capbot-data-[PLATFORM-]USER.zip here)."),
) -> None:
    """Write everything stored about a user (captions, corrections, confirmations and the image files still
    kept) to one zip file, as `/caption mydata` sends it (docs/privacy.md)."""
    from storage.blobs import LocalBlobStore
    from storage.db import session_scope
    from storage.userdata import archive_name, write_user_archive

    target = out or Path(archive_name(user_id, platform))
    if target.exists() and target.is_dir():
        raise UserError(f"--out {target} is a directory; name a .zip file", reason="bad_out")
    partial = target.with_name(target.name + ".part")
    try:
        with _open_store() as store, session_scope(store.engine) as session, partial.open("wb") as handle:
            summary = write_user_archive(session, LocalBlobStore(store.blob_dir), handle, user_id=user_id,
                                         platform=platform)
        partial.replace(target)  # never a half-written archive under the real name
    finally:
        partial.unlink(missing_ok=True)
    gone = f" ({summary.images_gone} no longer kept)" if summary.images_gone else ""
    typer.echo(f"wrote {target}: {_count(summary.captions, 'caption')}, {_count(summary.corrections, 'correction')}, "
               f"{_count(summary.images, 'image file')}{gone}")


@app.command("sweep-images")
def sweep_images(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
) -> None:
    """Remove the image files past their retention now, as the schedule does (CAPBOT_IMAGE_RETENTION_DAYS and
    each community's /caption retention; corrected images, open reviews and running retraining are kept)."""
    from capbot.app import sweep_images as sweep
    from storage.blobs import LocalBlobStore

    with _open_store() as store:
        result = sweep(store.settings, store.engine, LocalBlobStore(store.blob_dir), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {_count(result.removed, 'image file')}; kept past retention: {result.kept_for_review} "
               f"in open reviews, {result.kept_for_training} for the retraining run in progress")


def _confirm(question: str) -> bool:
    try:
        return typer.confirm(question)
    except typer.Abort:  # no terminal to answer (EOF) or Ctrl-C
        return False


def _export_format(out: Path, fmt: str | None) -> str:
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in ("jsonl", "csv"):
        raise UserError(f"cannot tell the export format of {out.name!r}; use --format jsonl or csv",
                        reason="bad_format")
    return fmt


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    from storage.clock import as_utc

    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise UserError(f"{option} {value!r} is not an ISO 8601 time like 2026-01-31T12:00:00",
                        reason="bad_time") from None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _version_json(v) -> dict:  # type: ignore[no-untyped-def]
    return {"id": v.id, "status": v.status, "location": v.location, "parent_id": v.parent_id,
            "metrics": v.metrics, "created_at": v.created_at.isoformat() if v.created_at else None,
            "activated_at": v.activated_at.isoformat() if v.activated_at else None}
