"""`capbot train` (fine-tune a model on a dataset) and `capbot tensorboard` (serve the training logs).

The options of `capbot train` are the fields of `training.args.TrainArgs` (name, type, default, help),
plus `--register` and `--json`; a few defaults come from settings (`FROM_SETTINGS`).

Several GPUs: `torchrun --nproc_per_node N -m capbot train ...` (every process runs this command; only
rank 0 evaluates, writes and prints the result).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from capbot.cli.root import app
from training.args import TrainArgs

log = logging.getLogger(__name__)

# TrainArgs fields whose default on the command line comes from settings: (what --help says, how to get it).
FROM_SETTINGS: dict[str, tuple[str, Callable[[Any, dict[str, Any]], Any]]] = {
    "model": ("CAPBOT_MODEL", lambda settings, given: settings.model),
    "run_dir": ("CAPBOT_DATA_DIR/runs/<name of --out>", lambda settings, given: settings.runs_dir / Path(given["out"]).name),
    "device": ("CAPBOT_DEVICE", lambda settings, given: settings.device),
    "num_beams": ("CAPBOT_NUM_BEAMS", lambda settings, given: settings.num_beams),
    "max_new_tokens": ("CAPBOT_MAX_NEW_TOKENS", lambda settings, given: settings.max_new_tokens),
    "no_repeat_ngram_size": ("CAPBOT_NO_REPEAT_NGRAM_SIZE", lambda settings, given: settings.no_repeat_ngram_size),
}
REQUIRED = {"data"}  # optional for library callers (they may give train_pairs), required here
RESULT_PANEL = "Result"


def train_command(*, register: bool, as_json: bool, **options: Any) -> None:
    """Fine-tune a captioning model; the best version by validation CIDEr becomes the model directory --out.

    With the database (CAPBOT_DATABASE_URL, default SQLite under CAPBOT_DATA_DIR) the model is registered
    as a candidate version; `capbot models promote VERSION` makes it serve.
    """
    from capbot.settings import get_settings
    from training.train import train

    settings = get_settings()
    args = TrainArgs(**_with_settings(options, settings))
    if register:  # before hours of training, not after: migrate SQLite, or refuse a Postgres that is behind
        from capbot.cli.database import ensure_schema

        ensure_schema(settings.database_url)
    result = train(args)
    if result.model_dir is None:  # a non-main torchrun process, or stopped before the end (--stop-at)
        return
    registered = register and _register(settings.database_url, result)
    _report(result, registered, as_json)


def _with_settings(options: dict[str, Any], settings: Any) -> dict[str, Any]:
    values = dict(options)
    for name, (_, default) in FROM_SETTINGS.items():
        if values.get(name) is None:
            values[name] = default(settings, values)
    return values


def _register(database_url: str, result: Any) -> bool:
    """Record the trained model as a candidate version (once: a resumed run that finishes again is fine)."""
    from capbot.cli.database import open_database
    from storage import registry
    from storage.db import session_scope
    from storage.errors import VersionExists

    try:
        with open_database(database_url) as engine, session_scope(engine) as session:
            registry.register_version(
                session, version_id=result.version, location=str(Path(result.model_dir).resolve()),
                parent_id=result.parent_version, metrics=result.metrics, status="candidate",
            )
    except VersionExists:
        log.info("version already registered", extra={"version": result.version})
    return True


def _report(result: Any, registered: bool, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({
            "model_dir": str(result.model_dir), "version": result.version, "steps": result.steps,
            "best_step": result.best_step, "metrics": result.metrics, "final_loss": result.final_loss,
            "samples_per_second": round(result.samples_per_second, 2), "seconds": round(result.seconds, 1),
            "registered": registered,
        }))
        return
    cider = result.metrics.get("cider")
    typer.echo(f"model {result.version} saved to {result.model_dir} (best step {result.best_step}"
               + (f", CIDEr {cider:.3f})" if cider is not None else ")"))
    if registered:
        typer.echo(f"registered as a candidate version; make it serve with `capbot models promote {result.version}`")


def _options() -> list[inspect.Parameter]:
    """One typer option per command-line field of TrainArgs, then the command's own options."""
    types = typing.get_type_hints(TrainArgs)
    params = [_option(f, types[f.name]) for f in dataclasses.fields(TrainArgs) if f.metadata.get("cli", True)]
    own = {
        "register": (bool, typer.Option(True, "--register/--no-register", rich_help_panel=RESULT_PANEL,
                                        help="Register the model as a candidate version in the database.")),
        "as_json": (bool, typer.Option(False, "--json", help="Print the result as one JSON object.", rich_help_panel=RESULT_PANEL)),
    }
    return params + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=t) for n, (t, o) in own.items()]


def _option(field: dataclasses.Field, kind: Any) -> inspect.Parameter:
    flag = "--" + field.name.replace("_", "-")
    help_text, default = field.metadata["help"], field.default
    if field.name in FROM_SETTINGS:
        kind, default = Optional[kind], None
        help_text += f" (default: {FROM_SETTINGS[field.name][0]})"
    elif default is dataclasses.MISSING or field.name in REQUIRED:
        default = ...  # required
    if kind is bool:
        flag = f"{flag}/--no-{flag[2:]}"
    option = typer.Option(default, flag, help=help_text, rich_help_panel=field.metadata["panel"])
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)


# typer reads a command's options from its signature: give the command the generated one.
train_command.__signature__ = inspect.Signature(_options())  # type: ignore[attr-defined]
train_command.__annotations__ = {p.name: p.annotation for p in train_command.__signature__.parameters.values()}
app.command("train")(train_command)


@app.command("tensorboard")
def tensorboard_command(
    logdir: Optional[Path] = typer.Option(None, "--logdir", help="Directory of runs to show (default: CAPBOT_DATA_DIR/runs)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(6006, "--port", min=0, max=65535, help="Port to serve on (0: any free port)."),
) -> None:
    """Serve TensorBoard for training runs (loss, learning rate, metrics, captioned samples)."""
    from capbot.settings import get_settings
    from training.tb import serve_tensorboard

    url, wait = serve_tensorboard(logdir or get_settings().runs_dir, host=host, port=port)
    typer.echo(f"TensorBoard: {url}")  # alone on its line, so it is easy to spot and copy
    typer.echo("Ctrl+C stops it.", err=True)
    wait()
