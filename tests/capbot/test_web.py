"""The demo page and JSON API, through the real composition root, bot core, storage and tiny model."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from capbot.web import create_web_app
from storage import captions, corrections, db


@pytest.fixture
def client(services):
    app = create_web_app(services.core, max_image_bytes=services.settings.max_image_bytes,
                         model_version=lambda: services.captioner.model_version)
    with TestClient(app) as test_client:
        yield test_client


def _upload(client, data: bytes, name: str = "photo.png"):
    return client.post("/api/captions", files={"file": (name, data, "application/octet-stream")})


def test_page_and_health(client, services):
    page = client.get("/")
    assert page.status_code == 200 and "Suggest a better caption" in page.text
    assert client.get("/healthz").json() == {"status": "ok", "model_version": services.captioner.model_version}


def test_upload_is_captioned_and_stored(client, services, photo_bytes):
    response = _upload(client, photo_bytes)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] and body["model_version"] == services.captioner.model_version
    with db.session_scope(services.engine) as session:
        record = captions.get_caption(session, body["caption_id"])
    assert record.text == body["text"] and record.platform == "web"
    assert services.blobs.exists(record.image_sha256)


def test_correction_accepted_then_refused_with_reason(client, services, photo_bytes):
    caption_id = _upload(client, photo_bytes).json()["caption_id"]
    accepted = client.post(f"/api/captions/{caption_id}/corrections", json={"text": "a cat looking at the camera"})
    assert accepted.status_code == 201, accepted.text
    refused = client.post(f"/api/captions/{caption_id}/corrections", json={"text": "see https://example.com"})
    assert refused.status_code == 422
    assert refused.json()["reason"] == "link" and refused.json()["detail"]
    with db.session_scope(services.engine) as session:
        stored = corrections.corrections_for_caption(session, caption_id)
    assert [c.text for c in stored] == ["a cat looking at the camera"]


@pytest.mark.parametrize(
    "data, status, words",
    [
        (b"", 422, "empty"),
        (b"hello, this is text", 422, "not an image"),
    ],
)
def test_bad_uploads_get_specific_errors(client, data, status, words):
    response = _upload(client, data, "x.txt")
    assert response.status_code == status
    assert words in response.json()["detail"].lower()


def test_oversized_upload_is_refused(services, photo_bytes):
    app = create_web_app(services.core, max_image_bytes=1000, model_version=lambda: "v")
    with TestClient(app) as small:
        response = _upload(small, photo_bytes)
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_missing_file_field(client):
    response = client.post("/api/captions")
    assert response.status_code == 422 and "file" in response.json()["detail"]
