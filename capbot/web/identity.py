"""Who is calling: an API key's holder, or (anonymous web callers) one client address.

Rate limits, correction counting and ownership key on this identity, so an anonymous caller cannot
multiply itself by dropping cookies. The client address is the connecting peer's, except when the peer is
a configured trusted proxy: then it is the right-most X-Forwarded-For entry that is not a trusted proxy
itself (entries further left were written by the client and prove nothing). IPv6 callers are keyed by
their /64, the block one subscriber usually holds, so rotating addresses inside it does not help either.

Stored user ids are pseudonyms, never the raw address or key: "ip:" or "key:" + a SHA-256 prefix.
An IPv4 pseudonym can be reversed by trying every address, so treat it as personal data; `capbot
forget-user` takes it like any other user id.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Sequence

from starlette.requests import Request

from capbot.web.errors import ApiError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_SUBSCRIBER_PREFIX = 64


@dataclass(frozen=True)
class Caller:
    """The identity a request acts as."""

    user: str  # the stored user id: "key:<hash>" or "ip:<hash>"
    kind: str  # "key" or "address"


def client_address(request: Request, trusted_proxies: Sequence[Network]) -> str:
    """The caller's address: the peer's, or what trusted proxies forwarded (see the module docstring)."""
    peer = request.client.host if request.client else ""
    if not _is_trusted(peer, trusted_proxies):
        return peer
    chain = [_strip_port(part.strip()) for header in request.headers.getlist("x-forwarded-for")
             for part in header.split(",")]
    for hop in reversed([h for h in chain if h]):
        if _parse(hop) is None:
            break  # a malformed entry: nothing to its left can be trusted either
        if not _is_trusted(hop, trusted_proxies):
            return hop
    return peer


def identify(request: Request, *, api_keys: Sequence[str], trusted_proxies: Sequence[Network]) -> Caller:
    """The caller of `request`. With API keys configured, a missing or unknown key is a 401."""
    if api_keys:
        key = _bearer(request)
        if key is None or not any(hmac.compare_digest(key.encode(), k.encode()) for k in api_keys):
            raise ApiError(401, "unauthorized", "This API needs a key: send `Authorization: Bearer YOUR_KEY`.",
                           {"WWW-Authenticate": 'Bearer realm="capbot"'})
        return Caller(user=pseudonym("key", key), kind="key")
    return Caller(user=pseudonym("ip", subscriber(client_address(request, trusted_proxies))), kind="address")


def subscriber(address: str) -> str:
    """The part of an address that names one subscriber: the IPv4 address, or the IPv6 /64."""
    parsed = _parse(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_SUBSCRIBER_PREFIX}", strict=False))
    return str(parsed) if parsed is not None else address


def pseudonym(kind: str, value: str) -> str:
    """A stable stored id for a key or an address that does not reveal it at a glance."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:24]}"


def bearer_key(request: Request) -> str | None:
    """The key a request sends as `Authorization: Bearer KEY`, or None."""
    return _bearer(request)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in network for network in trusted)


def _strip_port(hop: str) -> str:
    """X-Forwarded-For entries are addresses, but some proxies add a port: "[2001:db8::1]:443", "1.2.3.4:80"."""
    if hop.startswith("[") and "]" in hop:
        return hop[1:hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop
