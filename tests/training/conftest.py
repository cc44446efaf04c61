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
