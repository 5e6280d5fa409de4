"""2AFC score and expert-rating agreement (CoPer paper IV.A.1 and IV.A.3-4; LPIPS section 2.2), and the
folder layout they read.

Triplet layout (``ROOT/triplets.csv``, one header line, one triplet per line)::

    ref,p0,p1,h[,slice]
    images/0000_ref.nii.gz,images/0000_p0.nii.gz,images/0000_p1.nii.gz,1.0

* ``ref``, ``p0``, ``p1``: NIfTI paths relative to ROOT (the reference and two distortions of it);
  a 2D image, a 3D image with one slice, or a 3D volume with the optional ``slice`` column (index
  along the last axis) all give one 2D slice;
* ``h`` in [0, 1]: the fraction of raters who judged ``p1`` closer to ``ref`` (BAPPS's "judge").
  A metric agrees with them where d0 < d1 (p0 judged closer) for the (1 - h) share and d1 < d0 for h.

Expert ratings (optional ``ROOT/ratings.csv``, IV.A.3)::

    image,reference,rating[,rater]

one rated image per line, ``rating`` in stars (1-6 in the paper). A line whose ``image`` equals its
``reference`` rates the real image itself (r^R); any other line rates ``image`` as a synthetic version
of the real image ``reference`` (r^S), and the metric's distance of that pair is d(reference, image).
``rater`` (optional) keeps the experts apart (agreement is computed per expert, IV.A.4).

``read_triplets`` z-scores each triplet with its reference's non-zero statistics (``standardize``);
the CLI's ``distance`` and ``agreement`` z-score each pair with their joint statistics.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError

TRIPLET_COLUMNS = ("ref", "p0", "p1", "h")
RATING_COLUMNS = ("image", "reference", "rating")


@dataclass(frozen=True)
class Triplet:
    """One 2AFC judgement: ``ref``, ``p0``, ``p1`` [1, H, W] float32 and h = share of raters preferring p1."""

    ref: np.ndarray
    p0: np.ndarray
    p1: np.ndarray
    h: float
    source: str = ""  # where it was read from ("triplets.csv line 3")


# ---- the scores -----------------------------------------------------------------------------------------
def twoafc_score(d0, d1, h) -> float:
    """2AFC agreement (LPIPS 2.2, CoPer IV.A.1): mean((d0 < d1)(1 - h) + (d1 < d0) h + 0.5 (d0 = d1))."""
    d0, d1, h = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (d0, d1, h))
    if not (d0.shape == d1.shape == h.shape) or d0.numel() == 0:
        raise ValueError(f"twoafc_score: d0, d1 and h need the same non-zero length, got {d0.numel()}, {d1.numel()}, {h.numel()}")
    if ((h < 0) | (h > 1)).any():
        raise ValueError("twoafc_score: h must lie in [0, 1] (the fraction of raters preferring p1)")
    score = (d0 < d1).double() * (1 - h) + (d1 < d0).double() * h + 0.5 * (d0 == d1).double()
    return float(score.mean())


def expert_agreement(distances, ratings_real, ratings_synthetic) -> dict[str, float]:
    """Agreement of a metric with one expert (CoPer IV.A.4, Fig. 3b).

    The paper normalises the n distances d_i (real image i vs its synthetic counterpart) by their
    maximum, d'_i = d_i / max_j d_j, and the expert's absolute rating differences
    r_i = |r_i^R - r_i^S| by theirs, then compares the two on [0, 1] (Fig. 3b: the closer the metric's
    bar to the expert's, the better). Returned: ``metric_mean`` (mean d'), ``expert_mean`` (mean r'),
    ``mean_gap`` = |mean d' - mean r'| (what Fig. 3b shows), ``mean_abs_error`` = mean |d'_i - r'_i|,
    and ``spearman``, the rank correlation of d and r (not in the paper: our addition, NaN when
    either side is constant). An all-zero side stays zero (nothing to divide by).
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    r = np.abs(np.asarray(ratings_real, dtype=np.float64).ravel() - np.asarray(ratings_synthetic, dtype=np.float64).ravel())
    if d.shape != r.shape or d.size == 0:
        raise ValueError(f"expert_agreement: need as many distances as rating pairs (> 0), got {d.size} and {r.size}")
    if (d < 0).any():
        raise ValueError("expert_agreement: distances must be >= 0")
    dn = d / d.max() if d.max() > 0 else d
    rn = r / r.max() if r.max() > 0 else r
    if np.ptp(d) > 0 and np.ptp(r) > 0:
        from scipy.stats import spearmanr

        rho = float(spearmanr(d, r).statistic)
    else:
        rho = float("nan")
    return {"n": float(d.size), "metric_mean": float(dn.mean()), "expert_mean": float(rn.mean()),
            "mean_gap": float(abs(dn.mean() - rn.mean())), "mean_abs_error": float(np.abs(dn - rn).mean()), "spearman": rho}


# ---- reading -------------------------------------------------------------------------------------------------
def standardize(*images: np.ndarray, like: np.ndarray | None = None) -> list[np.ndarray]:
    """Z-score every image with ONE mean / std: those of the non-zero voxels of ``like`` (default: of all
    images together), so intensity differences between the images survive and the order does not matter."""
    pool = like if like is not None else np.concatenate([np.ravel(i) for i in images])
    values = pool[pool != 0] if (pool != 0).any() else np.ravel(pool)
    mean, std = float(values.mean()), float(values.std())
    return [((i - mean) / (std if std > 0 else 1.0)).astype(np.float32) for i in images]


def read_slice(path: Path, *, slice_index: int | None = None, where: str = "") -> np.ndarray:
    """A NIfTI file -> one 2D slice [1, H, W] float32 (2D file, one-slice 3D file, or ``slice_index`` of a volume)."""
    from tasks.nifti import load_nifti

    at = f" ({where})" if where else ""
    data, _ = load_nifti(path)
    data = np.squeeze(data, axis=tuple(range(3, data.ndim))) if data.ndim > 3 else data  # drop trailing singleton dims
    if data.ndim == 3 and slice_index is None and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim == 3:
        if slice_index is None:
            raise BenchmarkInputError(f"{path}{at}: a 3D volume {data.shape} needs a slice index (a 'slice' column / --slice Z); "
                                      "expected a 2D image or a volume with one slice")
        if not -data.shape[2] <= slice_index < data.shape[2]:
            raise BenchmarkInputError(f"{path}{at}: slice {slice_index} is outside the volume's {data.shape[2]} slices")
        data = data[..., slice_index]
    elif slice_index not in (None, 0):
        raise BenchmarkInputError(f"{path}{at}: slice {slice_index} asked of a 2D image")
    if data.ndim != 2:
        raise BenchmarkInputError(f"{path}{at}: expected a 2D image or a 3D volume, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise BenchmarkInputError(f"{path}{at}: contains NaN or infinite values")
    return data[None].astype(np.float32)


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise BenchmarkInputError(f"{path}: file not found; expected a CSV with columns {','.join(required)}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise BenchmarkInputError(f"{path} line 1: missing column(s) {', '.join(missing)}; expected a header {','.join(required)}, got {','.join(header) or '(empty file)'}")
        rows = [(i + 2, {(k or "").strip(): (v or "").strip() for k, v in row.items()}) for i, row in enumerate(reader)]
    if not rows:
        raise BenchmarkInputError(f"{path}: no rows after the header")
    return rows


def read_triplets(root: Path, *, normalize: bool = True) -> list[Triplet]:
    """Read ``ROOT/triplets.csv`` (module docstring). ``normalize``: z-score each triplet's three images with
    the reference's non-zero statistics (one transform for all three: distances stay comparable)."""
    root = Path(root)
    csv_path = root / "triplets.csv"
    out = []
    for line, row in _rows(csv_path, TRIPLET_COLUMNS):
        where = f"{csv_path.name} line {line}"
        try:
            h = float(row["h"])
        except ValueError:
            raise BenchmarkInputError(f"{csv_path} line {line}: h = {row['h']!r} is not a number; expected the fraction of raters preferring p1, in [0, 1]") from None
        if not 0.0 <= h <= 1.0:
            raise BenchmarkInputError(f"{csv_path} line {line}: h = {h} is outside [0, 1]; expected the fraction of raters preferring p1")
        slice_index = None
        if row.get("slice"):
            try:
                slice_index = int(row["slice"])
            except ValueError:
                raise BenchmarkInputError(f"{csv_path} line {line}: slice = {row['slice']!r} is not an integer") from None
        images = []
        for key in ("ref", "p0", "p1"):
            if not row[key]:
                raise BenchmarkInputError(f"{csv_path} line {line}: empty {key}; expected a NIfTI path relative to {root}")
            images.append(read_slice(root / row[key], slice_index=slice_index, where=where))
        if not images[0].shape == images[1].shape == images[2].shape:
            raise BenchmarkInputError(f"{csv_path} line {line}: ref, p0 and p1 differ in shape ({', '.join(str(i.shape[1:]) for i in images)})")
        if normalize:
            images = standardize(*images, like=images[0])
        out.append(Triplet(ref=images[0], p0=images[1], p1=images[2], h=h, source=where))
    return out


@dataclass(frozen=True)
class RatingPair:
    """One real target image and one other (synthetic) image rated against the same reference (IV.A.3)."""

    real: Path
    synthetic: Path
    rating_real: float
    rating_synthetic: float
    rater: str


def read_ratings(root: Path) -> list[RatingPair]:
    """Read ``ROOT/ratings.csv``: ``image,reference,rating[,rater]``.

    Pairing (IV.A.4: real image i and its synthetic counterpart): a line whose ``image`` equals its
    ``reference`` rates the real image itself; every other line rates ``image`` as a synthetic version
    of ``reference`` and is paired with the real image's rating by the same rater (column ``rater``,
    default one rater). The metric's distance of a pair is d(reference, image).
    """
    root = Path(root)
    csv_path = root / "ratings.csv"
    real: dict[tuple[str, str], float] = {}
    others = []
    for line, row in _rows(csv_path, RATING_COLUMNS):
        try:
            rating = float(row["rating"])
        except ValueError:
            raise BenchmarkInputError(f"{csv_path} line {line}: rating = {row['rating']!r} is not a number") from None
        if not row["image"] or not row["reference"]:
            raise BenchmarkInputError(f"{csv_path} line {line}: empty image or reference; expected NIfTI paths relative to {root}")
        for key in ("image", "reference"):
            if not (root / row[key]).is_file():
                raise BenchmarkInputError(f"{csv_path} line {line}: {key} {row[key]} not found under {root}")
        rater = row.get("rater") or "rater"
        if row["image"] == row["reference"]:
            real[(row["reference"], rater)] = rating
        else:
            others.append((line, row, rating, rater))
    pairs = []
    for line, row, rating, rater in others:
        if (row["reference"], rater) not in real:
            raise BenchmarkInputError(f"{csv_path} line {line}: no rating of the real image {row['reference']} by {rater}; "
                                      "expected a line with image = reference = that path")
        pairs.append(RatingPair(real=root / row["reference"], synthetic=root / row["image"], rating_real=real[(row["reference"], rater)],
                                rating_synthetic=rating, rater=rater))
    if not pairs:
        raise BenchmarkInputError(f"{csv_path}: no synthetic-image ratings (every line has image = reference)")
    return pairs
