"""Synthetic stand-ins for the classification tasks: a prostate bpMRI and a breast lesion crop.

As tasks/synthetic.py: plausible anatomy and contrast, so that the default run and the tests go
through the real readers; the class is visible in the images (a lesion, its shape and contrast).
"""
from __future__ import annotations

import numpy as np

from tasks.synthetic import _ellipsoid, _grid, _paint_intensities, _radii_at_least, _random_point, _smooth_field

# Relative signal per tissue: (T2w, DWI at high b-value, ADC); ×1000 on write (ADC then in 10⁻⁶ mm²/s).
_PROSTATE_CONTRAST = {
    "fat": (0.90, 0.05, 0.30),
    "muscle": (0.35, 0.15, 1.40),
    "rectum": (0.25, 0.20, 0.90),
    "bladder": (1.00, 0.05, 2.80),  # urine: T2-bright, free diffusion
    "tz": (0.45, 0.30, 1.25),  # transition zone / central gland: intermediate T2
    "pz": (0.80, 0.25, 1.70),  # peripheral zone: T2-bright, high ADC
    "lesion": (0.30, 0.95, 0.70),  # suspicious lesion (PI-RADS >= 4): T2-dark, DWI-bright, ADC-dark
}


def prostate_subject(shape: tuple[int, int, int], rng: np.random.Generator, *, lesion: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pelvis on the T2 grid: image [3, X, Y, Z] (T2w, DWI, ADC), anatomy label (1 central gland /
    transition zone, 2 peripheral zone) and a bool lesion mask (empty when ``lesion`` is False).

    The gland sits anterior to the rectum and below the bladder; a lesion lies in the peripheral
    zone (70 %) or the transition zone, restricted diffusion (bright DWI, dark ADC) and dark on T2.
    """
    grid = _grid(shape)
    body = (grid[0] / 0.92) ** 2 + (grid[1] / 0.72) ** 2 <= 1.0
    size = rng.uniform(0.9, 1.15, size=3)  # gland volume varies (benign hyperplasia)
    centre = np.array([0.0, -0.05, -0.05]) + rng.uniform(-0.04, 0.04, size=3)
    gland = _ellipsoid(grid, centre, np.array([0.32, 0.24, 0.34]) * size)
    central = _ellipsoid(grid, centre + [0.0, 0.05, 0.02], np.array([0.2, 0.14, 0.26]) * size)

    tissue = np.full(shape, "", dtype=object)
    tissue[body] = "fat"
    for side in (-1, 1):  # obturator internus muscles
        tissue[_ellipsoid(grid, (side * 0.55, -0.1, 0.0), (0.14, 0.3, 0.9)) & body] = "muscle"
    tissue[_ellipsoid(grid, (0.0, -0.5, 0.0), (0.16, 0.12, 0.8)) & body] = "rectum"
    tissue[_ellipsoid(grid, (0.0, 0.15, 0.75), (0.32, 0.26, 0.3)) & body] = "bladder"
    tissue[gland] = "pz"
    tissue[central & gland] = "tz"
    anatomy = np.where(gland, np.where(central, 1, 2), 0).astype(np.uint8)

    mask = np.zeros(shape, dtype=bool)
    if lesion:
        zone = (anatomy == 2) if rng.random() < 0.7 else (anatomy == 1)
        radii = _radii_at_least(rng.uniform(0.08, 0.13, size=3), shape, voxels=3.0)  # >= 1.5 voxels on the half-resolution DWI
        mask = _ellipsoid(grid, _random_point(zone, grid, rng), radii) & gland
        tissue[mask] = "lesion"
    image = _paint_intensities(tissue, _PROSTATE_CONTRAST, rng, inside=body, noise=0.03, scale=1000.0)
    return image, anatomy, mask


def downsample_inplane(array: np.ndarray, factor: int, *, reduce=np.mean) -> np.ndarray:
    """[X, Y, Z] -> [X / factor, Y / factor, Z] by reducing factor x factor blocks (a coarser in-plane acquisition)."""
    x, y, z = array.shape
    return reduce(array.reshape(x // factor, factor, y // factor, factor, z), axis=(1, 3))


# Breast MRI, lesion-centred crop: (T1 post-contrast, T2w), relative.
_BREAST_CONTRAST = {
    "fat": (0.55, 0.70),
    "fibroglandular": (0.35, 0.40),
    "benign": (0.80, 0.95),  # e.g. fibroadenoma: homogeneous enhancement, T2-bright
    "malignant_rim": (1.00, 0.45),  # rim enhancement, T2 intermediate
    "malignant_core": (0.50, 0.40),
}


def breast_lesion(shape: tuple[int, int, int], rng: np.random.Generator, *, malignant: bool) -> np.ndarray:
    """One lesion-centred breast crop [2, X, Y, Z] (T1ce, T2w), the lesion slightly expanded as in the CSM
    paper's Breast2023 inputs (section IV). Benign: an oval, circumscribed, homogeneously enhancing,
    T2-bright lesion; malignant: an irregular (lobulated) one with rim enhancement, T2-intermediate
    (the attributes of the CSM paper's Fig. 1)."""
    grid = _grid(shape)
    tissue = np.full(shape, "fat", dtype=object)
    tissue[_smooth_field(shape, rng, sigma=max(shape) / 8, amplitude=1.0) > 1.1] = "fibroglandular"
    centre = rng.uniform(-0.1, 0.1, size=3)
    radii = rng.uniform(0.35, 0.5, size=3)
    distance = (((grid - centre.reshape(3, 1, 1, 1)) / radii.reshape(3, 1, 1, 1)) ** 2).sum(0)
    if malignant:
        distance = distance * _smooth_field(shape, rng, sigma=max(shape) / 10, amplitude=0.45)  # irregular margin
        tissue[distance <= 1.0] = "malignant_rim"
        tissue[distance <= 0.45] = "malignant_core"
    else:
        tissue[distance <= 1.0] = "benign"
    return _paint_intensities(tissue, _BREAST_CONTRAST, rng, inside=np.ones(shape, dtype=bool), noise=0.03, scale=1000.0)
