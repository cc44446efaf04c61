"""The /v1 API, the old /api routes, probes and the page, in process, through the real composition root, bot core,
storage and tiny model."""

from __future__ import annotations

import io
import itertools
import re
from functools import partial

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bots.fetch import AddressPolicy, fetch_image_bytes
from capbot.web import WebConfig, create_web_app
from storage import captions, corrections, db, feedback, registry
from tests.fakes.http_images import ImageServer


_ADDRESSES = (f"172.16.{n // 200}.{n % 200 + 1}" for n in itertools.count())


def make_client(services, *, address: str | None = None, **config) -> TestClient:
    """A TestClient of the web app over `services`, calling from `address` (a new one by default: the module's
    tests share one server, and each caller has its own rate limits)."""
    settings = services.settings
    address = address or next(_ADDRESSES)
    web_config = WebConfig(max_image_bytes=config.pop("max_image_bytes", settings.max_image_bytes),
                           max_beams=settings.api_max_beams, max_new_tokens=settings.api_max_new_tokens, **config)
    app = create_web_app(services.core, web_config, engine=services.engine, metrics=services.metrics,
                         model_version=lambda: services.captioner.model_version, blobs=services.blobs)
    return TestClient(app, client=(address, 50000))


def build(tmp_path, tiny_model_dir, **overrides):
    """The real composition root over a fresh SQLite database and the tiny model. Captions are 4 tokens long:
    the untrained model never ends one early, and the limits tests must caption well inside a minute."""
    from capbot.app import build_services
    from capbot.settings import get_settings

    settings = get_settings(data_dir=tmp_path / "data", model=str(tiny_model_dir), device="cpu", max_new_tokens=4,
                            **overrides)
    return build_services(settings)


@pytest.fixture(scope="module")
def services(tmp_path_factory, tiny_model_dir):
    """One server for the module's tests (each calls from its own address)."""
    root = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # no developer .env
        built = build(root, tiny_model_dir)
        yield built
        built.close()


@pytest.fixture
def fresh_services(tmp_path, tiny_model_dir, monkeypatch):
    """A server of its own, for tests that count everything in the database or the metrics."""
    monkeypatch.chdir(tmp_path)
    built = build(tmp_path, tiny_model_dir)
    yield built
    built.close()


@pytest.fixture
def client(services):
    with make_client(services) as test_client:
        yield test_client


def upload(client, data: bytes, name: str = "photo.png", query: str = ""):
    return client.post(f"/v1/captions{query}", files={"file": (name, data, "application/octet-stream")})


def stored(services, caption_id):
    with db.session_scope(services.engine) as session:
        return captions.get_caption(session, caption_id)


def error_of(response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


# --- captions ---


def test_upload_gets_caption_alternatives_confidence_and_timings_and_is_stored(client, services, photo_bytes):
    response = upload(client, photo_bytes)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/captions/{body['id']}"
    assert body["text"] and body["model_version"] == services.captioner.model_version
    assert 0.0 <= body["confidence"] <= 1.0
    default = services.core.options
    assert default.num_alternatives == services.settings.num_alternatives == 2
    assert len(body["alternatives"]) <= 2 and body["text"] not in body["alternatives"]
    assert len(set(body["alternatives"])) == len(body["alternatives"])
    assert body["timings_ms"]["total"] >= body["timings_ms"]["caption"] > 0 and "queue" in body["timings_ms"]
    record = stored(services, body["id"])
    assert (record.text, record.platform) == (body["text"], "web")
    assert record.confidence == pytest.approx(body["confidence"]) and list(record.alternatives) == body["alternatives"]
    assert record.options["num_beams"] == 3 and record.options["num_alternatives"] == 2
    assert services.blobs.exists(record.image_sha256)
    assert "set-cookie" not in response.headers  # identity is the client address, not a cookie


def test_raw_image_body_is_captioned(client, photo_bytes):
    response = client.post("/v1/captions", content=photo_bytes, headers={"Content-Type": "image/png"})
    assert response.status_code == 201, response.text
    assert response.json()["text"]


def test_url_is_fetched_by_the_safe_fetcher(client, services, photo_bytes):
    with ImageServer() as server:
        server.state.image = photo_bytes
        refused = client.post("/v1/captions", json={"url": server.url("/image.png")})
        assert error_of(refused)[:2] == (422, "private_address")
        assert "127.0.0.1" in error_of(refused)[2]
        # The same request where the fetcher's policy allows this test's private image server:
        production = services.core.fetch_url
        services.core.fetch_url = partial(fetch_image_bytes, max_bytes=10_000_000, timeout_s=5,
                                          policy=AddressPolicy(allow_private=True))
        try:
            accepted = client.post("/v1/captions", json={"url": server.url("/image.png")})
            html = client.post("/v1/captions", json={"url": server.url("/page.html")})
        finally:
            services.core.fetch_url = production
        assert accepted.status_code == 201, accepted.text
        assert error_of(html)[:2] == (422, "not_image")


def test_generation_options_are_the_callers(client, services, photo_bytes):
    greedy = upload(client, photo_bytes, query="?beams=1&max_tokens=3")
    assert greedy.status_code == 201, greedy.text
    assert greedy.json()["alternatives"] == []  # one beam has no n-best
    record = stored(services, greedy.json()["id"])
    assert (record.options["num_beams"], record.options["max_new_tokens"], record.options["num_alternatives"]) == (1, 3, 0)
    more = upload(client, photo_bytes, query="?alternatives=4")
    assert more.status_code == 201
    assert stored(services, more.json()["id"]).options["num_beams"] == 5  # enough beams for 4 alternatives
    assert len(more.json()["alternatives"]) <= 4
    status, code, message = error_of(upload(client, photo_bytes, query="?beams=2&alternatives=3"))
    assert (status, code) == (422, "bad_options") and "at least 4 beams" in message
    status, code, message = error_of(upload(client, photo_bytes, query="?beams=99"))
    assert (status, code) == (422, "invalid_request") and "beams" in message


@pytest.mark.parametrize(
    "data, name, code",
    [
        (b"", "empty.png", "empty"),
        (b"hello, this is text", "notes.txt", "not_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "broken.png", "not_image"),
    ],
)
def test_bad_images_get_the_intakes_reason_with_a_4xx(client, data, name, code):
    status, got, message = error_of(upload(client, data, name))
    assert (status, got) == (422, code) and message


def test_truncated_image_is_refused_with_its_reason(client, photo_bytes):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes)).save(buffer, format="JPEG")
    status, code, _ = error_of(upload(client, buffer.getvalue()[: len(buffer.getvalue()) // 2], "half.jpg"))
    assert (status, code) == (422, "truncated")


def test_sizes_are_capped_while_reading(fresh_services, photo_bytes):
    services = fresh_services
    with make_client(services, max_image_bytes=1000) as small:
        status, code, message = error_of(upload(small, photo_bytes))
        assert (status, code) == (413, "too_large") and "1,000 bytes" in message
        declared = small.post("/v1/captions", content=photo_bytes, headers={"Content-Type": "image/png"})
        assert error_of(declared)[:2] == (413, "too_large")
        sent = []

        def chunks():  # no Content-Length: the server counts the bytes as they arrive
            for start in range(0, len(photo_bytes), 500):
                sent.append(start)
                yield photo_bytes[start:start + 500]

        streamed = small.post("/v1/captions", content=chunks(), headers={"Content-Type": "image/png"})
        assert error_of(streamed)[:2] == (413, "too_large")
        assert not stored(services, 1)


def test_unusable_requests_are_specific_errors(client):
    assert error_of(client.post("/v1/captions", content=b"x", headers={"Content-Type": "text/plain"}))[:2] == (
        415, "unsupported_media_type")
    assert error_of(client.post("/v1/captions", files={"other": ("a.png", b"x")}))[:2] == (422, "no_image")
    assert error_of(client.post("/v1/captions", json={"link": "x"}))[:2] == (422, "invalid_request")
    assert error_of(client.post("/v1/captions", content=b"{", headers={"Content-Type": "application/json"}))[:2] == (
        422, "invalid_request")
    assert error_of(client.get("/v1/nothing-here"))[:2] == (404, "not_found")
    assert error_of(client.get("/v1/captions/not-a-number"))[:2] == (422, "invalid_request")


# --- reading and correcting ---


def test_get_caption_is_the_callers_own(client, services, photo_bytes):
    caption_id = upload(client, photo_bytes).json()["id"]
    mine = client.get(f"/v1/captions/{caption_id}")
    assert mine.status_code == 200
    assert mine.json()["id"] == caption_id and mine.json()["text"] == stored(services, caption_id).text
    with make_client(services, address="203.0.113.50") as stranger:
        assert error_of(stranger.get(f"/v1/captions/{caption_id}"))[:2] == (404, "unknown_caption")
        refused = stranger.post(f"/v1/captions/{caption_id}/corrections", json={"text": "a dog in the snow"})
        assert error_of(refused)[:2] == (404, "unknown_caption")
    assert error_of(client.get("/v1/captions/999999"))[:2] == (404, "unknown_caption")


def test_correction_accepted_then_refused_with_reason(client, services, photo_bytes):
    caption_id = upload(client, photo_bytes).json()["id"]
    accepted = client.post(f"/v1/captions/{caption_id}/corrections", json={"text": "a cat looking at the camera"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["status"] == "accepted" and "Thanks" in accepted.json()["message"]
    status, code, message = error_of(client.post(f"/v1/captions/{caption_id}/corrections",
                                                 json={"text": "see https://example.com"}))
    assert (status, code) == (422, "link") and "links" in message
    with db.session_scope(services.engine) as session:
        texts = [c.text for c in corrections.corrections_for_caption(session, caption_id)]
    assert texts == ["a cat looking at the camera"]


def test_one_address_is_one_user_per_image_in_the_feedback_export(fresh_services, photo_bytes):
    """Re-uploading and correcting again, with or without cookies, leaves one correction per image and address."""
    services = fresh_services
    with make_client(services) as one:
        ids = [upload(one, photo_bytes).json()["id"] for _ in range(3)]
        for n, caption_id in enumerate(ids * 2):
            one.cookies.clear()
            response = one.post(f"/v1/captions/{caption_id}/corrections", json={"text": f"a striped cat, take {n}"})
            assert response.status_code == 201, response.text
    with db.session_scope(services.engine) as session:
        rows = feedback.export_feedback(session, services.blobs)
    assert [(r.caption, r.users) for r in rows] == [("a striped cat, take 5", 1)]
    with make_client(services, address="192.0.2.99") as another:
        caption_id = upload(another, photo_bytes).json()["id"]
        another.post(f"/v1/captions/{caption_id}/corrections", json={"text": "a tabby cat indoors"})
    with db.session_scope(services.engine) as session:
        rows = feedback.export_feedback(session, services.blobs)
    assert [(r.caption, r.users) for r in rows] == [("a tabby cat indoors", 2)]


# --- limits ---


def test_caption_limit_keys_on_the_address_not_on_cookies_or_forwarded_headers(client, services, photo_bytes):
    limit = services.settings.rate_limit_per_minute
    statuses = []
    for n in range(limit + 2):
        client.cookies.clear()
        response = client.post("/v1/captions", files={"file": ("p.png", photo_bytes)},
                               headers={"X-Forwarded-For": f"10.9.8.{n}"})
        statuses.append(response.status_code)
    assert statuses == [201] * limit + [429, 429]
    assert error_of(response)[1] == "rate_limited" and 1 <= int(response.headers["retry-after"]) <= 60
    with make_client(services, address="203.0.113.8") as other:
        assert upload(other, photo_bytes).status_code == 201  # another address has its own allowance


def test_trusted_proxy_forwards_the_client_address(services, photo_bytes):
    import ipaddress

    proxy = "10.0.0.2"
    with make_client(services, address=proxy, trusted_proxies=(ipaddress.ip_network("10.0.0.0/24"),)) as via_proxy:
        limit = services.settings.rate_limit_per_minute
        for n in range(limit):
            assert upload_from(via_proxy, photo_bytes, f"6.6.6.{n}, 198.51.100.20").status_code == 201
        # The client wrote the left entries; the proxy appended the real address: still the same caller.
        assert upload_from(via_proxy, photo_bytes, "7.7.7.7, 198.51.100.20").status_code == 429
        assert upload_from(via_proxy, photo_bytes, "198.51.100.21").status_code == 201


def upload_from(client, data, forwarded_for):
    return client.post("/v1/captions", files={"file": ("p.png", data)}, headers={"X-Forwarded-For": forwarded_for})


@pytest.fixture
def strict_services(tmp_path, tiny_model_dir):
    """The composition root with a correction limit of 3 a minute."""
    built = build(tmp_path / "strict", tiny_model_dir, correction_rate_limit_per_minute=3)
    yield built
    built.close()


def test_correction_limit(strict_services, photo_bytes):
    with make_client(strict_services) as client:
        caption_id = upload(client, photo_bytes).json()["id"]
        answers = [client.post(f"/v1/captions/{caption_id}/corrections", json={"text": f"a grey cat number {n}"})
                   for n in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert error_of(answers[-1])[1] == "rate_limited" and answers[-1].headers["retry-after"]


# --- API keys ---


def test_api_keys_are_required_when_configured_and_captions_are_attributed_to_the_key(services, photo_bytes):
    with make_client(services, api_keys=("k-alpha", "k-beta")) as keyed:
        missing = upload(keyed, photo_bytes)
        assert error_of(missing)[:2] == (401, "unauthorized") and missing.headers["www-authenticate"].startswith("Bearer")
        keyed.headers["Authorization"] = "Bearer wrong"
        assert upload(keyed, photo_bytes).status_code == 401
        assert keyed.get("/v1/models").status_code == 401
        assert keyed.get("/healthz").status_code == 200 and keyed.get("/metrics").status_code == 200
        keyed.headers["Authorization"] = "Bearer k-alpha"
        made = upload(keyed, photo_bytes)
        assert made.status_code == 201, made.text
        caption_id = made.json()["id"]
        assert keyed.post(f"/v1/captions/{caption_id}/corrections", json={"text": "a cat on a rug"}).status_code == 201
        keyed.headers["Authorization"] = "Bearer k-beta"
        assert keyed.get(f"/v1/captions/{caption_id}").status_code == 404  # another key's caption
        assert '"needsKey": true' in keyed.get("/").text
    record = stored(services, caption_id)
    assert record.user_id.startswith("key:") and "k-alpha" not in record.user_id
    with db.session_scope(services.engine) as session:
        [correction] = corrections.corrections_for_caption(session, caption_id)
    assert correction.user_id == record.user_id


# --- the old routes ---


def test_old_api_routes_still_work(client, services, photo_bytes):
    made = client.post("/api/captions", files={"file": ("photo.png", photo_bytes, "image/png")})
    assert made.status_code == 200, made.text
    body = made.json()
    assert set(body) == {"caption_id", "text", "model_version", "latency_ms"}
    corrected = client.post(f"/api/captions/{body['caption_id']}/corrections", json={"text": "a cat on a blanket"})
    assert corrected.status_code == 201
    refused = client.post(f"/api/captions/{body['caption_id']}/corrections", json={"text": "see www.example.com"})
    assert refused.status_code == 422 and refused.json()["reason"] == "link" and refused.json()["detail"]
    text = client.post("/api/captions", files={"file": ("x.txt", b"hello")})
    assert text.status_code == 422 and "not an image" in text.json()["detail"]
    assert client.get("/api/openapi.json", follow_redirects=False).headers["location"] == "/v1/openapi.json"


# --- models, probes, metrics, schema, page ---


def test_models_lists_the_registry_and_what_serves(fresh_services):
    services = fresh_services
    client = make_client(services)
    empty = client.get("/v1/models").json()
    assert empty == {"serving": services.captioner.model_version, "active": None, "versions": []}
    with db.session_scope(services.engine) as session:
        registry.register_version(session, version_id="v-one", location="/models/one")
        registry.register_version(session, version_id="v-two", location="/models/two", parent_id="v-one")
        registry.promote(session, "v-two")
    listed = client.get("/v1/models").json()
    assert listed["active"] == "v-two"
    assert {v["id"]: v["status"] for v in listed["versions"]} == {"v-one": "candidate", "v-two": "active"}
    assert "location" not in listed["versions"][0]  # server paths stay private


def test_health_and_readiness(client, services, tmp_path):
    assert client.get("/healthz").json() == {"status": "ok", "model_version": services.captioner.model_version}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["checks"]["database"]["ok"] and ready.json()["checks"]["model"]["ok"]
    url = f"sqlite:///{tmp_path / 'empty.db'}"  # reachable, never migrated
    app = create_web_app(services.core, WebConfig(max_image_bytes=1000), engine=db.create_engine_for(url),
                         model_version=lambda: services.captioner.model_version)
    with TestClient(app) as unready:
        answer = unready.get("/readyz")
    assert answer.status_code == 503 and answer.json()["status"] == "not_ready"
    assert "capbot db upgrade" in answer.json()["checks"]["database"]["detail"]


def test_metrics_in_prometheus_text_format(fresh_services, photo_bytes):
    from prometheus_client.parser import text_string_to_metric_families

    services = fresh_services
    client = make_client(services)
    caption_id = upload(client, photo_bytes).json()["id"]
    client.post(f"/v1/captions/{caption_id}/corrections", json={"text": "see https://example.com"})
    client.post(f"/v1/captions/{caption_id}/corrections", json={"text": "a cat by a window"})
    upload(client, b"not an image", "x.txt")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("capbot_http_requests_total", route="/v1/captions", method="POST", status="201") == 1
    assert value("capbot_http_requests_total", route="/v1/captions", method="POST", status="422") == 1
    assert value("capbot_captions_total", platform="web") == 1
    assert value("capbot_caption_seconds_count", platform="web") == 1
    assert value("capbot_caption_refusals_total", platform="web", reason="not_image") == 1
    assert value("capbot_corrections_total", platform="web", outcome="refused", reason="link") == 1
    assert value("capbot_corrections_total", platform="web", outcome="accepted", reason="accepted") == 1
    assert value("capbot_queue_depth") == 0
    assert value("capbot_model_info", version=services.captioner.model_version) == 1
    while upload(client, photo_bytes).status_code != 429:
        pass
    limited = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(client.get("/metrics").text) for s in family.samples}
    assert limited[("capbot_rate_limited_total", (("action", "caption"), ("platform", "web")))] == 1


def test_openapi_schema_documents_bodies_responses_and_errors(client):
    schema = client.get("/v1/openapi.json").json()
    paths = schema["paths"]
    for path, method in [("/v1/captions", "post"), ("/v1/captions/{caption_id}", "get"),
                         ("/v1/captions/{caption_id}/corrections", "post"), ("/v1/models", "get"),
                         ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")]:
        assert method in paths[path], (path, method)
        operation = paths[path][method]
        assert operation.get("summary") and operation.get("description"), (path, method)
        success = operation["responses"].get("201") or operation["responses"]["200"]
        assert success["content"], (path, method)
    create = paths["/v1/captions"]["post"]
    assert set(create["requestBody"]["content"]) == {"multipart/form-data", "image/*", "application/json"}
    assert {p["name"] for p in create["parameters"]} == {"beams", "max_tokens", "alternatives"}
    for status in ("401", "413", "415", "422", "429", "500"):
        ref = create["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody")
    correction = paths["/v1/captions/{caption_id}/corrections"]["post"]
    assert correction["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CorrectionIn")
    assert "404" in correction["responses"] and "422" in correction["responses"]
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"}
    assert paths["/api/captions"]["post"]["deprecated"] is True


def test_page_is_self_contained_and_configured(client, services):
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "Suggest a better caption" in html and 'id="alternative-list"' in html and 'id="drop-zone"' in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(https?:)?//", html)  # no CDNs or remote assets
    assert "__CAPBOT_PAGE_CONFIG__" not in html
    assert f'"maxBeams": {services.settings.api_max_beams}' in html and '"needsKey": false' in html
    assert "default-src 'none'" in page.headers["content-security-policy"]
