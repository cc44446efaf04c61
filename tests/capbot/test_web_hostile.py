"""The web API under the inputs a load-and-crash run threw at it (issue 22): ids past every integer range,
broken multipart and undecodable bodies, and a user whose refused uploads used up the caption limit. In
process, through the real composition root, on both stores where the store is what answers."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.capbot.test_web import build, client, error_of, make_client, services, upload  # noqa: F401 (fixtures)

OUT_OF_RANGE_IDS = (2**31, 2**63 - 1, 2**63, 10**40, 0, -1, -(2**63) - 1)
PAST_32_BITS = 2**31 + 5


@pytest.fixture
def store_services(database_url, tmp_path, tiny_model_dir, monkeypatch):
    """The composition root over an empty SQLite file or Postgres schema."""
    monkeypatch.chdir(tmp_path)
    built = build(tmp_path, tiny_model_dir, database_url=database_url)
    yield built
    built.close()


def test_ids_past_every_range_are_404_json_on_both_stores(store_services):
    with make_client(store_services) as client:
        for caption_id in OUT_OF_RANGE_IDS:
            got = client.get(f"/v1/captions/{caption_id}")
            assert error_of(got)[:2] == (404, "unknown_caption"), (caption_id, got.text)
            corrected = client.post(f"/v1/captions/{caption_id}/corrections", json={"text": "a red ball on grass"})
            assert error_of(corrected)[:2] == (404, "unknown_caption"), (caption_id, corrected.text)
            legacy = client.post(f"/api/captions/{caption_id}/corrections", json={"text": "a red ball on grass"})
            assert (legacy.status_code, legacy.json()["reason"]) == (404, "unknown_caption")


def test_captions_numbered_past_32_bits_are_served_and_corrected(store_services, photo_bytes):
    engine = store_services.engine
    with make_client(store_services) as client:
        first = upload(client, photo_bytes).json()["id"]
        with engine.begin() as connection:  # as a long-lived database would have it
            if engine.dialect.name == "postgresql":
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('captions', 'id'), {PAST_32_BITS})"))
            else:
                connection.execute(text(f"UPDATE captions SET id = {PAST_32_BITS} WHERE id = {first}"))
        made = upload(client, photo_bytes)
        assert made.status_code == 201, made.text
        caption_id = made.json()["id"]
        assert caption_id > PAST_32_BITS
        assert client.get(f"/v1/captions/{caption_id}").json()["id"] == caption_id
        corrected = client.post(f"/v1/captions/{caption_id}/corrections", json={"text": "a tabby cat asleep"})
        assert corrected.status_code == 201, corrected.text


# --- error shapes agree with docs/web.md ---


def test_broken_multipart_is_bad_multipart(client, photo_bytes):
    no_boundary = client.post("/v1/captions", content=b"--x\r\n\r\nhello\r\n--x--\r\n",
                              headers={"Content-Type": "multipart/form-data"})
    assert error_of(no_boundary)[:2] == (400, "bad_multipart")
    garbage = client.post("/v1/captions", content=b"\x00\xff not multipart at all",
                          headers={"Content-Type": "multipart/form-data; boundary=abc"})
    assert error_of(garbage)[:2] == (400, "bad_multipart")
    two_files = client.post("/v1/captions", files=[("file", ("a.png", photo_bytes, "image/png")),
                                                   ("file", ("b.png", photo_bytes, "image/png"))])
    assert error_of(two_files)[:2] == (400, "bad_multipart")
    legacy = client.post("/api/captions", content=b"junk", headers={"Content-Type": "multipart/form-data"})
    assert (legacy.status_code, legacy.json()["reason"]) == (400, "bad_multipart")


def test_correction_body_that_is_not_utf8_is_invalid_request(client, photo_bytes):
    caption_id = upload(client, photo_bytes).json()["id"]
    answers = [client.post(f"/v1/captions/{caption_id}/corrections", content=body,
                           headers={"Content-Type": "application/json"})
               for body in (b'{"text": "caf\xe9 au lait"}', b"\xff\xfe\x00{")]
    assert [error_of(a)[:2] for a in answers] == [(422, "invalid_request")] * 2, [a.text for a in answers]
    assert "UTF-8" in error_of(answers[0])[2]


# --- refused uploads do not use up the caption limit ---


@pytest.fixture
def limited_services(tmp_path, tiny_model_dir, monkeypatch):
    """The composition root with a caption limit of 3 a minute."""
    monkeypatch.chdir(tmp_path)
    built = build(tmp_path, tiny_model_dir, rate_limit_per_minute=3)
    yield built
    built.close()


def test_refused_uploads_do_not_use_up_the_caption_limit(limited_services, photo_bytes):
    with make_client(limited_services) as client:
        wrong = [upload(client, data, name) for data, name in
                 ((b"not a picture", "notes.txt"), (b"%PDF-1.4 ...", "scan.pdf"), (photo_bytes[: len(photo_bytes) // 2], "cut.png"))]
        assert [error_of(w)[:2] for w in wrong] == [(422, "not_image"), (422, "not_image"), (422, "truncated")]
        good = [upload(client, photo_bytes) for _ in range(3)]
        assert [g.status_code for g in good] == [201, 201, 201], [g.text for g in good]
        assert error_of(upload(client, photo_bytes))[:2] == (429, "rate_limited")  # the limit itself holds


def test_refused_uploads_have_their_own_higher_limit(limited_services):
    with make_client(limited_services) as client:
        answers = [upload(client, b"not a picture", "notes.txt") for _ in range(14)]
    codes = [error_of(a)[1] for a in answers]
    allowance = limited_services.core.refused_rate_limit_per_minute
    assert allowance > 3
    assert codes == ["not_image"] * allowance + ["rate_limited"] * (14 - allowance)
