"""`capbot run`: the web server, the bots that have credentials, the retraining schedule and the review digest,
in one process.

uvicorn owns SIGINT/SIGTERM: when it stops serving, everything else is shut down in order (Discord
closes its gateway, Socket Mode its websocket, the schedule lets a run finish, the core drains its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import uvicorn
from fastapi import APIRouter

from capbot.app import Services, build_slack_app, build_web_app, run_discord, slack_events_router
from storage.errors import UserError
from capbot.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """Whether one optional part runs, and why (shown at start-up)."""

    name: str
    enabled: bool
    why: str


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM once it has stopped serving, which would kill the process before the
    bots and the queue are shut down; here a signal only asks the server to stop, and `serve` does the rest."""

    @contextlib.contextmanager
    def capture_signals(self):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._ask_to_stop, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _ask_to_stop(self, sig: int) -> None:
        log.info("received %s, shutting down", signal.Signals(sig).name)
        self.force_exit = self.should_exit  # a second signal stops without waiting for open connections
        self.should_exit = True


def check_platform_settings(settings: Settings) -> None:
    """Refuse a half-configured bot before anything starts (issue 22), naming the missing setting: a Slack
    bot token with neither a signing secret (HTTP events) nor an app-level token (Socket Mode) would run no
    Slack bot at all while /slack/events answered 404."""
    if settings.slack_install_flow and settings.slack_signing_secret is None:
        raise UserError("CAPBOT_SLACK_CLIENT_ID is set but CAPBOT_SLACK_SIGNING_SECRET is not, so Slack's requests "
                        "to /slack/events cannot be verified: set it (Basic Information > App Credentials > "
                        "Signing Secret), or unset CAPBOT_SLACK_CLIENT_ID", reason="slack_half_configured")
    if settings.slack_bot_token is not None and settings.slack_signing_secret is None \
            and settings.slack_app_token is None:
        raise UserError("CAPBOT_SLACK_BOT_TOKEN is set but CAPBOT_SLACK_SIGNING_SECRET is not, so Slack's requests "
                        "to /slack/events cannot be verified: set it (Basic Information > App Credentials > "
                        "Signing Secret), or set CAPBOT_SLACK_APP_TOKEN to use Socket Mode instead, or unset "
                        "CAPBOT_SLACK_BOT_TOKEN", reason="slack_half_configured")


def plan_components(settings: Settings) -> list[Component]:
    """Decide from the credentials present which bots run; never raises for missing tokens (a half-configured
    bot is refused earlier, by `check_platform_settings`)."""
    slack_token = settings.slack_bot_token is not None or settings.slack_install_flow
    return [
        _slack_http(settings, slack_token),
        _slack_socket(settings, slack_token),
        Component("discord", settings.discord_token is not None,
                  "CAPBOT_DISCORD_TOKEN is set" if settings.discord_token else "CAPBOT_DISCORD_TOKEN is not set"),
        Component("retrain schedule", bool(settings.retrain_cron),
                  f"cron {settings.retrain_cron!r}" if settings.retrain_cron else "CAPBOT_RETRAIN_CRON is not set"),
        _digest(settings),
        _sweep(settings),
    ]


def _sweep(settings: Settings) -> Component:
    if not settings.retention_sweep_cron:
        return Component("retention sweep", False, "CAPBOT_RETENTION_SWEEP_CRON is empty")
    days = settings.image_retention_days
    keeps = "until forgotten" if days is None else ("no images" if days == 0 else f"{days} days")
    return Component("retention sweep", True, f"cron {settings.retention_sweep_cron!r}; uncorrected images kept "
                                              f"{keeps} (or less where a community chose)")


def _digest(settings: Settings) -> Component:
    if not settings.digest_cron:
        return Component("review digest", False, "CAPBOT_DIGEST_CRON is not set")
    where = [f"{name} {channel}" for name, channel in (("slack", settings.digest_slack_channel),
                                                        ("discord", settings.digest_discord_channel)) if channel]
    return Component("review digest", True, f"cron {settings.digest_cron!r} to {', '.join(where)}")


def _slack_http(settings: Settings, has_token: bool) -> Component:
    if settings.slack_app_token is not None:
        return Component("slack (http)", False, "Socket Mode is used because CAPBOT_SLACK_APP_TOKEN is set")
    if not has_token:
        return Component("slack (http)", False, "CAPBOT_SLACK_BOT_TOKEN is not set")
    if settings.slack_signing_secret is None:
        return Component("slack (http)", False, "CAPBOT_SLACK_SIGNING_SECRET is not set")
    if settings.slack_install_flow:
        return Component("slack (http)", True, "events at /slack/events; workspaces install at /slack/install")
    return Component("slack (http)", True, "events at /slack/events")


def _slack_socket(settings: Settings, has_token: bool) -> Component:
    if settings.slack_app_token is None:
        return Component("slack (socket mode)", False, "CAPBOT_SLACK_APP_TOKEN is not set")
    if not has_token:
        return Component("slack (socket mode)", False, "CAPBOT_SLACK_BOT_TOKEN is not set")
    return Component("slack (socket mode)", True, "app-level token configured")


def _enabled(components: list[Component], name: str) -> bool:
    return any(c.name == name and c.enabled for c in components)


def bind_web_socket(host: str, port: int) -> socket.socket:
    """The web server's listening socket, bound now: a busy port is one clear error before anything starts
    (uvicorn would log a traceback from inside its task and exit 3 after the bots had started)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {_bind_advice(exc, port)}",
                        reason="address_unavailable") from None
    return sock


def _bind_advice(exc: OSError, port: int) -> str:
    """What to do about a failed bind, by its cause."""
    if exc.errno == errno.EADDRINUSE:
        return "stop what is using it, or choose another port with --port (CAPBOT_PORT)"
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return "ports below 1024 need extra privileges; choose another port with --port (CAPBOT_PORT)"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return ("no network interface of this machine has that address; use --host 127.0.0.1 (this machine only) "
                "or --host 0.0.0.0 (every interface) (CAPBOT_HOST)")
    return "choose another address with --host / --port (CAPBOT_HOST / CAPBOT_PORT)"


async def serve(services: Services, retrain_job: Callable[[], object] | None = None,
                *, on_started: Callable[[int], None] | None = None, sock: socket.socket | None = None) -> None:
    """Run until SIGINT/SIGTERM (or until the web server stops), then shut everything down cleanly.

    `sock`: the listening socket from `bind_web_socket` (bound here from the settings when not given)."""
    settings = services.settings
    check_platform_settings(settings)
    sock = sock or bind_web_socket(settings.host, settings.port)
    components = plan_components(settings)
    for c in components:
        log.info("%s: %s (%s)", c.name, "on" if c.enabled else "off", c.why)

    routers: list[APIRouter] = []
    slack_app = build_slack_app(services) if (_enabled(components, "slack (http)")
                                               or _enabled(components, "slack (socket mode)")) else None
    if slack_app is not None and _enabled(components, "slack (http)"):
        routers.append(slack_events_router(slack_app))

    connections = _connection_trackers(components)
    web = build_web_app(services, tuple(routers), connections=tuple(connections.values()))
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 by default; the web
    # app decides whom to believe (CAPBOT_TRUSTED_PROXIES), so a local caller cannot pose as many clients.
    server = _Server(uvicorn.Config(web, host=settings.host, port=settings.port, log_config=None,
                                    lifespan="off", proxy_headers=False, http=_http_protocol(services)))
    stop = asyncio.Event()
    background: list[Stopper] = []
    try:
        # Inside the try: a bot that cannot start (say, Slack refuses the token) still stops what did start.
        await _start_background(services, components, slack_app, retrain_job, stop, background, connections)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="capbot-web")
        await _announce(server, serving, on_started)
        await serving
    finally:
        stop.set()
        await _stop_background(background)
        services.close()
        sock.close()
        log.info("capbot stopped")


def _http_protocol(services: Services) -> type:
    """h11 with a bound on header time (issue 22): slow clients get 408 and are let go."""
    from capbot.web.header_timeout import header_timeout_protocol

    return header_timeout_protocol(services.settings.request_header_timeout_s,
                                   on_timeout=lambda: services.metrics.request_timed_out("headers"))


async def _announce(server: uvicorn.Server, serving: asyncio.Task, on_started: Callable[[int], None] | None) -> None:
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        log.info("web server listening", extra={"url": f"http://{server.config.host}:{port}/"})
        if on_started:
            on_started(port)


Stopper = Callable[[], Awaitable[object]]


def _connection_trackers(components: list[Component]) -> dict[str, Any]:
    """A `ConnectionTracker` for each platform capbot connects to itself (issue 22: /readyz and /metrics say
    where each stands while it reconnects)."""
    from bots.connection import ConnectionTracker

    platforms = {"slack (socket mode)": "slack", "discord": "discord"}
    return {platform: ConnectionTracker(platform) for name, platform in platforms.items() if _enabled(components, name)}


async def _start_background(services: Services, components: list[Component], slack_app: Any,
                            retrain_job: Callable[[], object] | None, stop: asyncio.Event,
                            stoppers: list[Stopper], connections: dict[str, Any]) -> None:
    """Start Socket Mode, Discord and the schedule as configured, adding to `stoppers` how to stop each."""
    settings = services.settings
    if _enabled(components, "slack (socket mode)"):
        from bots.slack.socket_mode import SocketModeRunner

        runner = SocketModeRunner(slack_app, settings.slack_app_token.get_secret_value(), tracker=connections["slack"])
        stoppers.append(lambda: asyncio.to_thread(runner.stop))
        await asyncio.to_thread(runner.start)  # a refused token stops start-up; an unreachable Slack is retried
    if _enabled(components, "discord"):
        task = asyncio.create_task(_discord(services, stop, connections["discord"]), name="capbot-discord")
        stoppers.append(lambda: asyncio.wait({task}, timeout=10))  # `stop` is set first, so it closes itself
    if _enabled(components, "retrain schedule") and retrain_job is not None:
        from training.scheduler import start_scheduler, stop_scheduler

        scheduler = start_scheduler(settings.retrain_cron, retrain_job)
        stoppers.append(lambda: asyncio.to_thread(stop_scheduler, scheduler))
    if _enabled(components, "retention sweep"):
        from capbot.app import start_sweep
        from training.scheduler import stop_scheduler

        sweeper = start_sweep(settings, services.engine, services.blobs)
        stoppers.append(lambda: asyncio.to_thread(stop_scheduler, sweeper))
    if _enabled(components, "review digest"):
        from capbot.digest import start_digest
        from training.scheduler import stop_scheduler

        digest = start_digest(settings, services.engine, services.blobs)
        stoppers.append(lambda: asyncio.to_thread(stop_scheduler, digest))


async def _discord(services: Services, stop: asyncio.Event, tracker: Any) -> None:
    try:
        await run_discord(services, stop, tracker)
    except Exception as exc:  # a refused token (an outage is retried) must not take the web server down with it
        tracker.failed(f"stopped: {exc}")
        log.error("discord bot stopped: %s", exc)


async def _stop_background(stoppers: list[Stopper]) -> None:
    for stop_one in reversed(stoppers):
        try:
            await stop_one()
        except Exception:
            log.exception("error while shutting down")
