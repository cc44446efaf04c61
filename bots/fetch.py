"""Fetch an image from a URL a chat user gave us, without letting that URL reach inside our network.

Each hop (the URL and every redirect, at most `max_redirects`) is resolved here, every address is checked
against an `AddressPolicy`, and the connection goes to the address that was checked (a pinned network
backend), so a DNS answer that changes between check and connect (rebinding) cannot slip through. The body
streams under a byte cap and an overall deadline, and must be `image/*`. Every refusal is a `FetchRefused`
with a specific message and a machine-readable `reason`.

A chat platform's own file downloads may be served by the host an operator configured for that platform (a
proxy or a local stand-in of the Slack Web API): `AddressPolicy.trusting(api_url)` lets that one origin reach
any address. Links users type never get that trust.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping

import httpcore
import httpx

from storage.errors import UserError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP address strings

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


class FetchRefused(UserError):
    """The URL or what it answered cannot be used; the message says why."""


@dataclass(frozen=True)
class FetchedImage:
    """Bytes of an image fetched by URL."""

    data: bytes
    content_type: str
    url: str  # the final URL, after redirects


def _classify(ip: IPAddress) -> str | None:
    """Why an address is off limits (a few words), or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _classify(ip.ipv4_mapped)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),  # before "private": Python counts 240.0.0.0/4 as both
        ("private", ip.is_private),
        ("non-public", not ip.is_global),  # e.g. shared address space 100.64.0.0/10, 6to4/teredo oddities
    )
    return next((label for label, hit in checks if hit), None)


@dataclass(frozen=True)
class AddressPolicy:
    """Which resolved addresses a fetch may connect to. The default allows public addresses only."""

    allow_private: bool = False  # tests: reach servers on 127.0.0.1; never in production
    allowed_networks: tuple[str, ...] = ()  # explicit exceptions, e.g. ("10.1.2.0/24",) for an internal CDN
    trusted_origins: tuple[str, ...] = ()  # "scheme://host:port" an operator configured; any address (see `trusting`)

    def trusting(self, url: str) -> "AddressPolicy":
        """This policy, plus: `url`'s origin (scheme, host, port) may be at any address.

        For a platform's own files served by its configured API host (CAPBOT_SLACK_API_URL pointing at a proxy
        or a local stand-in); only that exact origin gains, never its other ports or hosts it redirects to.
        """
        return replace(self, trusted_origins=(*self.trusted_origins, _origin_key(_parse(url))))

    def trusts(self, url: httpx.URL) -> bool:
        """True when `url` is on one of the trusted origins, so its addresses are not checked."""
        return _origin_key(url) in self.trusted_origins

    def off_limits(self, address: str) -> str | None:
        """Why this policy keeps `address` out (e.g. "loopback"), or None when a fetch may connect to it."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if self.allow_private or any(ip in ipaddress.ip_network(n, strict=False) for n in self.allowed_networks):
            return None
        return _classify(ip)

    def check(self, host: str, address: str) -> None:
        """Raise `FetchRefused` when `address` (resolved from `host`) is off limits."""
        label = self.off_limits(address)
        if label is not None:
            raise FetchRefused(
                f"I won't fetch {host}: it points to {address}, a {label} address, not a public web server.",
                reason="private_address",
            )


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host:port (IPv4 and IPv6), in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"I couldn't find the server {host} (DNS lookup failed).", reason="unresolvable") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to one vetted address whatever host name httpcore asks for (TLS still verifies the name)."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ANN001
        return self._inner.connect_tcp(self._address, port, timeout, local_address, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchRefused(f"That doesn't look like a web address: {str(url)[:200]}", reason="bad_url") from exc
    if parsed.scheme not in ("http", "https"):
        raise FetchRefused(
            f"I only fetch http:// and https:// links, not {parsed.scheme or 'scheme-less'} ones.", reason="bad_scheme"
        )
    if not parsed.host:
        raise FetchRefused(f"That link has no host name: {str(url)[:200]}", reason="bad_url")
    return parsed


def _vetted_addresses(url: httpx.URL, policy: AddressPolicy, resolver: Resolver) -> list[str]:
    """Resolve the URL's host and check every address: one bad answer refuses the whole host."""
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolver(url.host, port)
    if not addresses:
        raise FetchRefused(f"I couldn't find the server {url.host} (no addresses).", reason="unresolvable")
    if policy.trusts(url):
        return addresses  # the operator configured this origin for the platform's files
    for address in addresses:
        policy.check(url.host, address)
    return addresses


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port), the port filled in when the URL leaves it implicit."""
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


def _origin_key(url: httpx.URL) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def fetch_image(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float = 10.0,
    max_redirects: int = 3,
    policy: AddressPolicy = AddressPolicy(),
    headers: Mapping[str, str] | None = None,
    resolver: Resolver = system_resolver,
) -> FetchedImage:
    """GET an image by URL under the rules in the module docstring; raise `FetchRefused` with the reason."""
    current = _parse(url)
    first_origin = _origin(current)
    deadline = time.monotonic() + timeout_s
    for hop in range(max_redirects + 1):
        addresses = _vetted_addresses(current, policy, resolver)
        sent = dict(headers or {}) if _origin(current) == first_origin else {}  # credentials never leave the first origin
        outcome = _get_any(current, addresses, sent, max_bytes, timeout_s, deadline)
        if isinstance(outcome, FetchedImage):
            return outcome
        current = _parse(current.join(outcome))
        log.debug("following redirect", extra={"hop": hop + 1, "host": current.host})
    raise FetchRefused(f"That link redirected more than {max_redirects} times; I gave up.", reason="too_many_redirects")


def fetch_image_bytes(url: str, **kwargs) -> bytes:  # noqa: ANN003
    """`fetch_image(...)`'s bytes: the shape `BotCore(fetch_url=...)` expects."""
    return fetch_image(url, **kwargs).data


def _get_any(
    url: httpx.URL, addresses: list[str], headers: Mapping[str, str], max_bytes: int, timeout_s: float, deadline: float
) -> FetchedImage | str:
    """Try the vetted addresses in order (e.g. IPv6 then IPv4) until one accepts the connection."""
    for address in addresses[:-1]:
        try:
            return _get_once(url, address, headers, max_bytes, timeout_s, deadline)
        except FetchRefused as exc:
            if exc.reason != "connect_failed":
                raise
    return _get_once(url, addresses[-1], headers, max_bytes, timeout_s, deadline)


def _get_once(
    url: httpx.URL, address: str, headers: Mapping[str, str], max_bytes: int, timeout_s: float, deadline: float
) -> FetchedImage | str:
    """One GET to the pinned address: the image, or the Location of a redirect."""
    timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    request_headers = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"Accept", b"image/*")]
    try:
        with httpcore.ConnectionPool(network_backend=_PinnedBackend(address), retries=0) as pool:
            with pool.stream("GET", str(url), headers=request_headers, extensions={"timeout": timeouts}) as resp:
                return _read_response(url, resp, max_bytes, deadline)
    except httpcore.TimeoutException as exc:
        raise FetchRefused(f"{url.host} took too long to answer (over {timeout_s:g} s).", reason="timeout") from exc
    except httpcore.ConnectError as exc:
        raise FetchRefused(f"I couldn't connect to {url.host}.", reason="connect_failed") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise FetchRefused(f"The download from {url.host} broke off ({type(exc).__name__}).", reason="broken") from exc


def _header(resp: httpcore.Response, name: bytes) -> str:
    for key, value in resp.headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return ""


def _read_response(url: httpx.URL, resp: httpcore.Response, max_bytes: int, deadline: float) -> FetchedImage | str:
    if resp.status in _REDIRECTS and _header(resp, b"location"):
        return _header(resp, b"location")
    if resp.status != 200:
        raise FetchRefused(f"{url.host} answered HTTP {resp.status} for that link.", reason="http_status")
    content_type = _header(resp, b"content-type").split(";", 1)[0].strip().lower()
    if not content_type.startswith("image/"):
        shown = content_type or "no content type"
        raise FetchRefused(f"That link is not an image (the server says {shown}).", reason="not_image")
    declared = _header(resp, b"content-length")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(_too_large(int(declared), max_bytes), reason="too_large")
    data = _read_capped(resp.iter_stream(), max_bytes, deadline, url.host)
    return FetchedImage(data=data, content_type=content_type, url=str(url))


def _read_capped(chunks: Iterable[bytes], max_bytes: int, deadline: float, host: str) -> bytes:
    """Collect the body, stopping as soon as it passes the cap or the overall deadline (slow drips)."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise FetchRefused(_too_large(len(body), max_bytes, at_least=True), reason="too_large")  # stop reading now
        if time.monotonic() > deadline:
            raise FetchRefused(f"{host} is sending the image too slowly; I gave up.", reason="timeout")
    return bytes(body)


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    if at_least:
        return f"That image is larger than the {limit / 1e6:.1f} MB limit."
    return f"That image is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB."
