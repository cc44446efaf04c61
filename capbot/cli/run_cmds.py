"""`capbot run`: the web server, the configured bots and the retraining schedule."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer

from capbot.cli.root import app
from capbot.logs import configure_logging
from capbot.settings import get_settings


@app.command()
def run(
    model: Optional[str] = typer.Option(None, "--model", help="Hub id or model directory served until the registry "
                                        "has an active version (default: CAPBOT_MODEL)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Directory of the database, images, models and "
                                            "runs (default: CAPBOT_DATA_DIR, else ./capbot-data)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default: CAPBOT_HOST)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port to bind; 0 picks a free one (default: CAPBOT_PORT)."),
) -> None:
    """Start capbot: the demo page and API, Slack and Discord when their tokens are set, and the retrain schedule.

    Every setting is a CAPBOT_* environment variable (or a line of .env); the options here override the most
    common ones. Stops cleanly on Ctrl-C or SIGTERM. Without any bot token it still serves the web page and
    says which bots are off and why.
    """
    from capbot.app import build_services
    from capbot.serve import bind_web_socket, check_platform_settings, serve

    given = {"model": model, "data_dir": data_dir, "host": host, "port": port}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = get_settings(**overrides)
    configure_logging(settings.log_level, settings.log_json)
    check_platform_settings(settings)  # before the model loads: a half-configured bot fails at once
    sock = bind_web_socket(settings.host, settings.port)  # before the model loads: a busy port fails at once
    try:
        services = build_services(settings)
    except BaseException:
        sock.close()
        raise
    asyncio.run(serve(services, retrain_job=_retrain_job(settings, services.spec), sock=sock))


def _retrain_job(settings, spec=None):
    """The scheduled retraining run (its gate scoring with `spec`, the server's captioner spec), or None when
    no schedule is configured."""
    if not settings.retrain_cron:
        return None
    from capbot.cli.retrain_cmds import retrain_from_settings

    return lambda: retrain_from_settings(settings, spec=spec)
