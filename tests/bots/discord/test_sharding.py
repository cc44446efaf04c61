"""Many servers: the bot is an AutoShardedBot. With the shard count Discord recommends (GET /gateway/bot) it
opens one gateway connection per shard, each IDENTIFYing as [id, count] and receiving its own servers'
events; a configured count (CAPBOT_DISCORD_SHARDS) is used as given."""

from __future__ import annotations

import pytest

from bots.connection import ConnectionTracker
from tests.bots.captioners import ColourCaptioner
from tests.bots.discord.harness import BotRunner, make_core, person, png
from tests.fakes.discord_server import FakeDiscord


@pytest.fixture
def fake():
    fake = FakeDiscord(heartbeat_interval_ms=1000)
    fake.start()
    yield fake
    fake.stop()
    assert fake.unrouted() == []


@pytest.fixture
def core(discord_db):
    core = make_core(ColourCaptioner(version="colour-s1"), discord_db[2])
    yield core
    core.close()


def _reply_to(fake, message):
    return fake.wait_for(lambda r: r.method == "POST" and r.path == f"/channels/{message['channel_id']}/messages"
                         and str((r.json or {}).get("message_reference", {}).get("message_id")) == message["id"])


def test_two_shards_from_the_gateways_recommendation_each_serve_their_own_servers(fake, core):
    fake.recommended_shards = 2
    on_shard = {shard: fake.add_guild(shard=(shard, 2))[0] for shard in (0, 1)}
    tracker = ConnectionTracker("discord")
    with BotRunner(fake, core, tracker=tracker).start(sessions=2):
        assert any(r.method == "GET" and r.path == "/gateway/bot" for r in fake.requests)
        assert sorted(tuple(i["shard"]) for i in fake.identifies) == [(0, 2), (1, 2)]
        fake.wait_until(lambda: tracker.state().state == "connected", timeout=15)
        assert tracker.state().detail == f"connected to {len(fake.guilds)} server(s) over 2 shard(s)"
        for shard, guild in on_shard.items():
            posted = fake.post_message(guild_id=guild, author=person(),
                                       attachments=[fake.add_attachment("s.png", png((20, 200, 40)), "image/png")])
            reply = _reply_to(fake, posted)
            assert reply.json["content"].startswith("a green picture"), shard


def test_a_configured_shard_count_is_used_without_asking_the_gateway(fake, core):
    fake.recommended_shards = 2  # ignored: the setting decides
    with BotRunner(fake, core, shard_count=1).start():
        assert [tuple(i["shard"]) for i in fake.identifies] == [(0, 1)]
        assert not any(r.path == "/gateway/bot" for r in fake.requests)
        posted = fake.post_message(author=person(),
                                   attachments=[fake.add_attachment("s.png", png((200, 20, 40)), "image/png")])
        assert _reply_to(fake, posted).json["content"].startswith("a red picture")
