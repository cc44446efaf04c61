"""Confirmations on the /v1 API, the operator's /v1/admin API (review queue with thumbnails, correct and confirm,
model versions with their gate metrics, promote and rollback), and the offline API docs and favicon, in process
through the real composition root and tiny model."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from storage import corrections, db, feedback, registry
from tests.capbot.test_web import error_of, make_client, services, upload  # noqa: F401  (the module's server)

ADMIN = "operator-secret-key"


def _png(colour, size) -> bytes:
    """A picture of one colour no other test uploads (each image is its own queue entry)."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _answers(services, caption_id):
    with db.session_scope(services.engine) as session:
        return [(c.kind, c.text, c.status, c.user_id) for c in corrections.corrections_for_caption(session, caption_id)]


def test_confirming_a_caption_is_stored_as_feedback(services, photo_bytes):
    with make_client(services) as client, make_client(services) as stranger:
        made = upload(client, photo_bytes).json()
        answer = client.post(f"/v1/captions/{made['id']}/confirmations")
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "accepted" and "right" in answer.json()["message"]
        assert error_of(stranger.post(f"/v1/captions/{made['id']}/confirmations"))[:2] == (404, "unknown_caption")
    [(kind, text, status, _)] = _answers(services, made["id"])
    assert (kind, text, status) == ("confirmation", made["text"], "accepted")
    with db.session_scope(services.engine) as session:
        rows = [r for r in feedback.export_corrections(session, services.blobs) if r.correction_id is not None]
    assert any(r.caption == r.model_caption == made["text"] for r in rows)


def test_the_operator_api_opens_only_with_its_key(services):
    with make_client(services) as closed:
        assert error_of(closed.get("/v1/admin/queue"))[:2] == (403, "operator_off")
    with make_client(services, admin_keys=(ADMIN,)) as client:
        assert error_of(client.get("/v1/admin/queue"))[:2] == (401, "unauthorized")
        client.headers["Authorization"] = "Bearer not-it"
        assert client.get("/v1/admin/models").status_code == 401
        assert client.post("/v1/admin/models/rollback").status_code == 401
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        assert client.get("/v1/admin/queue").status_code == 200
    # Without an admin key the API keys open it (Settings.admin_key_list), and with one only it does.
    from capbot.settings import get_settings

    assert get_settings(api_keys="a,b").admin_key_list == ("a", "b")
    assert get_settings(api_keys="a,b", admin_key="root").admin_key_list == ("root",)
    assert get_settings().admin_key_list == ()


def test_the_queue_shows_thumbnails_and_takes_corrections_and_confirmations(services, photo_bytes):
    with make_client(services) as user, make_client(services, admin_keys=(ADMIN,)) as operator:
        operator.headers["Authorization"] = f"Bearer {ADMIN}"
        first = upload(user, _png((40, 160, 60), (300, 300)), "green.png").json()
        second = upload(user, _png((30, 90, 200), (900, 600)), "blue.png").json()
        items = {i["caption_id"]: i for i in operator.get("/v1/admin/queue?limit=200").json()["items"]}
        assert {first["id"], second["id"]} <= set(items)
        item = items[second["id"]]
        assert item["caption"] == second["text"] and 0 <= item["confidence"] <= 1 and item["score"] > 0
        thumb = operator.get(f"/v1/admin/images/{item['image_sha256']}")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size == (320, 213)
        assert error_of(operator.get("/v1/admin/images/" + "0" * 64))[:2] == (404, "unknown_image")
        assert operator.get("/v1/admin/images/..%2Fcapbot.db").status_code == 404

        fixed = operator.post(f"/v1/admin/captions/{second['id']}/corrections", json={"text": "a plain blue picture"})
        assert fixed.status_code == 201, fixed.text
        assert operator.post(f"/v1/admin/captions/{first['id']}/confirmations").status_code == 201
        assert error_of(operator.post("/v1/admin/captions/999999/confirmations"))[:2] == (404, "unknown_caption")
        after = {i["caption_id"]: i for i in operator.get("/v1/admin/queue?limit=200").json()["items"]}
    assert after[second["id"]]["corrections"] == ["a plain blue picture"]
    assert after[first["id"]]["confirmations"] == 1
    assert after[first["id"]]["uncertainty"] == pytest.approx(items[first["id"]]["uncertainty"] / 2, abs=1e-3)
    [(kind, _, _, who)] = _answers(services, first["id"])
    assert kind == "confirmation" and who.startswith("admin:") and ADMIN not in who


def test_versions_with_gate_metrics_promote_and_rollback(services):
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with db.session_scope(services.engine) as session:
        registry.register_version(session, version_id="op-trained", location="/m/trained", metrics={"cider": 0.41},
                                  now=t0)
        registry.register_version(session, version_id="op-retrained", location="/m/retrained", parent_id="op-trained",
                                  metrics={"base": {"cider": 0.45, "bleu_4": 0.2, "rouge_l": 0.4},
                                           "feedback": {"cider": 1.2, "bleu_4": 0.3, "rouge_l": 0.5},
                                           "gate": {"promote": True, "reason": "feedback CIDEr +0.30", "max_base_drop": 0.02}},
                                  now=t0 + timedelta(days=7))
    with make_client(services, admin_keys=(ADMIN,)) as operator:
        operator.headers["Authorization"] = f"Bearer {ADMIN}"
        listed = operator.get("/v1/admin/models").json()
        points = {p["id"]: p for p in listed["points"]}
        assert (points["op-trained"]["base_cider"], points["op-trained"]["feedback_cider"]) == (0.41, None)
        assert (points["op-retrained"]["base_cider"], points["op-retrained"]["feedback_cider"]) == (0.45, 1.2)
        assert points["op-retrained"]["gate"] == "feedback CIDEr +0.30"
        order = [p["id"] for p in listed["points"]]
        assert order.index("op-trained") < order.index("op-retrained")  # oldest first: the plot's x axis

        assert operator.post("/v1/admin/models/op-trained/promote").json()["active"] == "op-trained"
        assert operator.post("/v1/admin/models/op-retrained/promote").json()["active"] == "op-retrained"
        rolled = operator.post("/v1/admin/models/rollback").json()
        assert rolled["active"] == "op-trained"
        assert error_of(operator.post("/v1/admin/models/nope/promote"))[:2] == (404, "unknown_version")
    with db.session_scope(services.engine) as session:
        assert registry.get_active(session).id == "op-trained"


def test_api_docs_and_favicon_are_served_without_a_cdn(services):
    with make_client(services) as client:
        docs = client.get("/v1/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
        assert "cdn" not in docs.text and "//" not in docs.text.replace("http://www.w3.org", "")
        assert "/v1/docs/assets/swagger-ui-bundle.js" in docs.text and "/v1/docs/assets/swagger-ui.css" in docs.text
        script = client.get("/v1/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 500_000 and "javascript" in script.headers["content-type"]
        assert client.get("/v1/docs/assets/swagger-ui.css").status_code == 200
        for path in ("/favicon.svg", "/favicon.ico"):
            icon = client.get(path)
            assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
            assert icon.text.startswith("<svg")
        page = client.get("/").text
        assert 'href="v1/docs"' in page and 'rel="icon"' in page and 'href="operator"' in page
        assert client.get("/operator").status_code == 200
