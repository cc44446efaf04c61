"""Fixtures shared by the retraining orchestration tests (test_retrain.py, test_retrain_screen.py)."""

from __future__ import annotations

import pytest

from training.data.coco import load_split

from tests.training.retrain_support import open_store


@pytest.fixture
def store(database_url, tmp_path):
    engine, blobs = open_store(database_url, tmp_path)
    yield engine, blobs
    engine.dispose()


@pytest.fixture
def feedback_images(synthetic_dataset):
    """Twelve (image, model caption, correction) triples from the synthetic test split."""
    test = load_split(synthetic_dataset.out_dir, "test")
    return [(item.path, f"a shape number {i}", item.captions[0].replace("circle", "ball") + " indeed")
            for i, item in enumerate(test.items)]


@pytest.fixture(scope="session")
def family_model_dirs(synthetic_dataset, tmp_path_factory):
    """A tiny random model of each non-ViT+GPT-2 family (BLIP, GIT, Florence-2, SmolVLM) with a tokenizer
    trained on the synthetic captions, saved by plain transformers code (`tests.families`): {family: directory}.
    Read-only for tests: copy one before changing files."""
    from tests.families import build_family_model, synthetic_captions

    root = tmp_path_factory.mktemp("family_models")
    captions = synthetic_captions(synthetic_dataset.out_dir)
    return {family: build_family_model(family, root / family, captions).path
            for family in ("blip", "git", "florence2", "smolvlm")}
