"""A local fake Discord (REST API, websocket gateway and CDN) that the real discord.py client connects to.

It speaks just enough of Discord's protocol for capbot's bot: the gateway (zlib-stream compressed when the
client asks, as Discord does) sends HELLO, answers IDENTIFY with READY then GUILD_CREATE (or closes with
4014 when the Message Content intent is asked for but not granted), acknowledges heartbeats and dispatches
events the test injects (MESSAGE_CREATE, INTERACTION_CREATE); the REST side answers login, application info, command sync
(bulk overwrite), channel messages, interaction callbacks and webhook follow-ups; the CDN serves
attachment bytes. Every REST request is recorded so tests assert on what the bot actually sent.

Sharding: `GET /gateway/bot` recommends `recommended_shards` shards (and hands out the gateway URL), an IDENTIFY
carrying `shard: [id, count]` gets READY and GUILD_CREATE for the guilds that shard owns (Discord's rule:
`(guild_id >> 22) % count`), and an event about a guild goes only to its shard's connection. `add_guild`
adds servers beyond the first (optionally on a chosen shard).

The server runs on its own event loop in a background thread, so tests can drive it from plain
synchronous code while the bot runs on another loop, exactly like two separate processes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import WSMsgType, web

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 9, 10, 11

# Interaction types and component types from Discord's API reference.
INTERACTION_APPLICATION_COMMAND, INTERACTION_COMPONENT, INTERACTION_MODAL_SUBMIT = 2, 3, 5
ALL_PERMISSIONS = (1 << 53) - 1
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
MESSAGE_CONTENT_INTENT = 1 << 15
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | (1 << 16) | (1 << 31)  # view, send, attach, history, use commands

_snowflakes = itertools.count(1_100_000_000_000_000_000)


def snowflake() -> str:
    """A fresh Discord id (as Discord sends it: a string)."""
    return str(next(_snowflakes))


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())


@dataclass
class Recorded:
    """One REST request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    json: Any  # the JSON body, or `payload_json` of a multipart body; None when absent
    files: dict[str, bytes] = field(default_factory=dict)  # multipart file parts by field name
    answer: Any = None  # the JSON the fake answered with
    status: int = 0  # the HTTP status the fake answered with
    at: float = field(default_factory=time.monotonic)


def user_payload(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    """A Discord user object."""
    return {"id": user_id, "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


class FakeDiscord:
    """A fake Discord on 127.0.0.1 with one guild and one text channel.

    Start it with `start()` (background thread) and point discord.py at `api_url` / `gateway_url`.
    """

    token = "fake-bot-token"

    def __init__(self, *, heartbeat_interval_ms: int = 41_250, port: int = 0) -> None:
        """`port`: where to listen (0: a free one), e.g. where a bot already tries to connect."""
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.app_id = snowflake()
        self.bot_user = user_payload(self.app_id, "capbot", bot=True)
        self.owner = user_payload(snowflake(), "owner")
        self.guild_id = snowflake()
        self.channel_id = snowflake()
        self.guilds: dict[str, str] = {self.guild_id: self.channel_id}  # guild id -> its one text channel
        self.recommended_shards = 1  # what GET /gateway/bot answers
        self.requests: list[Recorded] = []
        self.identify: dict[str, Any] | None = None  # the last IDENTIFY payload's `d`
        self.identifies: list[dict[str, Any]] = []  # every IDENTIFY payload's `d`, in order
        self.sessions = 0  # connections that got READY and GUILD_CREATE
        self.message_content_granted = True  # False: refuse IDENTIFY asking for Message Content (close 4014)
        self.heartbeats = 0
        self.commands: dict[str, list[dict[str, Any]]] = {}  # scope ("global" or guild id) -> commands
        self.cdn_files: dict[str, tuple[bytes, str]] = {}  # path -> (bytes, content type)
        self.cdn_hits: list[str] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._compressors: dict[int, Any] = {}  # id(ws) -> zlib compressor, or None for plain text frames
        self._shards: dict[int, tuple[int, int]] = {}  # id(ws) -> (shard id, shard count) it identified as
        self.compressed_connections = 0
        self._seq = itertools.count(1)
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = port

    # ---- lifecycle ----
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def start(self) -> "FakeDiscord":
        """Serve on a free port in a background thread; returns once it is listening."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-discord", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Discord did not start")
        return self

    def stop(self) -> None:
        """Close sockets and the server, then end the thread."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{rest:.*}", self._cdn)
        app.router.add_route("*", "/api/v10/{rest:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    # ---- gateway ----
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # Like Discord: one zlib stream per connection when asked for, each payload ending in a sync flush.
        compressor = zlib.compressobj() if request.query.get("compress") == "zlib-stream" else None
        self._compressors[id(ws)] = compressor
        self.compressed_connections += compressor is not None
        await self._send(ws, {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._on_gateway_message(ws, json.loads(msg.data))
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            self._compressors.pop(id(ws), None)
            self._shards.pop(id(ws), None)
        return ws

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        compressor = self._compressors.get(id(ws))
        text = json.dumps(payload)
        if compressor is None:
            await ws.send_str(text)
        else:
            await ws.send_bytes(compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH))

    async def _on_gateway_message(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        if op == OP_HEARTBEAT:
            with self._cond:
                self.heartbeats += 1
                self._cond.notify_all()
            await self._send(ws, {"op": OP_HEARTBEAT_ACK})
        elif op == OP_IDENTIFY:
            if payload["d"].get("token") != self.token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            with self._cond:
                self.identify = payload["d"]
                self.identifies.append(payload["d"])
            if payload["d"].get("intents", 0) & MESSAGE_CONTENT_INTENT and not self.message_content_granted:
                await ws.close(code=4014, message=b"Disallowed intent(s).")
                return
            shard = tuple(payload["d"].get("shard") or (0, 1))
            self._shards[id(ws)] = (int(shard[0]), int(shard[1]))
            self._sockets.append(ws)
            owned = [g for g in self.guilds if self._owns(ws, g)]
            await self._send_dispatch(ws, "READY", self._ready_payload(owned, self._shards[id(ws)]))
            for guild in owned:
                await self._send_dispatch(ws, "GUILD_CREATE", self.guild_payload(guild))
            with self._cond:
                self.sessions += 1
                self._cond.notify_all()
        elif op == OP_RESUME:
            await self._send(ws, {"op": OP_INVALID_SESSION, "d": False})

    async def _send_dispatch(self, ws: web.WebSocketResponse, event: str, data: dict[str, Any]) -> None:
        await self._send(ws, {"op": OP_DISPATCH, "t": event, "s": next(self._seq), "d": data})

    def _owns(self, ws: web.WebSocketResponse, guild_id: str) -> bool:
        shard_id, count = self._shards.get(id(ws), (0, 1))
        return (int(guild_id) >> 22) % count == shard_id

    def _ready_payload(self, guilds: list[str], shard: tuple[int, int]) -> dict[str, Any]:
        return {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": guild, "unavailable": True} for guild in guilds],
            "session_id": f"fake-session-{shard[0]}",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.app_id, "flags": 0},
            "shard": list(shard),
        }

    def add_guild(self, *, shard: tuple[int, int] | None = None) -> tuple[str, str]:
        """Another server with one text channel (on shard `(id, count)` when given); returns (guild, channel).
        Add guilds before the bot connects: a connected shard is not told about new ones."""
        guild = snowflake()
        while shard is not None and (int(guild) >> 22) % shard[1] != shard[0]:
            guild = str(int(guild) + (1 << 22))  # the next id on another shard
        channel = snowflake()
        self.guilds[guild] = channel
        return guild, channel

    def guild_payload(self, guild_id: str | None = None) -> dict[str, Any]:
        """GUILD_CREATE data: one guild (the first unless named), its text channel, the bot as a member."""
        guild_id = guild_id or self.guild_id
        everyone = {
            "id": guild_id, "name": "@everyone", "permissions": str(MEMBER_PERMISSIONS), "position": 0,
            "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0,
        }
        channel = {
            "id": self.guilds[guild_id], "type": 0, "name": "general", "position": 0, "guild_id": guild_id,
            "permission_overwrites": [], "nsfw": False, "topic": None, "last_message_id": None,
        }
        bot_member = {"user": self.bot_user, "roles": [], "joined_at": _iso_now(), "deaf": False, "mute": False, "flags": 0}
        return {
            "id": guild_id, "name": f"capbot test guild {guild_id}", "icon": None, "owner_id": self.owner["id"],
            "unavailable": False, "large": False, "member_count": 2, "features": [], "emojis": [], "stickers": [],
            "roles": [everyone], "channels": [channel], "threads": [], "members": [bot_member],
            "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [], "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "premium_tier": 0, "preferred_locale": "en-US",
            "nsfw_level": 0, "system_channel_flags": 0, "joined_at": _iso_now(),
        }

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to every identified gateway connection, or only to the shard owning the event's guild
        (thread-safe)."""
        assert self._loop is not None, "start() the fake first"
        guild = data.get("guild_id")

        async def send_all() -> None:
            for ws in list(self._sockets):
                if guild is None or self._owns(ws, guild):
                    await self._send_dispatch(ws, event, data)

        asyncio.run_coroutine_threadsafe(send_all(), self._loop).result(5)

    # ---- events a test injects ----
    def add_attachment(
        self, filename: str, data: bytes, content_type: str | None, *, size: int | None = None
    ) -> dict[str, Any]:
        """Put bytes on the CDN and return the attachment object that points at them (`size`: what Discord claims)."""
        attachment_id = snowflake()
        path = f"/attachments/{self.channel_id}/{attachment_id}/{filename}"
        self.cdn_files[path] = (data, content_type or "application/octet-stream")
        attachment = {
            "id": attachment_id, "filename": filename, "size": len(data) if size is None else size, "url": self.base_url + path,
            "proxy_url": self.base_url + path,
        }
        if content_type is not None:
            attachment["content_type"] = content_type
        return attachment

    def message_payload(
        self, *, author: dict[str, Any], content: str = "", attachments: list[dict[str, Any]] | None = None,
        guild_id: str | None = None,
    ) -> dict[str, Any]:
        """A message in the channel of the fake's guild (the first unless named; also stored, so REST lookups
        find it)."""
        guild_id = guild_id or self.guild_id
        message = {
            "id": snowflake(), "channel_id": self.guilds[guild_id], "guild_id": guild_id, "author": author,
            "member": {"roles": [], "joined_at": _iso_now(), "deaf": False, "mute": False, "flags": 0},
            "content": content, "timestamp": _iso_now(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": attachments or [],
            "embeds": [], "pinned": False, "type": 0, "components": [],
        }
        self._messages[message["id"]] = message
        return message

    def post_message(self, **kwargs: Any) -> dict[str, Any]:
        """Dispatch MESSAGE_CREATE for a new message; returns its payload."""
        message = self.message_payload(**kwargs)
        self.dispatch("MESSAGE_CREATE", message)
        return message

    def interaction(
        self,
        type_: int,
        data: dict[str, Any],
        *,
        user: dict[str, Any],
        permissions: int = MEMBER_PERMISSIONS,
        message: dict[str, Any] | None = None,
        guild_id: str | None = None,
    ) -> dict[str, Any]:
        """Dispatch INTERACTION_CREATE from `user` in the channel of the fake's guild (the first unless named);
        returns its payload."""
        guild_id = guild_id or self.guild_id
        channel_id = self.guilds[guild_id]
        payload: dict[str, Any] = {
            "id": snowflake(), "application_id": self.app_id, "type": type_, "data": data,
            "guild_id": guild_id, "channel_id": channel_id,
            "channel": {"id": channel_id, "type": 0, "name": "general", "guild_id": guild_id},
            "member": {
                "user": user, "roles": [], "joined_at": _iso_now(), "deaf": False, "mute": False, "flags": 0,
                "permissions": str(permissions),
            },
            "token": f"itoken-{snowflake()}", "version": 1, "app_permissions": str(ALL_PERMISSIONS),
            "locale": "en-US", "guild_locale": "en-US", "entitlements": [], "authorizing_integration_owners": {},
            "context": 0, "attachment_size_limit": 25 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = message
        self.dispatch("INTERACTION_CREATE", payload)
        return payload

    def slash_command(
        self,
        name: str,
        subcommand: str,
        options: list[dict[str, Any]] | None = None,
        *,
        attachments: list[dict[str, Any]] = (),  # type: ignore[assignment]
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Dispatch `/name subcommand` with `options` (attachments resolved as Discord does)."""
        data: dict[str, Any] = {
            "id": self.command_id(name), "name": name, "type": 1,
            "options": [{"name": subcommand, "type": 1, "options": options or []}],
        }
        if attachments:
            data["resolved"] = {"attachments": {a["id"]: a for a in attachments}}
        return self.interaction(INTERACTION_APPLICATION_COMMAND, data, **kwargs)

    def message_command(self, name: str, target: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Dispatch a message context-menu command `name` aimed at message `target`."""
        data = {
            "id": self.command_id(name), "name": name, "type": 3, "target_id": target["id"],
            "resolved": {"messages": {target["id"]: target}},
        }
        return self.interaction(INTERACTION_APPLICATION_COMMAND, data, **kwargs)

    def unrouted(self) -> list[str]:
        """Requests the fake had no route for (a sign the bot uses an API the fake does not model)."""
        with self._cond:
            return [f"{r.method} {r.path}" for r in self.requests if r.status == 404 and "has no route" in str(r.answer)]

    def command_id(self, name: str) -> str:
        """The id the fake gave the synced command `name` (any scope)."""
        for commands in self.commands.values():
            for command in commands:
                if command["name"] == name:
                    return command["id"]
        raise KeyError(name)

    # ---- waiting on what the bot did ----
    def wait_for(self, predicate: Callable[[Recorded], bool], *, timeout: float = 10.0, after: float = 0.0) -> Recorded:
        """The first recorded request at or after monotonic time `after` matching `predicate`; waits for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.requests:
                    if rec.at >= after and predicate(rec):
                        return rec
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [f"{r.method} {r.path}" for r in self.requests if r.at >= after]
                    raise TimeoutError(f"no matching request within {timeout}s; seen: {seen}")
                self._cond.wait(remaining)

    def wait_until(self, condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until `condition()` is true (checked whenever the fake records something)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("condition not met")
                self._cond.wait(min(remaining, 0.2))

    def requests_matching(self, predicate: Callable[[Recorded], bool], *, after: float = 0.0) -> list[Recorded]:
        """Every recorded request since `after` matching `predicate`."""
        with self._cond:
            return [r for r in self.requests if r.at >= after and predicate(r)]

    # ---- CDN ----
    async def _cdn(self, request: web.Request) -> web.Response:
        self.cdn_hits.append(request.path)
        found = self.cdn_files.get(request.path)
        if found is None:
            return web.Response(status=404, text="not found")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    # ---- REST ----
    async def _rest(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {self.token}" and not request.path.startswith(
            ("/api/v10/interactions/", "/api/v10/webhooks/")
        ):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        body, files = await _read_body(request)
        path = request.path[len("/api/v10"):]
        rec = Recorded(request.method, path, dict(request.query), body, files)
        status, answer = self._route(rec)
        rec.answer, rec.status = answer, status
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        if status == 204:
            return web.Response(status=204)
        return _json(answer, status=status)

    def _route(self, rec: Recorded) -> tuple[int, Any]:
        parts = rec.path.strip("/").split("/")
        method = rec.method
        if method == "GET" and parts == ["users", "@me"]:
            return 200, self.bot_user
        if method == "GET" and parts == ["oauth2", "applications", "@me"]:
            return 200, self._app_info()
        if method == "GET" and parts == ["gateway", "bot"]:
            return 200, {"url": self.gateway_url, "shards": self.recommended_shards,
                         "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}
        if parts[:1] == ["applications"] and parts[2:3] in (["commands"], ["guilds"]):
            return self._commands_route(rec, parts)
        if parts[:1] == ["channels"] and parts[2:3] == ["messages"]:
            return self._channel_messages(rec, parts)
        if method == "POST" and parts[:1] == ["interactions"] and parts[-1] == "callback":
            return 200, {"interaction": {"id": parts[1], "type": 2}, "resource": {"type": (rec.json or {}).get("type", 4)}}
        if parts[:1] == ["webhooks"]:
            return self._webhook(rec, parts)
        if method == "POST" and parts[2:] == ["typing"]:
            return 204, None
        return 404, {"message": f"fake Discord has no route {method} {rec.path}", "code": 0}

    def _app_info(self) -> dict[str, Any]:
        return {
            "id": self.app_id, "name": "capbot", "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": self.owner, "verify_key": "0" * 64, "flags": 0,
            "summary": "", "rpc_origins": [], "team": None,
        }

    def _commands_route(self, rec: Recorded, parts: list[str]) -> tuple[int, Any]:
        scope = "global" if parts[2] == "commands" else parts[3]
        if rec.method == "PUT":
            synced = []
            for command in rec.json or []:
                # Discord answers with every field filled in (context menus get an empty description).
                command = {"description": "", "default_member_permissions": None, "nsfw": False, **command}
                command.update(id=snowflake(), application_id=self.app_id, version=snowflake())
                if scope != "global":
                    command["guild_id"] = scope
                synced.append(command)
            self.commands[scope] = synced
            return 200, synced
        if rec.method == "GET":
            return 200, self.commands.get(scope, [])
        return 404, {"message": "unsupported", "code": 0}

    def _channel_messages(self, rec: Recorded, parts: list[str]) -> tuple[int, Any]:
        if rec.method == "POST" and len(parts) == 3:
            return 200, self._bot_message(parts[1], rec.json or {})
        if rec.method == "GET" and len(parts) == 4 and parts[3] in self._messages:
            return 200, self._messages[parts[3]]
        if rec.method == "PATCH" and len(parts) == 4 and parts[3] in self._messages:
            self._messages[parts[3]].update({k: v for k, v in (rec.json or {}).items() if k in ("content", "embeds", "components")})
            return 200, self._messages[parts[3]]
        return 404, {"message": "Unknown Message", "code": 10008}

    def _webhook(self, rec: Recorded, parts: list[str]) -> tuple[int, Any]:
        # /webhooks/{app_id}/{token}[/messages/{id|@original}]
        if rec.method == "POST" and len(parts) == 3:
            return 200, self._bot_message(self.channel_id, rec.json or {}, webhook_id=parts[1])
        if len(parts) == 5 and parts[3] == "messages":
            if rec.method == "PATCH":
                return 200, self._bot_message(self.channel_id, rec.json or {}, webhook_id=parts[1])
            if rec.method == "DELETE":
                return 204, None
        return 404, {"message": "Unknown Webhook", "code": 10015}

    def _bot_message(self, channel_id: str, body: dict[str, Any], *, webhook_id: str | None = None) -> dict[str, Any]:
        message = self.message_payload(author=self.bot_user, content=body.get("content") or "")
        message.update(channel_id=channel_id, embeds=body.get("embeds") or [], components=body.get("components") or [])
        if body.get("message_reference"):
            message["message_reference"] = body["message_reference"]
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
        return message


def _json(data: Any, *, status: int = 200) -> web.Response:
    # discord.py only parses bodies whose content type is exactly application/json (no charset).
    return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


async def _read_body(request: web.Request) -> tuple[Any, dict[str, bytes]]:
    if not request.body_exists:
        return None, {}
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        files: dict[str, bytes] = {}
        reader = await request.multipart()
        async for part in reader:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":  # type: ignore[union-attr]
                payload = json.loads(data)
            else:
                files[part.name or ""] = bytes(data)  # type: ignore[union-attr]
        return payload, files
    raw = await request.read()
    return (json.loads(raw) if raw else None), {}
