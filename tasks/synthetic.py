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
# The HU values keep real CT's order where it has one (air < fat < stomach contents < parenchyma < enhanced vessels) but
# are spread 25 HU apart (left and right organs too), so each organ is one intensity band above the noise (NOISE_HU): real
# CT separates liver, spleen, pancreas or the two kidneys by shape and context learned over thousands of steps, which
# the few hundred steps of a smoke run cannot teach a network at 64x64x32 (measured: the kidneys, adrenals and vessels
# stayed at Dice 0 after 180 Swin-UNETR steps with the real, overlapping values).
BTCV_ORGANS = {
    1: ("spleen", (-0.55, -0.2, 0.3), (0.2, 0.22, 0.3), 125),
    2: ("right_kidney", (0.45, -0.45, -0.1), (0.15, 0.15, 0.26), 200),
    3: ("left_kidney", (-0.45, -0.45, -0.05), (0.15, 0.15, 0.26), 225),
    4: ("gallbladder", (0.3, 0.28, -0.05), (0.11, 0.11, 0.16), -25),
    5: ("esophagus", (-0.05, -0.25, 0.7), (0.08, 0.08, 0.3), 50),
    6: ("liver", (0.4, 0.05, 0.35), (0.4, 0.38, 0.4), 75),
    7: ("stomach", (-0.3, 0.15, 0.35), (0.22, 0.2, 0.26), -50),
    8: ("aorta", (-0.05, -0.42, 0.0), (0.08, 0.08, 0.9), 250),
    9: ("inferior_vena_cava", (0.15, -0.38, 0.0), (0.08, 0.08, 0.8), 150),
    10: ("portal_splenic_veins", (0.0, -0.1, 0.05), (0.28, 0.06, 0.07), 175),
    11: ("pancreas", (-0.1, -0.18, -0.12), (0.28, 0.08, 0.1), 100),
    12: ("right_adrenal_gland", (0.27, -0.36, 0.3), (0.08, 0.08, 0.11), 0),
    13: ("left_adrenal_gland", (-0.27, -0.36, 0.3), (0.08, 0.08, 0.11), 25),
}
_PAINT_ORDER = (6, 1, 7, 2, 3, 11, 10, 8, 9, 4, 5, 12, 13)
# Organs are drawn larger than the table (x ORGAN_SCALE) and no thinner than MIN_ORGAN_VOXELS voxels along any axis of
# the synthetic grid: at 64x64x32 an adrenal gland or the portal vein drawn to scale covers ~50 voxels over 3 slices,
# which no network learns in the few hundred steps of a smoke run (measured: mean Dice 0.05-0.13 after 100 steps).
ORGAN_SCALE = 1.25
MIN_ORGAN_VOXELS = 3.0
ANATOMY_SHIFT, ORGAN_SHIFT, ORGAN_SIZE_RANGE = 0.12, 0.05, (0.8, 1.25)  # normalised units, size factors
ORGAN_HU_JITTER, NOISE_HU = 2.0, 4.0  # per case and organ (SD); per voxel (SD)


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
    hu[viscera] = -100.0  # intra-abdominal fat around the organs
    hu[spine & viscera] = 700.0
    label = np.zeros(shape, dtype=np.uint8)
    # Patients differ (position in the scanner, body habitus, organ sizes): enough that two labelled cases do not
    # cover the test cases, as in real BTCV (with +-0.05 / +-10 %, 2 cases fine-tuned a network better than 8).
    shift = rng.uniform(-ANATOMY_SHIFT, ANATOMY_SHIFT, size=3)
    for value in _PAINT_ORDER:
        _, centre, radii, organ_hu = BTCV_ORGANS[value]
        radii = _radii_at_least(np.multiply(radii, ORGAN_SCALE * rng.uniform(*ORGAN_SIZE_RANGE, 3)), shape, voxels=MIN_ORGAN_VOXELS)
        organ = _ellipsoid(grid, np.add(centre, shift + rng.uniform(-ORGAN_SHIFT, ORGAN_SHIFT, 3)), radii)
        organ &= viscera
        label[organ] = value
        hu[organ] = organ_hu + rng.normal(0.0, ORGAN_HU_JITTER)
    hu = gaussian_filter(hu, sigma=0.5) + rng.normal(0.0, NOISE_HU, size=shape)
    return hu.astype(np.float32), label


def _radii_at_least(radii, shape, voxels: float = 1.2) -> np.ndarray:
    """Ellipsoid radii (normalised units) no smaller than ``voxels`` voxels along each axis, so small
    structures survive on coarse synthetic grids."""
    step = np.array([2.0 / max(n - 1, 1) for n in shape])
    return np.maximum(np.asarray(radii, dtype=float), voxels * step)


def _random_point(mask: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Normalised coordinates of a random voxel of ``mask``."""
    points = np.argwhere(mask)
    return grid[(slice(None), *points[rng.integers(len(points))])]


def _paint_intensities(tissue: np.ndarray, contrast: dict, rng: np.random.Generator, *, inside: np.ndarray, noise: float,
                       scale: float) -> np.ndarray:
    """Image [len(means), *shape]: tissue means (±5 % per subject), slight blur, bias field and noise inside ``inside``, 0 outside."""
    shape = tissue.shape
    n = len(next(iter(contrast.values())))
    image = np.zeros((n, *shape), dtype=np.float32)
    for name, means in contrast.items():
        where = tissue == name
        for channel, mean in enumerate(means):
            image[channel][where] = mean * rng.uniform(0.95, 1.05)
    bias = _smooth_field(shape, rng, sigma=max(shape) / 4, amplitude=0.1)
    for channel in range(n):
        smooth = gaussian_filter(image[channel], sigma=0.6) * bias
        image[channel] = np.where(inside, np.clip(smooth + rng.normal(0.0, noise, size=shape), 0.01, None), 0.0) * scale
    return image


# Adult brain, T1 and FLAIR (WMH 2017 "pre" images are bias-corrected but not skull-stripped).
_WMH_CONTRAST = {  # (t1, flair)
    "scalp": (0.80, 0.45),
    "csf": (0.20, 0.10),
    "gm": (0.55, 0.60),
    "wm": (0.75, 0.45),
    "wmh": (0.55, 0.95),  # hyperintense on FLAIR, slightly hypointense on T1
    "other": (0.25, 0.30),  # e.g. an old lacunar infarct: dark on both
}


def wmh_subject(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One ageing brain: image [2, X, Y, Z] (t1, flair) and a label with WMH 2017 values.

    1 = white-matter hyperintensities (periventricular caps and a few deep punctate lesions, all
    inside the white matter), 2 = "other pathology" (a small infarct in most subjects), which the
    challenge excludes from evaluation.
    """
    grid = _grid(shape)
    wobble = _smooth_field(shape, rng, sigma=max(shape) / 6, amplitude=0.08)
    radii = np.array([0.72, 0.85, 0.7]) * rng.uniform(0.92, 1.04, size=3)
    head = ((grid / (radii * 1.15).reshape(3, 1, 1, 1)) ** 2).sum(0) <= 1.0
    skull_gap = ((grid / (radii * 1.06).reshape(3, 1, 1, 1)) ** 2).sum(0) <= 1.0
    brain = (((grid / radii.reshape(3, 1, 1, 1)) ** 2).sum(0) * wobble) <= 1.0
    white = (((grid / (radii * 0.78).reshape(3, 1, 1, 1)) ** 2).sum(0) * wobble) <= 1.0
    ventricle_r = _radii_at_least(np.array([0.07, 0.28, 0.14]) * rng.uniform(0.9, 1.6), shape)  # ventricles widen with age
    ventricles = _ellipsoid(grid, (0.12, 0.02, 0.08), ventricle_r) | _ellipsoid(grid, (-0.12, 0.02, 0.08), ventricle_r)

    tissue = np.full(shape, "", dtype=object)
    tissue[head & ~skull_gap] = "scalp"
    tissue[skull_gap & ~brain] = "csf"
    tissue[brain] = "gm"
    tissue[white] = "wm"
    tissue[ventricles & brain] = "csf"
    deep_white = white & ~ventricles

    label = np.zeros(shape, dtype=np.uint8)
    if rng.random() < 0.8:  # other pathology (label 2) in most subjects, a few voxels
        other = _ellipsoid(grid, _random_point(deep_white, grid, rng), _radii_at_least([0.04, 0.04, 0.04], shape, voxels=1.0))
        label[other & brain] = 2
    caps = [(side * 0.12, end * (ventricle_r[1] + 0.02), 0.1) for side in (-1, 1) for end in (-1, 1)]
    centres = [c for c in caps if rng.random() < 0.7] + [_random_point(deep_white, grid, rng) for _ in range(rng.integers(2, 7))]
    for centre in centres:
        lesion_r = _radii_at_least(rng.uniform(0.03, 0.09, size=3), shape)
        label[_ellipsoid(grid, centre, lesion_r) & deep_white & (label == 0)] = 1
    if not (label == 1).any():  # every WMH subject has lesions
        label[tuple(np.argwhere(deep_white & (label == 0))[0])] = 1
    tissue[label == 1] = "wmh"
    tissue[label == 2] = "other"
    return _paint_intensities(tissue, _WMH_CONTRAST, rng, inside=head, noise=0.03, scale=1000.0), label


# Fetal brain on T2w (FeTA 2021 labels 1-7). Fetal white matter is T2-bright relative to the cortex.
FETA_TISSUES = {1: "external_csf", 2: "grey_matter", 3: "white_matter", 4: "ventricles", 5: "cerebellum",
                6: "deep_grey_matter", 7: "brainstem"}
_FETA_T2 = {1: 1.00, 2: 0.35, 3: 0.65, 4: 0.95, 5: 0.50, 6: 0.45, 7: 0.42}


def feta_subject(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One fetal brain (20-33 weeks): super-resolved T2w image [X, Y, Z] (brain-masked, 0 outside) and
    a label with FeTA's seven tissues (1 external CSF ... 7 brainstem)."""
    grid = _grid(shape)
    size = rng.uniform(0.72, 0.95)  # gestational age: the brain grows inside a fixed field of view
    wobble = _smooth_field(shape, rng, sigma=max(shape) / 8, amplitude=0.06 + 0.1 * (size - 0.72))  # gyrification
    radii = np.array([0.62, 0.78, 0.6]) * size
    cerebrum = lambda scale, bumpy=False: (((grid - np.reshape([0, 0, 0.08 * size], (3, 1, 1, 1))) / (radii * scale).reshape(3, 1, 1, 1)) ** 2).sum(0) * (wobble if bumpy else 1.0) <= 1.0  # noqa: E731
    cerebellum_c, cerebellum_r = (0.0, -0.5 * size, -0.42 * size), _radii_at_least(np.array([0.3, 0.14, 0.13]) * size, shape)
    brainstem_c, brainstem_r = (0.0, -0.22 * size, -0.45 * size), _radii_at_least(np.array([0.08, 0.09, 0.26]) * size, shape)

    label = np.zeros(shape, dtype=np.uint8)
    label[cerebrum(1.0) | _ellipsoid(grid, cerebellum_c, cerebellum_r * 1.25) | _ellipsoid(grid, brainstem_c, brainstem_r * 1.3)] = 1
    label[cerebrum(0.9, bumpy=True)] = 2
    label[cerebrum(0.78, bumpy=True)] = 3
    for side in (-1, 1):
        label[_ellipsoid(grid, (side * 0.16 * size, -0.02, 0.0), _radii_at_least(np.array([0.1, 0.15, 0.12]) * size, shape))] = 6
        ventricle_r = _radii_at_least(np.array([0.07, 0.36, 0.15]) * size * rng.uniform(0.9, 1.3), shape)
        label[_ellipsoid(grid, (side * 0.14 * size, 0.02, 0.12 * size), ventricle_r)] = 4
    label[_ellipsoid(grid, cerebellum_c, cerebellum_r)] = 5
    label[_ellipsoid(grid, brainstem_c, brainstem_r)] = 7

    tissue = np.vectorize(lambda v: FETA_TISSUES.get(int(v), ""), otypes=[object])(label)
    contrast = {FETA_TISSUES[v]: (mean,) for v, mean in _FETA_T2.items()}
    image = _paint_intensities(tissue, contrast, rng, inside=label > 0, noise=0.04, scale=rng.uniform(800.0, 3000.0))
    return image[0], label


# Neonatal brain ADC in 10⁻⁶ mm²/s (unmyelinated white matter diffuses more than grey matter).
_HIE_ADC = {"csf": 2800.0, "gm": 1150.0, "wm": 1500.0, "deep_gm": 1050.0}
HIE_LESION_ADC = (550.0, 800.0)  # restricted diffusion of hypoxic-ischaemic injury


def hie_subject(shape: tuple[int, int, int], rng: np.random.Generator, *, lesion_percent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One neonate: skull-stripped ADC [X, Y, Z] (0 outside the brain), Z_ADC [X, Y, Z] and a lesion label (0/1).

    Z_ADC is the voxel's deviation from normal ADC for its tissue (BONBID-HIE compares with an atlas
    of healthy neonates), clipped to ±10 like the released ``*_clipped10`` maps, 0 outside the brain.
    Lesions (restricted diffusion, low ADC) are blobs in grey/white matter and deep grey matter,
    added until they cover ``lesion_percent`` % of the brain (0: no lesion).
    """
    grid = _grid(shape)
    wobble = _smooth_field(shape, rng, sigma=max(shape) / 6, amplitude=0.06)
    radii = np.array([0.7, 0.85, 0.62]) * rng.uniform(0.9, 1.05, size=3)
    brain = (((grid / radii.reshape(3, 1, 1, 1)) ** 2).sum(0) * wobble) <= 1.0
    white = (((grid / (radii * 0.82).reshape(3, 1, 1, 1)) ** 2).sum(0) * wobble) <= 1.0
    deep = _ellipsoid(grid, (0.15, 0.0, 0.0), _radii_at_least([0.12, 0.18, 0.14], shape)) | \
        _ellipsoid(grid, (-0.15, 0.0, 0.0), _radii_at_least([0.12, 0.18, 0.14], shape))
    ventricles = _ellipsoid(grid, (0.1, 0.05, 0.18), _radii_at_least([0.04, 0.25, 0.08], shape)) | \
        _ellipsoid(grid, (-0.1, 0.05, 0.18), _radii_at_least([0.04, 0.25, 0.08], shape))

    tissue = np.full(shape, "", dtype=object)
    tissue[brain] = "gm"
    tissue[white] = "wm"
    tissue[deep & brain] = "deep_gm"
    tissue[ventricles & brain] = "csf"
    parenchyma = brain & ~ventricles

    label = np.zeros(shape, dtype=np.uint8)
    target = lesion_percent / 100.0 * brain.sum()
    blobs = max(1, int(rng.integers(2, 5)))  # HIE injury is often multifocal
    step = np.array([2.0 / max(n - 1, 1) for n in shape])
    for _ in range(200):
        if label.sum() >= target:
            break
        voxels = target / blobs
        radius = _radii_at_least(step * (3 * voxels / (4 * np.pi)) ** (1 / 3) * rng.uniform(0.8, 1.2, size=3), shape, voxels=0.6)
        label[_ellipsoid(grid, _random_point(parenchyma, grid, rng), radius) & parenchyma] = 1

    normal = np.zeros(shape)
    for name, value in _HIE_ADC.items():
        normal[tissue == name] = value * rng.uniform(0.95, 1.05)
    adc = np.where(label == 1, rng.uniform(*HIE_LESION_ADC), normal)
    adc = gaussian_filter(adc, sigma=0.5) * _smooth_field(shape, rng, sigma=max(shape) / 4, amplitude=0.05)
    adc = np.where(brain, np.clip(adc + rng.normal(0.0, 40.0, size=shape), 50.0, None), 0.0)
    z_adc = np.where(brain, np.clip((adc - normal) / (0.12 * np.maximum(normal, 1.0)), -10.0, 10.0), 0.0)
    return adc.astype(np.float32), z_adc.astype(np.float32), label
