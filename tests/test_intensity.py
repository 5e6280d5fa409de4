"""The one masked z-score (``tasks.intensity.zscore``): bit-identical to the formula BraTS (and WMH, MSD brain
through it) and HIE each wrote out before, edge cases included (an all-zero channel, a constant channel, an empty
mask)."""
from __future__ import annotations

import numpy as np
import pytest

from tasks import get_task
from tasks.intensity import zscore


def _old_brats(image: np.ndarray) -> np.ndarray:  # tasks/brats.py BraTS.normalize before the helper
    foreground = (image != 0).any(axis=0)
    out = np.zeros_like(image)
    for c in range(image.shape[0]):
        values = image[c][foreground]
        if values.size:
            out[c][foreground] = (values - values.mean()) / (values.std() + 1e-8)
    return out


def _old_hie(image: np.ndarray) -> np.ndarray:  # tasks/hie.py BONBIDHIE.normalize before the helper
    brain = image[0] > 0
    out = np.full_like(image, -6.0)
    for c in range(image.shape[0]):
        values = image[c][brain]
        if values.size:
            out[c][brain] = (values - values.mean()) / (values.std() + 1e-8)
    return out


def _images(channels: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    brain = (rng.random((4, 20, 18, 10)) * 300 + 50).astype(np.float32)
    brain[:, :4] = 0  # background
    brain[:, :, -3:] = 0
    zero_channel = brain.copy()
    zero_channel[1] = 0  # an all-zero series
    constant = brain.copy()
    constant[2][constant[2] != 0] = 7.0  # a constant series inside the brain: std 0
    negative = brain.copy()
    negative[0, 5:8] = -20.0  # HIE: brain = ADC > 0 excludes these
    tiny = (brain * 1e-6).astype(np.float32)  # a std below 1: where "+ 1e-8" and a floor would differ
    return [x[:channels] for x in (brain, zero_channel, constant, negative, tiny, np.zeros_like(brain))]


@pytest.mark.parametrize("index", range(6), ids=["random", "zero-channel", "constant", "negative", "tiny", "all-zero"])
def test_bit_identical_to_the_brats_formula(index):
    image = _images(4)[index]
    new = zscore(image, (image != 0).any(axis=0))
    old = _old_brats(image)
    assert new.dtype == old.dtype == np.float32
    assert np.array_equal(new, old, equal_nan=True)
    assert np.array_equal(get_task("brats").normalize(image), old)
    assert np.array_equal(get_task("msd_brain").normalize(image), old)
    assert np.array_equal(get_task("wmh").normalize(image[:2]), _old_brats(image[:2]))


@pytest.mark.parametrize("index", range(6), ids=["random", "zero-channel", "constant", "negative", "tiny", "all-zero"])
def test_bit_identical_to_the_hie_formula(index):
    image = _images(2)[index]
    old = _old_hie(image)
    assert np.array_equal(zscore(image, image[0] > 0, background=-6.0), old, equal_nan=True)
    assert np.array_equal(get_task("hie").normalize(image), old)


def test_semantics():
    image = np.array([[[[0.0, 1.0, 3.0]]], [[[5.0, 0.0, 0.0]]]], dtype=np.float32)  # [2, 1, 1, 3]
    mask = np.array([[[False, True, True]]])
    out = zscore(image, mask, background=-1.0)
    assert np.allclose(out[0], [[[-1.0, -1.0, 1.0]]])
    assert np.array_equal(out[1], np.array([[[-1.0, 0.0, 0.0]]], dtype=np.float32))  # constant inside the mask: 0
    assert np.array_equal(zscore(image, np.zeros((1, 1, 3), bool)), np.zeros_like(image))  # empty mask: background
