"""A ratings folder as `benchmark.perceptual.cli agreement` reads it: a real image rated 6 and three noisier copies
of it rated 6, 4 and 1 (the noise grows as the rating falls), with ratings.csv."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.nifti import save_nifti


def write_rated_noise_series(root: Path, real: np.ndarray, rng: np.random.Generator) -> None:
    save_nifti(real, root / "real.nii.gz")
    lines = ["image,reference,rating", "real.nii.gz,real.nii.gz,6"]
    for i, (noise, stars) in enumerate([(0.05, 6), (0.3, 4), (1.0, 1)]):
        save_nifti(real + noise * rng.normal(size=real.shape).astype(np.float32), root / f"syn{i}.nii.gz")
        lines.append(f"syn{i}.nii.gz,real.nii.gz,{stars}")
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
