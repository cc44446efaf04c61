"""`capbot evaluate`: caption a COCO-format split with a model and print COCO metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from capbot.cli.root import app


@app.command("evaluate")
def evaluate(
    data: Path = typer.Option(..., "--data", help="Dataset directory (synthetic, COCO 2017 or with dataset_coco.json)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model directory or hub id (default: CAPBOT_MODEL)."),
    split: str = typer.Option("test", "--split", help="Split to score: train, val, test (or val2017 ...)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N images."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per batch (default: CAPBOT_BATCH_SIZE)."),
    beams: Optional[int] = typer.Option(None, "--beams", min=1, help="Beam width; 1 = greedy (default: CAPBOT_NUM_BEAMS)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="Longest caption in tokens."),
    meteor: bool = typer.Option(True, "--meteor/--no-meteor", help="Compute METEOR (starts a Java VM, ~9 s)."),
    spice: bool = typer.Option(False, "--spice", help="Also compute SPICE (needs Stanford CoreNLP; skipped with a reason otherwise)."),
    predictions_out: Optional[Path] = typer.Option(None, "--predictions", help="Write captions as COCO results JSON here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Score a model on a split with BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap).

    By default the captions scored are the ones the server gives (the same captioner spec, as the retraining
    gate scores them)."""
    from dataclasses import replace

    from capbot.captioning import captioner_spec, configured_captioner
    from capbot.settings import get_settings
    from training.data.coco import load_split
    from training.evaluate import evaluate_model

    settings = get_settings()
    dataset = load_split(data, split)
    if limit is not None:
        dataset = dataset.subset(limit)
    spec = captioner_spec(settings).scoring().with_choices(beams=beams, max_new_tokens=max_new_tokens)
    spec = replace(spec, batch_size=batch_size or spec.batch_size)
    console = Console(stderr=True)
    with console.status("loading model"):
        captioner = configured_captioner(settings, spec, model)
    columns = (TextColumn("captioning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("images", total=len(dataset))
            report = evaluate_model(
                captioner, dataset, batch_size=spec.batch_size, options=spec.options, with_spice=spice, with_meteor=meteor,
                progress=lambda n: progress.advance(task, n),
            )
    finally:
        captioner.close()
    result = {
        "model": str(model or settings.model),
        "model_version": report.model_version,
        "data": str(data),
        "split": split,
        "n_images": report.metrics.n_images,
        "metrics": report.metrics.scores(),
        "skipped": report.metrics.skipped,
        "concepts": _concepts(data, split, report.predictions),
        "images_per_second": round(report.images_per_second, 3),
    }
    if predictions_out is not None:
        rows = [{"image_id": i, "caption": text} for i, text in report.predictions.items()]
        predictions_out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(result))
    else:
        Console().print(_table(result))


def _concepts(data: Path, split: str, predictions: dict[int, str]) -> dict | None:
    """Colour/shape accuracy against the scene ground truth, for synthetic datasets only."""
    if not (data / "annotations" / f"scenes_{split}.json").is_file():
        return None
    from training.concepts import concept_accuracy
    from training.data.synthetic import load_scenes

    scores = concept_accuracy(predictions, load_scenes(data, split))
    return {key: scores[key] for key in ("n", "colour", "shape", "both")}


def _table(result: dict) -> Table:
    table = Table(title=f"{result['model_version']} on {result['data']} ({result['split']}, {result['n_images']} images)")
    table.add_column("metric")
    table.add_column("score", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    for name, reason in result["skipped"].items():
        table.add_row(name, f"skipped: {reason}")
    labels = {"colour": "colour accuracy", "shape": "shape accuracy", "both": "colour+shape accuracy"}
    for name, value in (result["concepts"] or {}).items():
        if name in labels:
            table.add_row(labels[name], f"{value:.1%}")
    return table
