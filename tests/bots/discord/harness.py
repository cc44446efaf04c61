"""Runs the real capbot Discord bot (`run_discord_bot`) on its own event loop, against a `FakeDiscord`.

The bot thread plays the capbot process; the fake plays Discord; the test is a third party that
injects gateway events through the fake and reads the REST calls the bot made.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from functools import partial
from typing import Any, Iterator

from PIL import Image

from bots.core import BotCore
from bots.discord import run_discord_bot
from bots.fetch import AddressPolicy, fetch_image_bytes
from tests.fakes.discord_server import FakeDiscord, snowflake, user_payload

MAX_IMAGE_BYTES = 200_000


def png(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> bytes:
    """A small solid-colour PNG."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def person(name: str = "alice") -> dict[str, Any]:
    """A fresh human user."""
    return user_payload(snowflake(), name)


def make_core(captioner: Any, store: Any, *, policy: AddressPolicy = AddressPolicy(), **kwargs: Any) -> BotCore:
    """The real core with the real URL fetcher (`policy`: which addresses it may fetch from)."""
    kwargs.setdefault("workers", 2)
    fetch = partial(fetch_image_bytes, max_bytes=MAX_IMAGE_BYTES, timeout_s=5.0, policy=policy)
    return BotCore(captioner, store, fetch_url=fetch, **kwargs)


class BotRunner:
    """`run_discord_bot` in a background thread; `start()` returns once the fake has sent READY."""

    def __init__(self, fake: FakeDiscord, core: BotCore, *, token: str | None = None, **options: Any) -> None:
        self.fake, self.core = fake, core
        self.token = token or fake.token
        self.options = {"max_image_bytes": MAX_IMAGE_BYTES, "guild_ready_timeout": 0.1, **options}
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="capbot-discord-test", daemon=True)

    def start(self, *, sessions: int = 1) -> "BotRunner":
        self._thread.start()
        self.fake.wait_until(lambda: self.fake.sessions >= sessions or self.error is not None, timeout=20)
        if self.error is not None:
            raise self.error
        return self

    def __enter__(self) -> "BotRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask the bot to stop and wait for it (idempotent)."""
        if self._stop is not None and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop already ended
                pass
        self._thread.join(20)
        assert not self._thread.is_alive(), "the bot did not shut down"

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_discord_bot(
                self.core, self.token, api_url=self.fake.api_url, gateway_url=self.fake.gateway_url,
                stop=self._stop, **self.options,
            )

        try:
            asyncio.run(main())  # like a real process: leftover tasks are cancelled before the loop closes
        except BaseException as exc:  # surfaced to the test by start()/the assertions
            self.error = exc


@contextlib.contextmanager
def running_bot(fake: FakeDiscord, store: Any, captioner: Any, **core_options: Any) -> Iterator["BotRunner"]:
    """A core over `store` and `captioner`, and the real bot connected to `fake`; both closed afterwards."""
    core = make_core(captioner, store, **core_options)
    runner = BotRunner(fake, core).start()
    try:
        yield runner
    finally:
        runner.stop()
        core.close()


def callback_of(interaction: dict[str, Any]):
    """Matches the bot's interaction callback (defer, modal, message) for `interaction`."""
    return lambda r: r.method == "POST" and r.path == f"/interactions/{interaction['id']}/{interaction['token']}/callback"


def followup_of(fake: FakeDiscord, interaction: dict[str, Any]):
    """Matches the bot's webhook follow-up to `interaction`."""
    return lambda r: r.method == "POST" and r.path == f"/webhooks/{fake.app_id}/{interaction['token']}"
