"""The web API captions with a model of every family besides ViT+GPT-2 (tiny random ones saved by plain
transformers code, tests/families.py), through the real composition root and settings."""

from __future__ import annotations

import pytest

from capbot.captioning import captioner_spec
from capbot.settings import get_settings
from inference.captioner import LocalCaptioner
from tests.capbot.test_web import build, make_client, stored, upload

FAMILIES = ("blip", "git", "florence2", "smolvlm")


@pytest.mark.parametrize("family", FAMILIES)
def test_v1_captions_with_a_model_of_the_family(family_model_dirs, family, tmp_path, monkeypatch, photo_bytes):
    monkeypatch.chdir(tmp_path)
    services = build(tmp_path, family_model_dirs[family])
    try:
        with make_client(services) as client:
            response = upload(client, photo_bytes)
        assert response.status_code == 201, response.text
        body = response.json()
        # What a captioner of the same model under the same settings writes: the served options (3 beams, 2
        # alternatives) on the family's engine.
        spec = captioner_spec(services.settings)
        expected = LocalCaptioner(family_model_dirs[family], spec).caption([photo_bytes])[0]
        assert (body["text"], body["model_version"]) == (expected.text, str(family_model_dirs[family]))
        assert body["text"] and 0 < body["confidence"] <= 1 and body["text"] not in body["alternatives"]
        assert stored(services, body["id"]).text == body["text"]
    finally:
        services.close()


def test_the_caption_prompt_setting_reaches_the_family_engine(family_model_dirs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = get_settings(data_dir=tmp_path / "data", model=str(family_model_dirs["florence2"]), device="cpu",
                            caption_prompt="<DETAILED_CAPTION>")
    spec = captioner_spec(settings)
    assert spec.prompt == "<DETAILED_CAPTION>"
    assert LocalCaptioner(family_model_dirs["florence2"], spec).engine.prompt == "<DETAILED_CAPTION>"
