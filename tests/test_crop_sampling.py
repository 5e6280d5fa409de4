"""Fine-tuning crop sampling (benchmark.data.random_crop): nnU-Net's class-wise foreground oversampling."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.data import CropDataset, foreground_by_class, random_crop
from tasks.base import Volume


def _liver_and_adrenal() -> Volume:
    """A 2,000-voxel organ (label 6) and a 8-voxel one (label 13) far apart: crops of 8^3 never hold both."""
    label = np.zeros((40, 40, 20), dtype=np.int64)
    label[2:22, 2:12, 2:12] = 6
    label[34:36, 34:36, 14:16] = 13
    return Volume(case_id="a", image=np.ones((1, 40, 40, 20), dtype=np.float32), label=label)


@pytest.mark.parametrize("roi,voxel_share", [((8, 8, 8), 8 / 2008), ((8, 8), 2 / 12)])
def test_class_sampling_centres_every_label_value_equally_often(roi, voxel_share):
    """nnU-Net picks a class present in the case, then one of its voxels: the 8-voxel structure is centred in half of
    the foreground crops; drawing any labelled voxel centres it in 8 / 2008 of 3D crops (2D: a labelled slice, then a
    voxel in it: 2 of the 12 labelled slices hold it)."""
    volume = _liver_and_adrenal()
    def share_with_small(sampling: str) -> float:
        crops = [random_crop(volume, roi, np.random.default_rng(seed), foreground_prob=1.0, foreground_sampling=sampling)[1]
                 for seed in range(600)]
        return float(np.mean([(crop == 13).any() for crop in crops]))
    assert abs(share_with_small("class") - 0.5) < 0.07
    assert abs(share_with_small("voxel") - voxel_share) < 0.04


def test_foreground_by_class_orders_voxels_by_label_value_then_c_order():
    volume = _liver_and_adrenal()
    points, classes = foreground_by_class(volume)
    assert classes.tolist() == [[6, 0], [13, 2000]]
    values = volume.label[tuple(points.T)]
    assert (values[:2000] == 6).all() and (values[2000:] == 13).all()
    np.testing.assert_array_equal(points[:2000], np.argwhere(volume.label == 6))  # C order within a class


def test_one_decision_per_crop_and_no_labels_gives_a_random_crop():
    """A volume without labels: a foreground draw falls back to a random crop instead of failing."""
    empty = Volume(case_id="b", image=np.ones((1, 16, 16, 8), dtype=np.float32), label=np.zeros((16, 16, 8), dtype=np.int64))
    image, label = random_crop(empty, (8, 8), np.random.default_rng(0), foreground_prob=1.0)
    assert image.shape == (1, 8, 8) and not label.any()
    data = CropDataset([_liver_and_adrenal()], roi=(8, 8, 8), length=4, seed=0, with_label=True, foreground_prob=1.0,
                       foreground_sampling="voxel")
    assert data[0]["label"].shape == (1, 8, 8, 8)
    with pytest.raises(ValueError, match="foreground_sampling"):
        random_crop(empty, (8, 8), np.random.default_rng(0), foreground_prob=1.0, foreground_sampling="pixel")
