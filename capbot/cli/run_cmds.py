"""`capbot run`: the web server, the configured bots and the retraining schedule."""

from __future__ import annotations

import asyncio
from typing import Optional

import typer

from capbot.cli.root import app
from capbot.logs import configure_logging
from capbot.settings import get_settings


@app.command()
def run(
    host: Optional[str] = typer.Option(None, help="Address to bind (default: CAPBOT_HOST)."),
    port: Optional[int] = typer.Option(None, help="Port to bind (default: CAPBOT_PORT)."),
) -> None:
    """Start capbot: the demo page and API, Slack and Discord when their tokens are set, and the retrain schedule.

    Stops cleanly on Ctrl-C or SIGTERM. Without any bot token it still serves the web page and says which
    bots are off and why.
    """
    from capbot.app import build_services
    from capbot.serve import bind_web_socket, check_platform_settings, serve

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = get_settings(**overrides)
    configure_logging(settings.log_level, settings.log_json)
    check_platform_settings(settings)  # before the model loads: a half-configured bot fails at once
    sock = bind_web_socket(settings.host, settings.port)  # before the model loads: a busy port fails at once
    try:
        services = build_services(settings)
    except BaseException:
        sock.close()
        raise
    asyncio.run(serve(services, retrain_job=_retrain_job(settings), sock=sock))


def _retrain_job(settings):
    """The scheduled retraining run, or None when no schedule is configured."""
    if not settings.retrain_cron:
        return None
    from capbot.cli.retrain_cmds import retrain_from_settings

    return lambda: retrain_from_settings(settings)
