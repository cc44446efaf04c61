"""The root Typer app and its command groups; command modules import these and add commands."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="capbot",
    help="capbot: caption images in Discord and Slack, learn from corrections, retrain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Build, list, promote and roll back model versions.", no_args_is_help=True)
data_app = typer.Typer(help="Download, generate and prepare captioning datasets.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
feedback_app = typer.Typer(help="Export user corrections for training; list the images most worth a review.", no_args_is_help=True)
modal_group = typer.Typer(help="Deploy capbot to Modal and get models onto it (docs/modal.md).", no_args_is_help=True)



@app.callback()
def _configure() -> None:
    """Structured logs on stderr for every command (level and format from CAPBOT_LOG_LEVEL / CAPBOT_LOG_JSON)."""
    from capbot.logs import configure_logging
    from capbot.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")
app.add_typer(feedback_app, name="feedback")
app.add_typer(modal_group, name="modal")
