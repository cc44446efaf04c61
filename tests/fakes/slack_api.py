"""A local fake of the Slack Web API (and file downloads, and response_url hooks) on 127.0.0.1.

Speaks what capbot's Slack app calls: auth.test, chat.postMessage, chat.postEphemeral, views.open,
conversations.history, conversations.info, users.info, files.info, the files_upload_v2 flow
(files.getUploadURLExternal, `POST /upload/<id>` with the bytes, files.completeUploadExternal: the shared file
lands in `state.uploads`), and apps.connections.open (with the
app-level token; it hands out `socket_url`, see tests/fakes/slack_socket.py); `GET /files/<id>/<name>` serves a file's
bytes only with `Authorization: Bearer <bot token>` and otherwise answers, like Slack, with an HTML sign-in
page and status 200; `POST /respond/<id>` records slash-command responses. Every Web API call checks the
bearer token. Calls are recorded so tests can wait for them.

Many workspaces: `add_team` registers another team's bot token (auth.test answers with the team the token
belongs to) and an OAuth code for it; `oauth.v2.access` (HTTP basic auth with the app's client id and secret,
as slack_sdk sends them) trades a code for its team's token, once; `revoke_team` makes its token invalid, as
uninstalling does. conversations.open opens a direct message with a user.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T1"


@dataclass
class Call:
    method: str  # Web API method, or "download" / "respond"
    args: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeSlackState:
    token: str
    download_token: str | None = None  # what file downloads demand; None = the bot token
    files: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)  # id -> (file object, bytes)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # channel -> messages, newest first
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_member_of: set[str] = field(default_factory=set)  # channels whose history answers not_in_channel
    app_token: str | None = None  # what apps.connections.open demands (Socket Mode)
    socket_url: str | None = None  # the websocket apps.connections.open hands out
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # file id -> {"data", "filename", "channel", ...}
    teams: dict[str, dict[str, str]] = field(default_factory=dict)  # bot token -> {"id", "name", "bot_user"}
    oauth_codes: dict[str, str] = field(default_factory=dict)  # unused OAuth code -> the bot token it gives
    client_id: str = "111.222"  # what oauth.v2.access demands
    client_secret: str = "fake-client-secret"
    calls: list[Call] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path.startswith("/files/"):
            return self._download(parts.path.split("/")[2])
        self._json(404, {"ok": False, "error": "unknown_path"})

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path.startswith("/upload/"):
            return self._upload(parts.path.split("/")[2])
        args = self._read_args()
        if parts.path.startswith("/respond/"):
            self._record("respond", args)
            return self._send(200, b"ok", "text/plain")
        method = parts.path.removeprefix("/api/")
        state = self.server.state
        if method == "oauth.v2.access":
            body = self._oauth_access(args)
            self._record(method, args)
            return self._json(200, body)
        if not self._authorized(method, args):
            self._record(method, args)
            return self._json(200, {"ok": False, "error": "not_authed"})
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            return self._json(200, {"ok": False, "error": "unknown_method"})
        body = handler(args)
        self._record(method, args)  # after answering logic, so a waiting test sees a complete effect
        self._json(200, body)

    # --- Web API methods ---

    def _api_auth_test(self, args: dict) -> dict:
        team = self.server.state.teams.get(self._token(args) or "")
        if team is not None:
            return {"ok": True, "url": f"https://{team['id'].lower()}.slack.test/", "team": team["name"],
                    "user": "capbot", "team_id": team["id"], "user_id": team["bot_user"], "bot_id": "B" + team["id"]}
        return {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "capbot",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}

    def _api_conversations_open(self, args: dict) -> dict:
        user = args.get("users", "")
        if not user or "," in user:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "channel": {"id": f"D{user}", "is_im": True}}

    def _oauth_access(self, args: dict) -> dict:
        state = self.server.state
        expected = base64.b64encode(f"{state.client_id}:{state.client_secret}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            return {"ok": False, "error": "invalid_client_id"}
        token = state.oauth_codes.pop(args.get("code", ""), None)  # a code works once
        if token is None:
            return {"ok": False, "error": "invalid_code"}
        team = state.teams[token]
        return {"ok": True, "app_id": "A1", "authed_user": {"id": "UINSTALLER"}, "scope": args.get("scope", ""),
                "token_type": "bot", "access_token": token, "bot_user_id": team["bot_user"],
                "team": {"id": team["id"], "name": team["name"]}, "enterprise": None,
                "is_enterprise_install": False}

    def _api_chat_postMessage(self, args: dict) -> dict:  # noqa: N802
        return {"ok": True, "channel": args.get("channel"), "ts": f"{time.time():.6f}", "message": args}

    def _api_chat_postEphemeral(self, args: dict) -> dict:  # noqa: N802
        return {"ok": True, "message_ts": f"{time.time():.6f}"}

    def _api_views_open(self, args: dict) -> dict:
        view = args.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        return {"ok": True, "view": {"id": "V1", **(view or {})}}

    def _api_conversations_history(self, args: dict) -> dict:
        if args.get("channel") in self.server.state.not_member_of:
            return {"ok": False, "error": "not_in_channel"}
        messages = self.server.state.history.get(args.get("channel", ""), [])
        return {"ok": True, "messages": messages[: int(args.get("limit", 100))], "has_more": False}

    def _api_conversations_info(self, args: dict) -> dict:
        channel = self.server.state.channels.get(args.get("channel", ""))
        return {"ok": True, "channel": channel} if channel else {"ok": False, "error": "channel_not_found"}

    def _api_users_info(self, args: dict) -> dict:
        user = self.server.state.users.get(args.get("user", ""))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _api_apps_connections_open(self, args: dict) -> dict:
        url = self.server.state.socket_url
        return {"ok": True, "url": url} if url else {"ok": False, "error": "not_allowed_token_type"}

    def _api_files_info(self, args: dict) -> dict:
        entry = self.server.state.files.get(args.get("file", ""))
        return {"ok": True, "file": entry[0]} if entry else {"ok": False, "error": "file_not_found"}

    def _api_files_getUploadURLExternal(self, args: dict) -> dict:  # noqa: N802
        uploads = self.server.state.uploads
        file_id = f"FUP{len(uploads) + 1}"
        uploads[file_id] = {"filename": args.get("filename"), "length": int(args.get("length") or 0), "data": None}
        return {"ok": True, "file_id": file_id, "upload_url": f"http://{self.headers['Host']}/upload/{file_id}"}

    def _api_files_completeUploadExternal(self, args: dict) -> dict:  # noqa: N802
        files = args.get("files")
        files = json.loads(files) if isinstance(files, str) else files or []
        done = []
        for entry in files:
            upload = self.server.state.uploads.get(entry.get("id"))
            if upload is None or upload["data"] is None:
                return {"ok": False, "error": "file_not_found"}
            upload.update(title=entry.get("title"), channel=args.get("channel_id"),
                          initial_comment=args.get("initial_comment"), thread_ts=args.get("thread_ts"))
            done.append({"id": entry["id"], "title": entry.get("title"), "name": upload["filename"]})
        return {"ok": True, "files": done}

    # --- helpers ---

    def _upload(self, file_id: str) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upload = self.server.state.uploads.get(file_id)
        if upload is None or len(data) != upload["length"]:
            return self._send(400, b"bad upload", "text/plain")
        upload["data"] = data
        self._record("upload", {"file": file_id, "bytes": len(data)})
        self._send(200, b"OK - " + str(len(data)).encode(), "text/plain")

    def _authorized(self, method: str, args: dict) -> bool:
        state = self.server.state
        if method == "apps.connections.open":
            return state.app_token is not None and self.headers.get("Authorization") == f"Bearer {state.app_token}"
        token = self._token(args)
        return token is not None and (token == state.token or token in state.teams)

    def _token(self, args: dict) -> str | None:
        """The bearer token of the request (slack_sdk sends it as a header; a `token` argument also counts)."""
        header = self.headers.get("Authorization") or ""
        return header.removeprefix("Bearer ") if header.startswith("Bearer ") else args.get("token")

    def _download(self, file_id: str) -> None:
        state = self.server.state
        self._record("download", {"file": file_id})
        allowed = {state.download_token or state.token, *state.teams}
        if self.headers.get("Authorization", "").removeprefix("Bearer ") not in allowed:
            page = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"
            return self._send(200, page, "text/html; charset=utf-8")
        entry = state.files.get(file_id)
        if entry is None:
            return self._send(404, b"not found", "text/plain")
        self._send(200, entry[1], entry[0].get("mimetype", "application/octet-stream"))

    def _read_args(self) -> dict[str, Any]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        args: dict[str, Any] = dict(parse_qsl(urlsplit(self.path).query))
        if "json" in (self.headers.get("Content-Type") or ""):
            args.update(json.loads(raw or b"{}"))
        else:
            args.update(parse_qsl(raw.decode()))
        return args

    def _record(self, method: str, args: dict[str, Any]) -> None:
        state = self.server.state
        with state.changed:
            state.calls.append(Call(method, args, {k.lower(): v for k, v in self.headers.items()}))
            state.changed.notify_all()

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeSlackState


class FakeSlack:
    """Context manager: `with FakeSlack(token) as slack: WebClient(token, base_url=slack.api_url)`."""

    def __init__(self, token: str = "xoxb-test-token", *, port: int = 0) -> None:
        """`port`: where to listen (0: a free one), e.g. where a bot already tries to connect."""
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = FakeSlackState(token=token)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def state(self) -> FakeSlackState:
        return self._server.state

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def add_file(self, file_id: str, data: bytes, *, mimetype: str = "image/png", name: str = "photo.png",
                 size: int | None = None, **extra: Any) -> dict[str, Any]:
        """Register a file and return its Slack file object (as events carry it)."""
        obj = {
            "id": file_id, "name": name, "mimetype": mimetype, "filetype": name.rsplit(".", 1)[-1],
            "size": len(data) if size is None else size,
            "url_private": f"{self.base_url}/files/{file_id}/{name}",
            "url_private_download": f"{self.base_url}/files/{file_id}/download/{name}",
            **extra,
        }
        self.state.files[file_id] = (obj, data)
        return obj

    def add_team(self, team_id: str, token: str, *, name: str | None = None, code: str | None = None) -> str:
        """Another workspace with its own bot token; returns the OAuth code that installs it (once)."""
        self.state.teams[token] = {"id": team_id, "name": name or f"Team {team_id}", "bot_user": f"UBOT{team_id}"}
        code = code or f"code-{team_id}"
        self.state.oauth_codes[code] = token
        return code

    def revoke_team(self, team_id: str) -> None:
        """The team uninstalled the app: its tokens stop working."""
        for token, team in list(self.state.teams.items()):
            if team["id"] == team_id:
                del self.state.teams[token]

    def response_url(self, name: str = "r1") -> str:
        return f"{self.base_url}/respond/{name}"

    def calls(self, method: str) -> list[Call]:
        """Recorded calls of one method, oldest first."""
        with self.state.changed:
            return [c for c in self.state.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0,
                 where: Callable[[Call], bool] = lambda call: True) -> list[Call]:
        """Block until at least `count` calls of `method` (that match `where`) arrived; return them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self.state.changed:
            while True:
                found = [c for c in self.state.calls if c.method == method and where(c)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} {method} call(s), got {len(found)}")
                self.state.changed.wait(left)

    def wait_for_first(self, *methods: str, timeout: float = 10.0) -> Call:
        """Block until a call of any of `methods` arrived; return the earliest (e.g. a reply or a refusal)."""
        deadline = time.monotonic() + timeout
        with self.state.changed:
            while True:
                found = [c for c in self.state.calls if c.method in methods]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected a call of {' or '.join(methods)}, got none")
                self.state.changed.wait(left)

    def __enter__(self) -> "FakeSlack":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
