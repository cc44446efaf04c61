"""`capbot models init | import`: build a new model directory, or register a ready-made one (list/promote/rollback
live in db_cmds)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from capbot.cli.root import models_app


@models_app.command("init")
def init(
    out: Path = typer.Option(..., "--out", help="New model directory to write (must not exist or be empty)."),
    preset: str = typer.Option("tiny", "--preset", help="Architecture for parts without a checkpoint: tiny (tests, demos) or base (ViT-B/16 + GPT-2 124M)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="ViT encoder checkpoint (hub id or directory) instead of random weights."),
    decoder: Optional[str] = typer.Option(None, "--decoder", help="GPT-2 decoder checkpoint (hub id or directory); cross-attention is added."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer (hub id or directory). (default: the decoder's, else a new BPE tokenizer)"),
    captions: Optional[Path] = typer.Option(None, "--captions", help="Caption text for a new tokenizer: one per line, or a COCO captions JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random weights."),
) -> None:
    """Build a new, untrained captioning model and save it as a self-describing model directory."""
    from inference.model_init import init_model, read_captions

    texts = read_captions(captions) if captions else None
    console = Console(stderr=True)
    with console.status("building model") as status:
        meta = init_model(
            out, preset=preset, encoder=encoder, decoder=decoder, tokenizer=tokenizer, captions=texts, seed=seed,
            progress=lambda step: status.update(step),
        )
    params = meta.extra.get("num_parameters", 0)
    typer.echo(f"created model {meta.version} in {out} ({params / 1e6:.1f}M parameters)")


@models_app.command("import")
def import_(
    source: str = typer.Argument(..., help="Hub id (e.g. nlpconnect/vit-gpt2-image-captioning) or a model directory saved by transformers."),
    activate: bool = typer.Option(False, "--activate", help="Also make it the active version (what serving uses)."),
) -> None:
    """Copy a ready-made captioning model into CAPBOT_DATA_DIR/models as a new version and register it."""
    from capbot.cli.database import open_database
    from capbot.settings import get_settings
    from inference.model_import import import_model
    from storage import registry
    from storage.db import session_scope

    settings = get_settings()
    with open_database(settings.database_url) as engine:
        with Console(stderr=True).status(f"importing {source}"):
            out = import_model(source, settings.models_dir)
        with session_scope(engine) as session:
            registry.register_version(session, version_id=out.name, location=str(out))
            if activate:
                registry.promote(session, out.name)
    state = "active" if activate else f"a candidate; serve it with `capbot models promote {out.name}`"
    typer.echo(f"imported {source} as version {out.name} in {out} ({state})")
