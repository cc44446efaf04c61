"""The safe URL fetcher against a real local HTTP server; the default address policy is tested too."""

from __future__ import annotations

import time

import httpx
import pytest

from bots.fetch import AddressPolicy, FetchRefused, fetch_image
from tests.fakes.http_images import ImageServer

LOCAL = AddressPolicy(allow_private=True)
MB = 1_000_000


@pytest.fixture(scope="module")
def server():
    with ImageServer() as srv:
        yield srv


def fetch(url: str, **kwargs):
    kwargs.setdefault("max_bytes", MB)
    kwargs.setdefault("policy", LOCAL)
    kwargs.setdefault("timeout_s", 5.0)
    return fetch_image(url, **kwargs)


def refused(url: str, **kwargs) -> FetchRefused:
    with pytest.raises(FetchRefused) as info:
        fetch(url, **kwargs)
    return info.value


def test_fetches_an_image(server):
    got = fetch(server.url("/image.png"))
    assert got.data == server.state.image
    assert got.content_type == "image/png"


def test_follows_up_to_three_redirects(server):
    got = fetch(server.url("/redirect/3"))
    assert got.data == server.state.image
    assert got.url.endswith("/image.png")


def test_refuses_a_fourth_redirect(server):
    err = refused(server.url("/redirect/4"))
    assert err.reason == "too_many_redirects"
    assert "more than 3" in err.message


@pytest.mark.parametrize(
    "address, label",
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.5", "private"),
        ("192.168.1.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoint
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
    ],
)
def test_default_policy_refuses_non_public_addresses(address, label):
    assert AddressPolicy().off_limits(address) == label
    with pytest.raises(FetchRefused) as info:
        AddressPolicy().check("example.test", address)
    assert info.value.reason == "private_address"
    assert f"a {label} address" in info.value.message


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_default_policy_allows_public_addresses(address):
    assert AddressPolicy().off_limits(address) is None
    AddressPolicy().check("example.com", address)  # and check() raises nothing


def test_default_policy_refuses_the_local_server_before_connecting(server):
    before = len(server.state.requests)
    err = refused(server.url("/image.png"), policy=AddressPolicy())
    assert err.reason == "private_address" and "127.0.0.1" in err.message
    assert len(server.state.requests) == before  # never connected


def test_host_resolving_to_any_private_address_is_refused():
    def resolver(host, port):
        return ["93.184.215.14", "10.1.1.1"]

    with pytest.raises(FetchRefused) as info:
        fetch_image("http://mixed.example/x.png", max_bytes=MB, resolver=resolver)
    assert info.value.reason == "private_address" and "10.1.1.1" in info.value.message


def test_connects_to_the_vetted_address_not_a_second_lookup(server):
    # A rebinding resolver would answer differently on a second lookup; the fetcher must look up once per
    # hop and connect to that answer: a name that does not exist in DNS still reaches our server.
    calls = []

    def resolver(host, port):
        calls.append(host)
        return ["127.0.0.1"]

    got = fetch_image(f"http://images.invalid:{server.port}/image.png", max_bytes=MB, policy=LOCAL, resolver=resolver)
    assert got.data == server.state.image
    assert calls == ["images.invalid"]
    assert server.state.requests[-1].headers["host"] == f"images.invalid:{server.port}"


def test_redirect_to_a_private_address_is_refused(server):
    # The allow-list admits only 127.0.0.1; the redirect's 127.0.0.2 is loopback and must be checked again.
    policy = AddressPolicy(allowed_networks=("127.0.0.1/32",))
    err = refused(server.url("/redirect-to?url=http://127.0.0.2/image.png"), policy=policy)
    assert err.reason == "private_address" and "127.0.0.2" in err.message


def test_redirect_to_another_scheme_is_refused(server):
    err = refused(server.url("/redirect-to?url=file:///etc/passwd"))
    assert err.reason == "bad_scheme"


@pytest.mark.parametrize("url, reason", [("ftp://example.com/a.png", "bad_scheme"), ("file:///etc/passwd", "bad_scheme"),
                                         ("not a url at all", "bad_scheme"), ("http:///nohost", "bad_url")])
def test_refuses_bad_urls(url, reason):
    with pytest.raises(FetchRefused) as info:
        fetch_image(url, max_bytes=MB)
    assert info.value.reason == reason


def test_unresolvable_host():
    err = refused("http://no-such-host.invalid/a.png", policy=AddressPolicy())
    assert err.reason == "unresolvable" and "no-such-host.invalid" in err.message


def test_html_is_not_an_image(server):
    err = refused(server.url("/page.html"))
    assert err.reason == "not_image" and "text/html" in err.message


def test_missing_content_type_is_not_an_image(server):
    assert refused(server.url("/no-type")).reason == "not_image"


def test_http_error_status(server):
    err = refused(server.url("/status/404"))
    assert err.reason == "http_status" and "404" in err.message


def test_declared_size_over_the_cap_is_refused_early(server):
    started = time.monotonic()
    err = refused(server.url("/huge-declared?size=50000000"))
    assert err.reason == "too_large" and "50.0 MB" in err.message
    assert time.monotonic() - started < 2


def test_cap_is_enforced_while_streaming(server):
    err = refused(server.url("/huge-chunked?size=50000000"), max_bytes=200_000)
    assert err.reason == "too_large" and "0.2 MB limit" in err.message


def test_slow_drip_hits_the_overall_deadline(server):
    started = time.monotonic()
    err = refused(server.url("/slow?delay=0.1"), timeout_s=0.6)
    assert err.reason == "timeout"
    assert time.monotonic() - started < 2


def test_headers_go_to_the_first_origin_only(server):
    with ImageServer() as other:
        url = server.url(f"/redirect-to?url={other.url('/image.png')}")
        fetch(url, headers={"Authorization": "Bearer secret"})
        assert server.state.requests[-1].headers.get("authorization") == "Bearer secret"
        assert "authorization" not in other.state.requests[-1].headers


def test_connection_refused_is_reported():
    with ImageServer() as srv:
        url = srv.url("/image.png")
    err = refused(url)  # the server is gone: nothing listens on that port any more
    assert err.reason == "connect_failed"


def test_tries_the_next_vetted_address_when_one_does_not_answer(server):
    # 127.0.0.2 answers nothing on the server's port (the server listens on 127.0.0.1 only).
    got = fetch_image(f"http://dual.test:{server.port}/image.png", max_bytes=MB, policy=LOCAL,
                      resolver=lambda host, port: ["127.0.0.2", "127.0.0.1"])
    assert got.data == server.state.image


def test_a_trusted_origin_may_be_at_a_private_address(server):
    # A platform's configured API host (a proxy or a local stand-in) serves the platform's files.
    policy = AddressPolicy().trusting(server.url("/api/"))
    got = fetch(server.url("/image.png"), policy=policy)
    assert got.data == server.state.image


def test_trust_covers_that_origin_only(server):
    policy = AddressPolicy().trusting(server.url("/api/"))
    with ImageServer() as other:  # same host, another port
        assert refused(other.url("/image.png"), policy=policy).reason == "private_address"
        before = len(other.state.requests)
        err = refused(server.url(f"/redirect-to?url={other.url('/image.png')}"), policy=policy)
        assert err.reason == "private_address" and len(other.state.requests) == before
    err = refused(server.url(f"/redirect-to?url=http://127.0.0.2:{server.port}/image.png"), policy=policy)
    assert err.reason == "private_address" and "127.0.0.2" in err.message


def test_trusted_origins_compare_scheme_host_and_port():
    policy = AddressPolicy().trusting("https://slack.example/api/")
    assert policy.trusts(httpx.URL("https://slack.example:443/files/F1/a.png"))
    assert not policy.trusts(httpx.URL("http://slack.example/files/F1/a.png"))
    assert not policy.trusts(httpx.URL("https://files.slack.example/files/F1/a.png"))
    assert not AddressPolicy().trusts(httpx.URL("https://slack.example/api/"))
