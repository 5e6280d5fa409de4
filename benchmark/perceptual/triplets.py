"""The built-in 2AFC triplet set: T2 slices of the built-in BraTS volumes and five MR distortions of
known severity (the "traditional distortions" of CoPer IV.A.1 / BAPPS, plus MR-specific artefacts).

Distortions (``DISTORTIONS``; each at three increasing severities, on a z-scored slice):

* ``noise``     additive Gaussian noise, std = severity (MONAI ``RandGaussianNoise``, std not sampled);
* ``blur``      Gaussian smoothing, sigma = severity pixels (MONAI ``GaussianSmooth``);
* ``bias``      a smooth multiplicative bias field, degree-3 polynomial coefficients = severity (MONAI ``RandBiasField``);
* ``ghosting``  every 4th phase-encoding line of k-space (rows) scaled by (1 - severity), centre line kept
                (TorchIO ``RandomGhosting``'s model, written here: MONAI has no ghosting transform);
* ``motion``    rigid in-plane translation by ``severity`` pixels during acquisition: a random 40% of the
                phase-encoding lines (outside the central 8) are taken from the k-space of the shifted image.

A triplet pairs two distortions of the same kind and reference at different severities; its
``h`` is 1 if p1 is the weaker (less distorted, so closer to the reference) and 0 otherwise. The order
of the pair is drawn at random, so both conventions occur. With ``twoafc_score``'s convention (d0 < d1:
p0 judged closer) a metric scores 1 on a triplet when it puts the weaker distortion closer.

The set is written in the documented layout (``twoafc`` module) into ``<cache>/perceptual/<name>/``
once (temp folder + rename) and always read back through ``read_triplets``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SEVERITIES = {
    "noise": (0.1, 0.3, 0.8),
    "blur": (0.6, 1.2, 2.4),
    "bias": (0.2, 0.5, 1.0),
    "ghosting": (0.3, 0.6, 0.9),
    "motion": (1.0, 3.0, 6.0),
}
DISTORTIONS = tuple(SEVERITIES)
VERSION = "v1"  # bump when the distortions or the selection change (the folder name carries it)


def distort(image: np.ndarray, kind: str, severity: float, *, seed: int) -> np.ndarray:
    """image [1, H, W] (z-scored) -> the same image distorted by ``kind`` at ``severity`` (deterministic per seed)."""
    if kind == "noise":
        from monai.transforms import RandGaussianNoise

        t = RandGaussianNoise(prob=1.0, mean=0.0, std=severity, sample_std=False)
        t.set_random_state(seed)
        return np.asarray(t(image), dtype=np.float32)
    if kind == "blur":
        from monai.transforms import GaussianSmooth

        return np.asarray(GaussianSmooth(sigma=severity)(image), dtype=np.float32)
    if kind == "bias":
        from monai.transforms import RandBiasField

        t = RandBiasField(degree=3, coeff_range=(severity, severity), prob=1.0)
        t.set_random_state(seed)
        return np.asarray(t(image), dtype=np.float32)
    if kind == "ghosting":
        return ghosting(image, intensity=severity, every=4)
    if kind == "motion":
        return motion(image, shift=severity, fraction=0.4, seed=seed)
    raise ValueError(f"unknown distortion {kind!r}; expected one of {', '.join(DISTORTIONS)}")


def ghosting(image: np.ndarray, *, intensity: float, every: int) -> np.ndarray:
    """Scale every ``every``-th phase-encoding (row) line of k-space by (1 - intensity), keeping the centre line."""
    k = np.fft.fftshift(np.fft.fft2(image), axes=(-2, -1))
    centre = k.shape[-2] // 2
    keep = k[..., centre, :].copy()
    k[..., ::every, :] *= 1.0 - intensity
    k[..., centre, :] = keep
    return np.real(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)))).astype(np.float32)


def motion(image: np.ndarray, *, shift: float, fraction: float, seed: int) -> np.ndarray:
    """A random ``fraction`` of the phase-encoding lines (rows, outside the 8 central ones) acquired after the
    object moved by ``shift`` pixels (a k-space phase ramp: sub-pixel shifts are exact)."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[-2:]
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = shift * np.sin(angle), shift * np.cos(angle)
    ky, kx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    k = np.fft.fft2(image)
    moved = k * np.exp(-2j * np.pi * (ky * dy + kx * dx))
    rows = np.fft.fftfreq(h) * h  # signed line index, 0 = centre
    candidates = np.flatnonzero(np.abs(rows) >= 4)
    chosen = rng.choice(candidates, size=int(round(fraction * len(candidates))), replace=False)
    k[..., chosen, :] = moved[..., chosen, :]
    return np.real(np.fft.ifft2(k)).astype(np.float32)


def reference_slices(cache_dir: Path, *, n_cases: int, slices_per_case: int, volume_size=(64, 64, 32)) -> list[tuple[str, np.ndarray]]:
    """(name, T2 slice [1, H, W]) from the built-in BraTS volumes: the slices with the most brain
    (the paper keeps slices whose foreground exceeds 20% of the image, IV.A.2), spread over the volume."""
    from benchmark.volumes import load_volumes
    from benchmark.datasources import resolve_task_data
    from tasks import get_task

    task = get_task("brats")
    td = resolve_task_data(task, data_root=None, cache_dir=Path(cache_dir))
    t2 = task.channels.index("t2")
    volumes = load_volumes(task, td.cases[:n_cases], volume_size=tuple(volume_size))
    out = []
    for v in volumes:
        image = v.image[t2]  # [X, Y, Z], z-scored over the brain, background 0
        fg = (image != 0).mean(axis=(0, 1))  # foreground fraction per slice
        ok = np.flatnonzero(fg >= 0.2)
        ok = ok if len(ok) >= slices_per_case else np.argsort(fg)[::-1][:slices_per_case]
        picks = ok[np.linspace(0, len(ok) - 1, slices_per_case + 2).round().astype(int)[1:-1]] if len(ok) > slices_per_case else ok
        for z in sorted(int(z) for z in picks[:slices_per_case]):
            out.append((f"{v.case_id}_z{z:02d}", image[..., z][None].astype(np.float32)))
    return out


def write_builtin_triplets(root: Path, references: list[tuple[str, np.ndarray]], *, seed: int = 0) -> None:
    """Write every (reference, kind, severity pair) triplet in the documented layout under ``root``."""
    from tasks.nifti import save_nifti

    rng = np.random.default_rng(seed)
    images = root / "images"
    rows = []
    for r, (name, ref) in enumerate(references):
        save_nifti(ref[0], images / f"{name}_ref.nii.gz")
        for kind in DISTORTIONS:
            for s, severity in enumerate(SEVERITIES[kind]):
                img = distort(ref, kind, severity, seed=seed * 100003 + r * 101 + DISTORTIONS.index(kind))
                save_nifti(img[0], images / f"{name}_{kind}{s}.nii.gz")
            for weak in range(len(SEVERITIES[kind])):
                for strong in range(weak + 1, len(SEVERITIES[kind])):
                    pair = [f"images/{name}_{kind}{weak}.nii.gz", f"images/{name}_{kind}{strong}.nii.gz"]
                    swap = bool(rng.integers(2))  # p1 is the weaker one when swapped
                    p0, p1 = (pair[1], pair[0]) if swap else pair
                    rows.append({"ref": f"images/{name}_ref.nii.gz", "p0": p0, "p1": p1, "h": 1.0 if swap else 0.0,
                                 "kind": kind, "severity0": SEVERITIES[kind][strong if swap else weak],
                                 "severity1": SEVERITIES[kind][weak if swap else strong]})
    with open(root / "triplets.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def builtin_triplet_root(cache_dir: Path, *, n_cases: int = 4, slices_per_case: int = 2, seed: int = 0) -> Path:
    """Write (once) and return the folder of the built-in triplet set: n_cases x slices_per_case references
    x 5 distortions x 3 severity pairs (120 triplets by default)."""
    name = f"brats-t2-{n_cases}x{slices_per_case}-s{seed}-{VERSION}"
    from benchmark.store import write_folder_once

    root = Path(cache_dir) / "perceptual" / name
    if root.exists():
        return root
    references = reference_slices(cache_dir, n_cases=n_cases, slices_per_case=slices_per_case)
    return write_folder_once(root, lambda tmp: write_builtin_triplets(tmp, references, seed=seed))


def triplet_kinds(root: Path) -> list[str]:
    """The ``kind`` column of a built-in ``triplets.csv`` (one entry per triplet, in order; '' if absent)."""
    with open(Path(root) / "triplets.csv", newline="") as fh:
        return [row.get("kind", "") for row in csv.DictReader(fh)]
