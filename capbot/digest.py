"""The scheduled review digest: the top of the review queue (`storage.queue`), posted by the bots to the
channels an admin chose (CAPBOT_DIGEST_SLACK_CHANNEL / CAPBOT_DIGEST_DISCORD_CHANNEL) on CAPBOT_DIGEST_CRON.

Off unless CAPBOT_DIGEST_CRON is set. One digest never repeats an image an earlier digest of the same
process posted (after a correction an image can score higher, since the model and the correction now
disagree; it has been looked at all the same). A platform that fails is logged and the other still posts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import Engine

from capbot.settings import Settings
from storage.blobs import BlobStore
from storage.db import session_scope
from storage.queue import QueueItem, review_queue
from storage.reviews import record_review_posts

log = logging.getLogger(__name__)


@dataclass
class Digest:
    """Posts one digest per call; remembers which images it has posted."""

    settings: Settings
    engine: Engine
    blobs: BlobStore
    posted: set[str] = field(default_factory=set)  # image hashes already sent

    def __call__(self) -> dict[str, int]:
        """Post the next digest; returns images posted per platform ({} when there was nothing to post)."""
        items = self._next_items()
        if not items:
            log.info("review digest: nothing new to review")
            return {}
        sent: dict[str, int] = {}
        for platform, post in self._posters():
            try:
                sent[platform] = post(items)
            except Exception as exc:  # one platform's outage must not keep the digest from the other
                log.error("review digest not posted to %s: %s", platform, exc, extra={"platform": platform})
        if sent:
            self.posted.update(item.image_sha256 for item in items)
            with session_scope(self.engine) as session:  # open reviews: the retention sweep keeps their images
                record_review_posts(session, [item.image_sha256 for item in items])
        log.info("review digest posted", extra={"posted": sent, "images": len(items)})
        return sent

    def _next_items(self) -> list[QueueItem]:
        size = self.settings.digest_size
        with session_scope(self.engine) as session:
            items = review_queue(session, self.blobs, limit=min(size + len(self.posted), 1000),
                                 public_url=self.settings.public_url or None)
        return [item for item in items if item.image_sha256 not in self.posted][:size]

    def _posters(self) -> list[tuple[str, Callable[[list[QueueItem]], int]]]:
        s = self.settings
        posters: list[tuple[str, Callable[[list[QueueItem]], int]]] = []
        if s.digest_slack_channel and s.slack_bot_token:
            posters.append(("slack", self._post_slack))
        if s.digest_discord_channel and s.discord_token:
            posters.append(("discord", self._post_discord))
        return posters

    def _post_slack(self, items: list[QueueItem]) -> int:
        from slack_sdk import WebClient

        from bots.slack.digest import post_slack_digest

        s = self.settings
        client = WebClient(token=s.slack_bot_token.get_secret_value(), base_url=s.slack_api_url)
        return post_slack_digest(client, s.digest_slack_channel, items, self.blobs.get)

    def _post_discord(self, items: list[QueueItem]) -> int:
        from bots.discord.digest import post_discord_digest

        s = self.settings
        # The scheduler's worker thread has no event loop of its own; the gateway bot's loop is not touched.
        return asyncio.run(post_discord_digest(
            s.discord_token.get_secret_value(), int(s.digest_discord_channel), items, self.blobs.get,
            api_url=s.discord_api_url, gateway_url=s.discord_gateway_url))


def digest_job(settings: Settings, engine: Engine, blobs: BlobStore) -> Digest | None:
    """The scheduled digest, or None when CAPBOT_DIGEST_CRON is not set (the default: nothing is posted)."""
    if not settings.digest_cron:
        return None
    return Digest(settings, engine, blobs)


def start_digest(settings: Settings, engine: Engine, blobs: BlobStore):  # -> BackgroundScheduler | None
    """Start the digest's schedule (job id "capbot-digest"), or return None when it is off."""
    job = digest_job(settings, engine, blobs)
    if job is None:
        return None
    from training.scheduler import start_scheduler

    return start_scheduler(settings.digest_cron, job, name="digest")
