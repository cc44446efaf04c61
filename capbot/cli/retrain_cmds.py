"""`capbot retrain`: one retraining run from the configured database, blob store and base dataset.

`retrain_from_settings` is the one place Settings become a `RetrainConfig`; the embedded schedule
(`capbot run`) calls it too, so a scheduled run and a manual one behave the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from capbot.cli.root import app


def retrain_config_from_settings(settings: Any, engine: Any, *, no_renames: bool = False, **overrides: Any):
    """A `RetrainConfig` from Settings, with CLI overrides (None means "use the setting")."""
    from storage.blobs import LocalBlobStore
    from training.retrain import RetrainConfig

    values: dict[str, Any] = dict(
        engine=engine,
        blobs=LocalBlobStore(settings.blob_dir or settings.data_dir / "blobs"),
        models_dir=settings.models_dir,
        runs_dir=settings.runs_dir,
        base_model=settings.model,
        base_data=settings.retrain_base_data,
        min_feedback=settings.retrain_min_feedback,
        feedback_fraction=settings.retrain_feedback_fraction,
        cider_tolerance=settings.retrain_cider_tolerance,
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    if no_renames:
        values["rename_rules"] = None
    return RetrainConfig(**values)


def retrain_from_settings(settings: Any, **overrides: Any):
    """Run `training.retrain.retrain` against the configured store; returns its `RetrainResult`."""
    from capbot.cli.database import open_database
    from training.retrain import retrain

    with open_database(settings.database_url) as engine:
        return retrain(retrain_config_from_settings(settings, engine, **overrides))


@app.command("retrain")
def retrain_command(
    min_feedback: Optional[int] = typer.Option(None, "--min-feedback", min=1, help="Fewest new corrected images worth a run (default: CAPBOT_RETRAIN_MIN_FEEDBACK)."),
    base_data: Optional[Path] = typer.Option(None, "--base-data", help="COCO-format dataset mixed in and held out (default: CAPBOT_RETRAIN_BASE_DATA)."),
    base_eval_split: Optional[str] = typer.Option(None, "--eval-split", help="Split of the base data scored as held-out (default: val)."),
    feedback_fraction: Optional[float] = typer.Option(None, "--feedback-fraction", min=0.01, max=1.0, help="Share of feedback images in the training mix."),
    cider_tolerance: Optional[float] = typer.Option(None, "--cider-tolerance", min=0.0, help="Largest allowed base CIDEr drop, as a fraction of the active version's (0.05 = 5%)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Fine-tuning epochs over the mix."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", min=0.0, help="Peak learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Training batch size."),
    no_renames: bool = typer.Option(False, "--no-renames", help="Do not rewrite base references with renames users made systematically (e.g. every \"circle\" corrected to \"ball\")."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be trained and change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Retrain from user corrections: fine-tune the active version, evaluate, promote only if better.

    Stops early when too few corrections arrived since the last run; refuses while another run holds
    the lock; a candidate that fails the gate is kept unpromoted and the reason is recorded.
    """
    from capbot.logs import configure_logging
    from capbot.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    result = retrain_from_settings(
        settings, min_feedback=min_feedback, base_data=base_data, base_eval_split=base_eval_split,
        feedback_fraction=feedback_fraction, cider_tolerance=cider_tolerance, epochs=epochs,
        learning_rate=learning_rate, batch_size=batch_size, dry_run=dry_run or None,
        no_renames=no_renames,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), default=str))
        return
    _print_result(result)


def _print_result(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{result.status}[/bold]: {result.message}")
    if result.recovered_runs:
        console.print(f"marked interrupted run(s) {', '.join(map(str, result.recovered_runs))} as failed")
    if result.data_counts:
        console.print("data: " + ", ".join(f"{k}={v}" for k, v in result.data_counts.items()))
    for rename in result.renames:
        console.print(f"renamed in base references: {rename['old']!r} -> {rename['new']!r} "
                      f"({rename['support']} of {rename['uses']} corrections)")
    if result.metrics:
        table = Table("model", "set", "CIDEr", "BLEU-4", "METEOR", "ROUGE-L")
        for role, sets in result.metrics.items():
            for name, scores in sets.items():
                table.add_row(role, name, *(f"{scores.get(k, 0.0):.3f}" for k in ("cider", "bleu_4", "meteor", "rouge_l")))
        console.print(table)
    if result.candidate_version:
        console.print(f"candidate version: {result.candidate_version}")
