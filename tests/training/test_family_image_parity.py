"""Training sees what serving sees, for every non-ViT+GPT-2 family: the same intake and the same call of the
family's own processor (`inference.family_models.model_inputs`), so pixels (and the prompt) are identical.

The awkward images of test_image_parity.py (EXIF rotations, transparency, CMYK, 16-bit, grey) go through
serving's captioner (`LocalCaptioner.decode`, then `FamilyEngine.inputs`) and through the training collator.
"""

from __future__ import annotations

import pytest
import torch

from inference.captioner import LocalCaptioner
from inference.family_models import load_processor
from tests.specs import EXACT_GREEDY
from tests.training.test_image_parity import CASES
from training.family_collate import FamilyCollator
from training.family_labels import text_ids

FAMILIES = ("blip", "git", "florence2", "smolvlm")
IMAGES = ("exif-orientation-6", "rgba-transparent", "palette-transparent", "cmyk", "16-bit", "grayscale")


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd_images")
    files = {}
    for name in IMAGES:
        files[name] = root / f"{name}.img"
        files[name].write_bytes(CASES[name]())
    return files


@pytest.fixture(scope="module", params=FAMILIES)
def served_and_trained(request, family_model_dirs):
    family = request.param
    captioner = LocalCaptioner(family_model_dirs[family], EXACT_GREEDY)
    assert captioner.engine.family == family
    # The collator is made as `training.train` makes it: the processor loaded from the directory, ids from the model.
    collator = FamilyCollator(family, load_processor(family_model_dirs[family], family),
                              text_ids(family, captioner.engine.model))
    yield captioner, collator
    captioner.close()


def test_training_inputs_equal_serving_inputs(served_and_trained, image_files):
    captioner, collator = served_and_trained
    for name, path in image_files.items():
        served = captioner.engine.inputs([captioner.decode(path.read_bytes())])
        trained = collator.inputs([path])
        assert set(trained) == set(served), name
        for key, value in served.items():
            assert trained[key].dtype == value.dtype and torch.equal(trained[key], value), (name, key)
        assert torch.equal(captioner.pixel_values([path.read_bytes()]), collator.pixels([path])), name
        assert torch.equal(collator.pixels([path]), served["pixel_values"]), name  # again: from the cache, if any


def test_a_training_batch_carries_the_served_pixels(served_and_trained, image_files):
    """The batch the model trains on holds those same pixels (and, with a prompt, the prompt's tokens first)."""
    captioner, collator = served_and_trained
    paths = [image_files["exif-orientation-6"], image_files["rgba-transparent"]]
    batch = collator([(p, "a red circle") for p in paths])
    served = captioner.engine.inputs([captioner.decode(p.read_bytes()) for p in paths])
    assert torch.equal(batch["pixel_values"], served["pixel_values"])
