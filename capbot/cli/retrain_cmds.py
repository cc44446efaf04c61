"""`capbot retrain`: one retraining run from the configured database, blob store and base dataset.

`retrain_config` is the one place Settings become a `RetrainConfig`; `retrain_from_settings` runs it, and
the embedded schedule (`capbot run`) calls it too, so a scheduled run and a manual one behave the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from capbot.cli.root import app

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from capbot.settings import Settings
    from inference.spec import CaptionerSpec
    from training.data.screen import ScreenRules
    from training.retrain import RetrainConfig, RetrainResult


@dataclass(frozen=True)
class RetrainOptions:
    """One run's choices from the command line; None keeps the setting or `RetrainConfig`'s default."""

    min_feedback: int | None = None
    base_data: Path | None = None
    base_eval_split: str | None = None
    feedback_fraction: float | None = None
    cider_tolerance: float | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    renames: bool = True  # False: find no new renames (those the active version learned still apply)
    dry_run: bool = False


def retrain_config(settings: Settings, engine: Engine, options: RetrainOptions = RetrainOptions(),
                   spec: CaptionerSpec | None = None) -> RetrainConfig:
    """The `RetrainConfig` for `settings` and this run's `options` (the CLI's; the schedule passes none);
    the gate scores with `spec`, the server's when it runs beside one, else the one settings give."""
    from capbot.captioning import captioner_spec
    from storage.blobs import LocalBlobStore
    from training.data.renames import RenameRules
    from training.retrain import RetrainConfig

    # Choices without a setting: unless given, RetrainConfig's defaults apply.
    training_choices = {"base_eval_split": options.base_eval_split, "epochs": options.epochs,
                        "learning_rate": options.learning_rate, "batch_size": options.batch_size}
    return RetrainConfig(
        engine=engine,
        blobs=LocalBlobStore(settings.blob_dir or settings.data_dir / "blobs"),
        models_dir=settings.models_dir,
        runs_dir=settings.runs_dir,
        base_model=settings.model,
        base_data=_first(options.base_data, settings.retrain_base_data),
        min_feedback=_first(options.min_feedback, settings.retrain_min_feedback),
        feedback_fraction=_first(options.feedback_fraction, settings.retrain_feedback_fraction),
        cider_tolerance=_first(options.cider_tolerance, settings.retrain_cider_tolerance),
        rename_rules=RenameRules(min_users=settings.retrain_rename_min_users) if options.renames else None,
        screen_rules=screen_rules(settings),
        min_users=settings.retrain_min_users,
        captioner=spec or captioner_spec(settings),
        dry_run=options.dry_run,
        **{name: value for name, value in training_choices.items() if value is not None},
    )


def screen_rules(settings: Settings) -> ScreenRules:
    """The junk rules from settings: the same for retraining and `capbot feedback export`."""
    from training.data.screen import ScreenRules

    return ScreenRules(max_images_per_user=settings.retrain_max_images_per_user,
                       spam_min_images=settings.retrain_spam_min_images)


def _first(option: Any, setting: Any) -> Any:
    return setting if option is None else option  # `or` would take a tolerance of 0.0 for "unset"


def retrain_from_settings(settings: Settings, options: RetrainOptions = RetrainOptions(),
                          spec: CaptionerSpec | None = None) -> RetrainResult:
    """Run `training.retrain.retrain` against the configured store; returns its `RetrainResult`."""
    from capbot.cli.database import open_database
    from training.retrain import retrain

    with open_database(settings.database_url) as engine:
        return retrain(retrain_config(settings, engine, options, spec))


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
