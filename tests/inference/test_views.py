"""Confidence views: the model input moved by a couple of pixels, the same on NumPy and torch arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inference.confidence import caption_confidence
from inference.views import MAX_VIEWS, SHIFT_PX, confidence_views, shifted, views_for


def test_a_shift_moves_the_picture_and_repeats_the_edge():
    pixels = np.arange(2 * 3 * 5 * 6, dtype=np.float32).reshape(2, 3, 5, 6)
    right = shifted(pixels, 2, 0)
    assert np.array_equal(right[..., 2:], pixels[..., :-2])  # moved right by two columns
    assert np.array_equal(right[..., 0], pixels[..., 0]) and np.array_equal(right[..., 1], pixels[..., 0])
    up = shifted(pixels, 0, -1)
    assert np.array_equal(up[..., :-1, :], pixels[..., 1:, :])
    assert np.array_equal(up[..., -1, :], pixels[..., -1, :])
    assert np.array_equal(shifted(pixels, 0, 0), pixels)


def test_views_are_the_same_on_numpy_and_torch():
    pixels = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    on_numpy = confidence_views(pixels, MAX_VIEWS)
    on_torch = confidence_views(torch.from_numpy(pixels), MAX_VIEWS)
    assert len(on_numpy) == MAX_VIEWS
    for a, b in zip(on_numpy, on_torch):
        assert a.shape == pixels.shape and np.array_equal(a, b.numpy())
    # right, down, left, up: every view differs from the input and from the others
    assert len({v.tobytes() for v in on_numpy} | {pixels.tobytes()}) == MAX_VIEWS + 1
    assert np.array_equal(on_numpy[0], shifted(pixels, SHIFT_PX, 0))
    assert confidence_views(pixels, 0) == []
    with pytest.raises(ValueError, match="0 to 4"):
        confidence_views(pixels, MAX_VIEWS + 1)


def test_confidence_averages_each_tokens_probability_over_the_views():
    image = [math.log(0.9), math.log(0.5)]
    assert caption_confidence(image) == pytest.approx(math.sqrt(0.9 * 0.5))  # no views: the geometric mean
    views = [[math.log(0.1), math.log(0.5)], [math.log(0.2), math.log(0.5)]]
    assert caption_confidence(image, views) == pytest.approx(math.sqrt((0.9 + 0.1 + 0.2) / 3 * 0.5))
    # a token the image alone is sure of but the views are not lowers the confidence
    assert caption_confidence(image, views) < caption_confidence(image)
    # a token too improbable for a float's exp still counts by its log-probability
    rare = [-1000.0] + [0.0] * 499
    expected = math.exp((-1000.0 + math.log((1 + math.exp(-1)) / 2)) / 500)
    assert caption_confidence(rare, [[-1001.0] + [0.0] * 499]) == pytest.approx(expected)
    assert caption_confidence([], []) == 0.0
    with pytest.raises(ValueError, match="same tokens"):
        caption_confidence(image, [[0.0]])


def test_unset_views_follow_the_device():
    assert views_for(None, "cuda") == MAX_VIEWS  # cheap on a GPU
    assert views_for(None, "cpu") == 0 and views_for(None, "mps") == 0
    assert views_for(0, "cuda") == 0 and views_for(2, "cpu") == 2  # a configured number always wins
