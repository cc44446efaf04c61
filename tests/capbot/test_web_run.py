"""The web service through `capbot run`, tried as a new user would: limits hold without cookies whatever
X-Forwarded-For says, a correction flood from one address is one user per image, sizes are capped, and the
curl examples in docs/web.md work as written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from capbot.settings import Settings
from storage import corrections, db, feedback
from storage.blobs import LocalBlobStore
from tests.capbot.capbot_server import running_capbot

WEB_DOC = Path(__file__).resolve().parents[2] / "docs" / "web.md"


def cookie_less(url: str, forwarded_for: str) -> httpx.Client:
    """A fresh client (no cookie jar carried over) that claims to be `forwarded_for`."""
    return httpx.Client(base_url=url, timeout=60, headers={"X-Forwarded-For": forwarded_for})


def test_limits_hold_through_capbot_run(tmp_path, tiny_model_dir, photo_bytes):
    defaults = Settings.model_fields
    caption_limit = defaults["rate_limit_per_minute"].default
    correction_limit = defaults["correction_rate_limit_per_minute"].default
    with running_capbot(tmp_path, tiny_model_dir) as server:
        # 1. Uploads in a row, each from a "new user": no cookies, a different forwarded address every time.
        answers = []
        for n in range(caption_limit + 4):
            with cookie_less(server.url, f"203.0.113.{n}") as client:
                answers.append(client.post("/v1/captions", files={"file": ("cat.png", photo_bytes, "image/png")}))
        assert [a.status_code for a in answers] == [201] * caption_limit + [429] * 4, [a.text for a in answers]
        assert answers[-1].json()["error"]["code"] == "rate_limited" and int(answers[-1].headers["retry-after"]) >= 1
        caption_id = answers[0].json()["id"]

        # 2. "Eight users" correct the same caption: one address, so one user, holding one correction.
        for n in range(8):
            with cookie_less(server.url, f"198.51.100.{n}") as client:
                sent = client.post(f"/v1/captions/{caption_id}/corrections", json={"text": f"a tabby cat, version {n}"})
                assert sent.status_code == 201, sent.text
        engine = db.create_engine_for(server.database_url)
        try:
            with db.session_scope(engine) as session:
                accepted = [c for c in corrections.corrections_for_caption(session, caption_id) if c.status == "accepted"]
                rows = feedback.export_feedback(session, LocalBlobStore(server.data_dir / "blobs"))
        finally:
            engine.dispose()
        assert [c.text for c in accepted] == ["a tabby cat, version 7"]
        assert [(r.caption, r.users) for r in rows] == [("a tabby cat, version 7", 1)]

        # 3. The correction limit holds the same way.
        statuses = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for n in range(correction_limit - 8 + 1):
                statuses.append(client.post(f"/v1/captions/{caption_id}/corrections",
                                            json={"text": f"a striped cat, take {n}"}).status_code)
        assert statuses == [201] * (correction_limit - 8) + [429]

        # 4. Bodies past the image limit are refused, declared or not, and nothing is stored.
        too_big = b"\0" * (defaults["max_image_bytes"].default + 1)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            declared = client.post("/v1/captions", content=too_big, headers={"Content-Type": "image/png"})
            streamed = client.post("/v1/captions", content=iter([too_big[:1 << 20]] * 21),
                                   headers={"Content-Type": "image/png"})
            metrics = client.get("/metrics").text
        assert declared.status_code == streamed.status_code == 413
        assert declared.json()["error"]["code"] == "too_large"
        assert re.search(r'capbot_rate_limited_total\{action="caption",platform="web"\} 4\.0', metrics)
        assert re.search(r'capbot_rate_limited_total\{action="correction",platform="web"\} 1\.0', metrics)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_examples_work_as_written(tmp_path, tiny_model_dir):
    section = WEB_DOC.read_text().split("### Try it with curl", 1)[1].split("\n#", 1)[0]
    commands = [line for line in section.split("```")[1].splitlines() if line.startswith("curl ")]
    assert len(commands) == 9
    import skimage

    shutil.copy(Path(skimage.__file__).parent / "data" / "rocket.jpg", tmp_path / "photo.jpg")
    with running_capbot(tmp_path / "server", tiny_model_dir) as server:
        outputs = []
        for command in commands:
            done = subprocess.run(command.replace("http://127.0.0.1:8000/", server.url), shell=True, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (command, done.stderr)
            outputs.append(done.stdout)
    upload, raw, by_url, read, correct, confirm, models, ready, metrics = outputs
    first = json.loads(upload)
    assert first["id"] == 1 and first["text"] and 0 <= first["confidence"] <= 1
    assert len(json.loads(raw)["alternatives"]) <= 3
    assert json.loads(by_url)["error"]["code"] in ("unresolvable", "connect_failed", "private_address")  # offline
    assert json.loads(read)["text"] == first["text"]
    assert json.loads(correct)["status"] == "accepted"
    assert json.loads(confirm)["status"] == "accepted" and "right" in json.loads(confirm)["message"]
    assert json.loads(models)["serving"] == first["model_version"]
    assert json.loads(ready)["status"] == "ready"
    assert 'capbot_captions_total{platform="web"} 2.0' in metrics
