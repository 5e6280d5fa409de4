"""Intensity normalisation shared by the task readers: the z-score over a mask (the brain / foreground).

One formula for every task that z-scores its channels inside a mask (BraTS, WMH and MSD brain through BraTS; HIE):
each channel's voxels inside the mask get ``(x - mean) / (std + 1e-8)`` with the mean and std of that channel's
voxels inside the mask; every voxel outside it gets ``background`` (0, or HIE's -6). An empty mask leaves the whole
image at ``background``.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-8  # added to the std: a constant channel inside the mask becomes 0, not NaN


def zscore(image: np.ndarray, mask: np.ndarray, *, background: float = 0.0) -> np.ndarray:
    """``image`` [C, *spatial] z-scored per channel over ``mask`` [*spatial] (bool, shared by the channels); voxels
    outside the mask set to ``background``. Same dtype as ``image``."""
    out = np.full_like(image, background)
    for c in range(image.shape[0]):
        values = image[c][mask]
        if values.size:
            out[c][mask] = (values - values.mean()) / (values.std() + EPS)
    return out
