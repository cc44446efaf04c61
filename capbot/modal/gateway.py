"""The Discord gateway on Modal: one long-running call at a time, kept alive across Modal's limits.

- `run_discord_gateway`: runs the bot (assembled by `capbot.app`) for up to `run_for_s`, just under
  Modal's 24 h function limit, then spawns its successor and disconnects. It stops early, without a
  successor, when a newer deployment's keeper asks it to retire. Whatever ends it (its time, a failed
  handover, a crash), it disconnects and records when, so the next start logs the gap.
- `keep_discord_running`: the scheduled keeper. It starts the gateway when no call of it is queued or
  running (the first deploy, a crash, a handover that failed). After a redeploy it starts the new
  deployment's gateway and asks the old one to retire, instead of leaving the old code connected for up
  to a day.
- `call_is_running`: what a spawned call's `get(timeout=0)` says, read the way Modal's client means it.

`state` is a Modal Dict (a plain dict in tests) holding `call_id` (the current gateway call), `image_id`
(the image that call runs: a new deployment brings a new one), `retire` (a call asked to stop) and
`stopped_at`. Modal calls block, so they run off the gateway's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, MutableMapping

from capbot.modal.container import container_settings

log = logging.getLogger(__name__)

DISCORD_RUN_S = 23 * 3600 + 1800  # the gateway hands over to its successor before Modal's 24 h limit
RETIRE_CHECK_S = 30.0  # how often a running gateway looks whether a newer deployment asked it to retire


def run_discord_gateway(state: MutableMapping[str, Any], spawn_successor: Callable[[], Any], blobs_volume: Any, *,
                        run_for_s: float = DISCORD_RUN_S, own_call_id: str | None = None,
                        image_id: str | None = None, check_every_s: float = RETIRE_CHECK_S,
                        migrate: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time) -> str:
    """Run the Discord bot until its time is up ("handed over"), a newer deployment retires it
    ("retired"), or a handover fails ("stopped"); "off" without a Discord token."""
    from capbot.modal.serving import container_services

    settings = container_settings()
    if settings.discord_token is None:
        log.info("discord: off on Modal (CAPBOT_DISCORD_TOKEN is not in the Secret)")
        return "off"
    _log_gap(state, clock())
    if image_id:
        state["image_id"] = image_id
    services = container_services(settings, blobs_volume, migrate)

    def hand_over() -> None:
        state["call_id"] = _call_id(spawn_successor())
        log.info("discord gateway handing over to its successor", extra={"call_id": state["call_id"]})

    def retired() -> bool:
        return own_call_id is not None and _read(state, "retire") == own_call_id

    try:
        return asyncio.run(_run_until(services, run_for_s, check_every_s, hand_over, retired))
    finally:
        state["stopped_at"] = clock()
        services.close()


async def _run_until(services: Any, run_for_s: float, check_every_s: float, hand_over: Callable[[], None],
                     retired: Callable[[], bool]) -> str:
    from capbot.app import run_discord

    stop = asyncio.Event()
    outcome = ["stopped"]

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + run_for_s
        try:
            while (remaining := deadline - loop.time()) > 0:
                await asyncio.sleep(min(check_every_s, remaining))
                if await asyncio.to_thread(retired):
                    outcome[0] = "retired"
                    return
            await asyncio.to_thread(hand_over)
            outcome[0] = "handed over"
        except Exception:  # disconnecting lets the keeper start a new gateway within minutes
            log.exception("discord gateway handover failed; disconnecting so the keeper starts a new one")
        finally:
            stop.set()

    watcher = asyncio.create_task(watch(), name="capbot-discord-deadline")
    try:
        await run_discord(services, stop)
    finally:
        watcher.cancel()
    if outcome[0] == "retired":
        log.info("discord gateway retired: a newer deployment's gateway took over")
    return outcome[0]


def _read(state: MutableMapping[str, Any], key: str) -> Any:
    try:
        return state.get(key)
    except Exception as exc:  # a Dict hiccup must not disconnect Discord: ask again at the next check
        log.warning("could not read the discord state: %s", exc)
        return None


def _log_gap(state: MutableMapping[str, Any], now: float) -> None:
    stopped_at = state.get("stopped_at")
    if stopped_at is None:
        log.info("discord gateway starting")
    else:
        log.info("discord gateway starting; Discord went unanswered for %.1f s", now - float(stopped_at),
                 extra={"gap_s": round(now - float(stopped_at), 1)})


def keep_discord_running(state: MutableMapping[str, Any], spawn: Callable[[], Any],
                         is_running: Callable[[str], bool], *, image_id: str | None = None) -> str:
    """The scheduled keeper: "running" when the gateway's call is queued or running on this deployment's
    image; "replaced" when it runs an older deployment's (the new gateway is started and the old asked to
    retire); "started" when none runs; "off" without a Discord token."""
    from capbot.settings import get_settings

    if get_settings().discord_token is None:
        return "off: CAPBOT_DISCORD_TOKEN is not in the Modal Secret"
    call_id = state.get("call_id")
    if call_id and is_running(call_id):
        if image_id is None or state.get("image_id") == image_id:
            return "running"
        state.update(call_id=_call_id(spawn()), image_id=image_id, retire=call_id)
        log.info("discord gateway of an earlier deployment asked to retire", extra={
            "call_id": state["call_id"], "retiring_call_id": call_id})
        return "replaced"
    state["call_id"] = _call_id(spawn())
    if image_id:
        state["image_id"] = image_id
    log.warning("discord gateway was not running; started it", extra={"call_id": state["call_id"],
                                                                       "previous_call_id": call_id})
    return "started"


def call_is_running(call_id: str) -> bool:
    """Whether a spawned Modal call is still queued or running.

    `get(timeout=0)` raises the builtin TimeoutError while the call is pending; Modal's own TimeoutError
    subclasses (FunctionTimeoutError: it hit its time limit; OutputExpiredError) mean it is over, as do a
    result, an error and a cancellation (InputCancellation, a BaseException).
    """
    import modal

    try:
        modal.FunctionCall.from_id(call_id).get(timeout=0)
    except modal.exception.TimeoutError:  # Modal's: over (checked first; it is no builtin TimeoutError)
        return False
    except TimeoutError:
        return True
    except (Exception, modal.exception.InputCancellation):
        return False
    return False


def _call_id(call: Any) -> str:
    return str(getattr(call, "object_id", call))
