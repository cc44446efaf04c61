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


def test_confidence_takes_each_tokens_probability_less_its_spread_over_the_views():
    image = [math.log(0.9), math.log(0.5)]
    assert caption_confidence(image) == pytest.approx(math.sqrt(0.9 * 0.5))  # no views: the geometric mean
    # token 1 is 0.9, 0.7, 0.8 on the image and two views: mean 0.8, population std 0.0816; token 2 holds
    steady = [[math.log(0.7), math.log(0.5)], [math.log(0.8), math.log(0.5)]]
    spread = math.sqrt(((0.9 - 0.8) ** 2 + (0.7 - 0.8) ** 2 + 0.0) / 3)
    assert caption_confidence(image, steady) == pytest.approx(math.sqrt((0.8 - spread) * 0.5))
    # a token the image alone is sure of but the views are not: mean less std (0.188 - 0.356) falls under the
    # lowest probability, which wins
    swinging = [[math.log(0.01), math.log(0.5)]] * 4
    assert caption_confidence(image, swinging) == pytest.approx(math.sqrt(0.01 * 0.5))
    # one view in three losing the token: mean 0.603 less std 0.420, above the lowest
    one_off = [[math.log(0.01), math.log(0.5)], [math.log(0.9), math.log(0.5)]]
    mean = (0.9 + 0.01 + 0.9) / 3
    std = math.sqrt((2 * (0.9 - mean) ** 2 + (0.01 - mean) ** 2) / 3)
    assert caption_confidence(image, one_off) == pytest.approx(math.sqrt((mean - std) * 0.5))
    assert caption_confidence(image, swinging) < caption_confidence(image, steady) < caption_confidence(image)
    # equal probabilities on every view: no spread, the same as the image alone
    assert caption_confidence(image, [image, image]) == pytest.approx(caption_confidence(image))
    # a token too improbable for a float's exp still counts by its log-probability
    rare = [-1000.0] + [0.0] * 499
    mean = (1 + math.exp(-1)) / 2
    expected = math.exp((-1000.0 + math.log(mean - (1 - math.exp(-1)) / 2)) / 500)
    assert caption_confidence(rare, [[-1001.0] + [0.0] * 499]) == pytest.approx(expected)
    assert caption_confidence([-math.inf], [[-math.inf]]) == 0.0
    assert caption_confidence([], []) == 0.0
    with pytest.raises(ValueError, match="same tokens"):
        caption_confidence(image, [[0.0]])


def test_unset_views_follow_the_device():
    assert views_for(None, "cuda") == MAX_VIEWS  # cheap on a GPU
    assert views_for(None, "cpu") == 0 and views_for(None, "mps") == 0
    assert views_for(0, "cuda") == 0 and views_for(2, "cpu") == 2  # a configured number always wins
