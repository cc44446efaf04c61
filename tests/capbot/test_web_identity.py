"""Who a web request acts as: the client address (trusted proxies only), an API key, and per-request options."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.requests import Request

from capbot.web.context import request_options
from capbot.web.errors import ApiError
from capbot.web.identity import client_address, identify, pseudonym, subscriber
from inference.types import GenerationOptions

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def request(peer: str, *headers: tuple[str, str]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [(k.encode(), v.encode()) for k, v in headers],
                    "client": (peer, 5000), "query_string": b""})


@pytest.mark.parametrize("peer, forwarded, expected", [
    ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),  # not a proxy: its header is ignored
    ("10.0.0.2", ["1.2.3.4"], "1.2.3.4"),
    ("10.0.0.2", ["6.6.6.6, 1.2.3.4"], "1.2.3.4"),  # the left entry came from the client
    ("10.0.0.2", ["1.2.3.4, 10.0.0.7"], "1.2.3.4"),  # two proxies in a row
    ("10.0.0.2", ["6.6.6.6", "1.2.3.4"], "1.2.3.4"),  # several headers are one list
    ("10.0.0.2", ["garbage, 1.2.3.4"], "1.2.3.4"),
    ("10.0.0.2", ["1.2.3.4, garbage"], "10.0.0.2"),  # a malformed hop: trust nothing left of it
    ("10.0.0.2", ["1.2.3.4:8080"], "1.2.3.4"),
    ("10.0.0.2", ["[2001:db8::5]:443"], "2001:db8::5"),
    ("10.0.0.2", [], "10.0.0.2"),
    ("fd00::1", ["2001:db8::9"], "2001:db8::9"),
])
def test_client_address(peer, forwarded, expected):
    headers = [("x-forwarded-for", value) for value in forwarded]
    assert client_address(request(peer, *headers), PROXIES) == expected


def test_ipv6_callers_are_one_user_per_64():
    assert subscriber("2001:db8:1:2::1") == subscriber("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert subscriber("2001:db8:1:3::1") != subscriber("2001:db8:1:2::1")
    assert subscriber("::ffff:198.51.100.4") == "198.51.100.4"
    assert subscriber("198.51.100.4") == "198.51.100.4"


def test_identity_is_a_pseudonym_of_the_address_or_key():
    caller = identify(request("198.51.100.4"), api_keys=(), trusted_proxies=())
    assert caller.kind == "address" and caller.user == pseudonym("ip", "198.51.100.4")
    assert "198.51.100.4" not in caller.user and len(caller.user) <= 64
    keyed = identify(request("198.51.100.4", ("authorization", "Bearer s3cret")), api_keys=("s3cret",), trusted_proxies=())
    assert keyed.kind == "key" and keyed.user == pseudonym("key", "s3cret") and "s3cret" not in keyed.user
    for headers in [(), (("authorization", "Bearer nope"),), (("authorization", "Basic s3cret"),)]:
        with pytest.raises(ApiError) as refused:
            identify(request("198.51.100.4", *headers), api_keys=("s3cret",), trusted_proxies=())
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_request_options_follow_each_other():
    defaults = GenerationOptions(num_beams=3, max_new_tokens=24, num_alternatives=2, confidence_views=4)
    assert request_options(defaults, None, None, None) == defaults
    assert request_options(defaults, 1, None, None).num_alternatives == 0
    assert request_options(defaults, None, None, 5).num_beams == 6
    assert request_options(defaults, 8, 10, None) == GenerationOptions(num_beams=8, max_new_tokens=10, num_alternatives=2,
                                                                      confidence_views=4)  # the server's views
    with pytest.raises(ApiError) as refused:
        request_options(defaults, 2, None, 2)
    assert refused.value.code == "bad_options"
