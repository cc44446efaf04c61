"""`capbot retrain`: one retraining run from the configured database, blob store and base dataset.

The composition root's `capbot.app.retrain_config` is the one place Settings become a `RetrainConfig`;
`retrain_from_settings` runs it, and the embedded schedule (`capbot run`) calls it too, so a scheduled run
and a manual one behave the same (the Modal Cron builds its config there as well).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from capbot.cli.root import app

if TYPE_CHECKING:
    from capbot.app import RetrainOptions
    from capbot.settings import Settings
    from inference.spec import CaptionerSpec
    from training.retrain import RetrainResult


def retrain_from_settings(settings: Settings, options: RetrainOptions | None = None,
                          spec: CaptionerSpec | None = None) -> RetrainResult:
    """Run `training.retrain.retrain` against the configured store; returns its `RetrainResult`."""
    from capbot.app import RetrainOptions, retrain_config
    from capbot.cli.database import open_database
    from training.retrain import retrain

    with open_database(settings.database_url) as engine:
        return retrain(retrain_config(settings, engine, options or RetrainOptions(), spec))


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
    no_renames: bool = typer.Option(False, "--no-renames", help="Look for no new renames users made systematically (e.g. every \"circle\" corrected to \"ball\"); those the active version learned in earlier runs still apply (roll back to drop them)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be trained and change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Retrain from user corrections: fine-tune the active version, evaluate, promote only if better.

    Stops early when too few corrections arrived since the last run; refuses while another run holds
    the lock; a candidate that fails the gate is kept unpromoted and the reason is recorded.
    """
    from capbot.app import RetrainOptions
    from capbot.logs import configure_logging
    from capbot.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    result = retrain_from_settings(settings, RetrainOptions(
        min_feedback=min_feedback, base_data=base_data, base_eval_split=base_eval_split,
        feedback_fraction=feedback_fraction, cider_tolerance=cider_tolerance, epochs=epochs,
        learning_rate=learning_rate, batch_size=batch_size, renames=not no_renames, dry_run=dry_run,
    ))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), default=str))
        return
    _print_result(result)


def _print_result(result: RetrainResult) -> None:
    from dataclasses import asdict

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from training.retrain import set_aside_summary

    console = Console()
    console.print(f"[bold]{result.status}[/bold]: {escape(result.message)}")
    if result.recovered_runs:
        console.print(f"marked interrupted run(s) {', '.join(map(str, result.recovered_runs))} as failed")
    console.print("data: " + ", ".join(f"{k}={v}" for k, v in asdict(result.data_counts).items()))
    set_aside = set_aside_summary(result.data_counts)
    if set_aside and result.status != "skipped":
        console.print(f"set aside: {escape(set_aside)}")
    for earlier in result.inherited_renames:
        for rename in earlier.renames:
            console.print(f"renamed in base references (learned by version {escape(earlier.version)}): "
                          f"{escape(repr(rename.old))} -> {escape(repr(rename.new))}")
    for rename in result.renames:
        console.print(f"renamed in base references: {rename.old!r} -> {rename.new!r} "
                      f"({rename.support} of {rename.uses} corrections, {rename.users} users)")
    if result.metrics:
        table = Table("model", "set", "CIDEr", "BLEU-4", "METEOR", "ROUGE-L")
        for role, model in (("candidate", result.metrics.candidate), ("active", result.metrics.active)):
            for name, scores in (("base", model.base), ("feedback", model.feedback)):
                meteor = "-" if scores.meteor is None else f"{scores.meteor:.3f}"
                table.add_row(role, name, f"{scores.cider:.3f}", f"{scores.bleu_4:.3f}", meteor, f"{scores.rouge_l:.3f}")
        console.print(table)
    if result.candidate_version:
        console.print(f"candidate version: {result.candidate_version}")
