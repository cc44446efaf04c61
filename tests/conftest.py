"""Fixtures shared across test packages (tiny models, synthetic data, databases).

Each fixture calls the real library code to build what it returns; expensive ones are session-scoped.
"""

from __future__ import annotations

import os

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A small synthetic COCO-format dataset (train 40 / val 12 / test 12, 64 px); returns its SyntheticSummary.

    Read-only for tests: copy it before changing files. `.out_dir` is the dataset directory.
    """
    from training.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=40, n_val=12, n_test=12, seed=0, image_size=64)
