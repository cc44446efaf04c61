"""On Modal, a model of another family than ViT+GPT-2 goes the way the default one does: `capbot modal
pull-model` (its function body, through `.local()`) saves it as a version on the models Volume and activates it,
and the GPU class serves it."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage

from inference.captioner import LocalCaptioner
from inference.modal_wire import caption_from_wire, options_to_wire
from inference.types import GenerationOptions
from tests.families import build_family_model, synthetic_captions
from tests.modal_support import deployment_env
from tests.specs import exact_greedy

pytestmark = [pytest.mark.filterwarnings("error::modal.exception.DeprecationError"),
              pytest.mark.filterwarnings("ignore:.*is executing locally and will not have access:UserWarning")]

OPTIONS = GenerationOptions(num_beams=2, num_alternatives=1, max_new_tokens=5)
PHOTO = Path(skimage.__file__).parent / "data" / "chelsea.png"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_pulled_git_model_is_activated_and_served_by_the_gpu_class(monkeypatch, tmp_path, tiny_model_dir,
                                                                    database_url, synthetic_dataset):
    from capbot.modal.app import GpuCaptioner, pull_model

    source = build_family_model("git", tmp_path / "git-base", synthetic_captions(synthetic_dataset.out_dir),
                                weights="bin", layout="hub")
    deployment = deployment_env(monkeypatch, tmp_path, tiny_model_dir, database_url, CAPBOT_REGISTRY_POLL_S="0.001")
    pulled = pull_model.local(hub_id=str(source.path), activate=True)
    assert pulled["active"] == pulled["version"] and Path(pulled["location"]).parent == deployment.models_dir
    assert deployment.volumes["models"].commits >= 1

    served = caption_from_wire(GpuCaptioner().caption.local([PHOTO.read_bytes()], [options_to_wire(OPTIONS)])[0])
    expected = LocalCaptioner(pulled["location"], exact_greedy(options=OPTIONS)).caption([PHOTO.read_bytes()])[0]
    assert (served.model_version, served.text) == (pulled["version"], expected.text)
    assert served.confidence == pytest.approx(expected.confidence) and served.alternatives == expected.alternatives
