"""Synthetic stand-ins for real datasets: plausible anatomy, real label conventions.

They exist so the suite runs end to end with no data and no download. Each task writes
them to disk in its real layout and reads them back through its real reader.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def _grid(shape: tuple[int, int, int]) -> np.ndarray:
    """Normalised coordinates in [-1, 1], shape [3, X, Y, Z] (RAS: +x right, +y anterior, +z superior)."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def _ellipsoid(grid: np.ndarray, centre, radii) -> np.ndarray:
    c = np.asarray(centre, dtype=float).reshape(3, 1, 1, 1)
    r = np.asarray(radii, dtype=float).reshape(3, 1, 1, 1)
    return (((grid - c) / r) ** 2).sum(0) <= 1.0


def _smooth_field(shape, rng: np.random.Generator, *, sigma: float, amplitude: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), sigma=sigma)
    return 1.0 + amplitude * field / (np.abs(field).max() + 1e-8)


# Tissue means per MRI modality, ordered t1, t1ce, t2, flair (relative units, ×1000 on write).
_BRAIN_CONTRAST = {
    "csf": (0.20, 0.20, 1.00, 0.15),
    "gm": (0.55, 0.55, 0.60, 0.60),
    "wm": (0.75, 0.70, 0.45, 0.50),
    "edema": (0.50, 0.50, 0.85, 0.95),
    "enhancing": (0.50, 1.00, 0.70, 0.80),
    "necrotic": (0.30, 0.25, 0.90, 0.50),
}


def brats_subject(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One brain-tumour subject: image [4, X, Y, Z] (t1, t1ce, t2, flair) and label with BraTS 2018 values.

    Labels nest as in BraTS: enhancing tumour (4) surrounds the necrotic core (1), edema (2)
    surrounds both.
    """
    grid = _grid(shape)
    wobble = _smooth_field(shape, rng, sigma=max(shape) / 6, amplitude=0.08)
    radii = np.array([0.78, 0.9, 0.75]) * rng.uniform(0.9, 1.05, size=3)
    brain = (((grid / radii.reshape(3, 1, 1, 1)) ** 2).sum(0) * wobble) <= 1.0
    inner = (((grid / (radii * 0.8).reshape(3, 1, 1, 1)) ** 2).sum(0) * wobble) <= 1.0
    ventricles = _ellipsoid(grid, (0.12, 0.05, 0.1), (0.08, 0.3, 0.2)) | _ellipsoid(grid, (-0.12, 0.05, 0.1), (0.08, 0.3, 0.2))

    tissue = np.full(shape, "", dtype=object)
    tissue[brain] = "gm"
    tissue[inner] = "wm"
    tissue[ventricles & brain] = "csf"

    label = np.zeros(shape, dtype=np.uint8)
    centre = rng.uniform(-0.4, 0.4, size=3)
    edema_r = rng.uniform(0.3, 0.45) * rng.uniform(0.85, 1.15, size=3)
    core_r = edema_r * rng.uniform(0.5, 0.7)
    necrotic_r = core_r * rng.uniform(0.45, 0.7)
    edema = _ellipsoid(grid, centre, edema_r) & brain
    core = _ellipsoid(grid, centre + rng.uniform(-0.03, 0.03, 3), core_r) & edema
    necrotic = _ellipsoid(grid, centre, necrotic_r) & core
    label[edema] = 2
    label[core] = 4
    label[necrotic] = 1
    tissue[label == 2] = "edema"
    tissue[label == 4] = "enhancing"
    tissue[label == 1] = "necrotic"

    bias = _smooth_field(shape, rng, sigma=max(shape) / 4, amplitude=0.15)
    image = np.zeros((4, *shape), dtype=np.float32)
    for name, means in _BRAIN_CONTRAST.items():
        where = tissue == name
        for channel, mean in enumerate(means):
            image[channel][where] = mean * rng.uniform(0.95, 1.05)
    for channel in range(4):
        smooth = gaussian_filter(image[channel], sigma=0.6) * bias
        noise = rng.normal(0.0, 0.03, size=shape)
        image[channel] = np.where(brain, np.clip(smooth + noise, 0.01, None), 0.0) * 1000.0
    return image, label


# BTCV organ label numbers (Landman et al. 2015): name, centre, radii, HU. Painted large to small.
BTCV_ORGANS = {
    1: ("spleen", (-0.55, -0.2, 0.3), (0.2, 0.22, 0.3), 110),
    2: ("right_kidney", (0.45, -0.45, -0.1), (0.15, 0.15, 0.26), 200),
    3: ("left_kidney", (-0.45, -0.45, -0.05), (0.15, 0.15, 0.26), 200),
    4: ("gallbladder", (0.3, 0.28, -0.05), (0.11, 0.11, 0.16), 0),
    5: ("esophagus", (-0.05, -0.25, 0.7), (0.08, 0.08, 0.3), 50),
    6: ("liver", (0.4, 0.05, 0.35), (0.4, 0.38, 0.4), 80),
    7: ("stomach", (-0.3, 0.15, 0.35), (0.22, 0.2, 0.26), -30),
    8: ("aorta", (-0.05, -0.42, 0.0), (0.08, 0.08, 0.9), 240),
    9: ("inferior_vena_cava", (0.15, -0.38, 0.0), (0.08, 0.08, 0.8), 150),
    10: ("portal_splenic_veins", (0.0, -0.1, 0.05), (0.28, 0.06, 0.07), 180),
    11: ("pancreas", (-0.1, -0.18, -0.12), (0.28, 0.08, 0.1), 100),
    12: ("right_adrenal_gland", (0.27, -0.36, 0.3), (0.08, 0.08, 0.11), 20),
    13: ("left_adrenal_gland", (-0.27, -0.36, 0.3), (0.08, 0.08, 0.11), 20),
}
_PAINT_ORDER = (6, 1, 7, 2, 3, 11, 10, 8, 9, 4, 5, 12, 13)


def btcv_case(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One abdominal CT: image [X, Y, Z] in Hounsfield units and a label with BTCV's 13 organ numbers."""
    grid = _grid(shape)
    body_r = np.array([0.92, 0.72]) * rng.uniform(0.9, 1.05, size=2)
    body = ((grid[0] / body_r[0]) ** 2 + (grid[1] / body_r[1]) ** 2) <= 1.0
    viscera = ((grid[0] / (body_r[0] - 0.1)) ** 2 + (grid[1] / (body_r[1] - 0.1)) ** 2) <= 1.0
    spine = ((grid[0] / 0.12) ** 2 + ((grid[1] + 0.58) / 0.1) ** 2) <= 1.0

    hu = np.full(shape, -1000.0)
    hu[body] = -100.0  # subcutaneous fat
    hu[body & ~viscera] = 45.0  # abdominal wall muscle
    hu[viscera] = -60.0  # intra-abdominal fat around the organs
    hu[spine & viscera] = 700.0
    label = np.zeros(shape, dtype=np.uint8)
    shift = rng.uniform(-0.05, 0.05, size=3)
    for value in _PAINT_ORDER:
        _, centre, radii, organ_hu = BTCV_ORGANS[value]
        organ = _ellipsoid(grid, np.add(centre, shift + rng.uniform(-0.03, 0.03, 3)), np.multiply(radii, rng.uniform(0.9, 1.1, 3)))
        organ &= viscera
        label[organ] = value
        hu[organ] = organ_hu + rng.normal(0.0, 5.0)
    hu = gaussian_filter(hu, sigma=0.5) + rng.normal(0.0, 8.0, size=shape)
    return hu.astype(np.float32), label
