"""CoPer Table II's low-level baselines (ℓ1, L2, PSNR, SSIM: benchmark/perceptual/baselines.py) as 2AFC / agreement rows,
beside the randomly initialised networks, from the library and the command line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.perceptual.baselines import PIXEL_METRICS, pixel_distance, pixel_triplet_distances
from benchmark.perceptual.cli import main
from benchmark.perceptual.twoafc import Triplet, twoafc_score
from rating_fixtures import write_rated_noise_series


def _smooth(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A smooth, positive [1, H, W] image (blurred noise around 100, as gray levels): structure that SSIM sees, and
    intensities away from 0, where SSIM's luminance term reads a shift as the small relative change it is."""
    from scipy.ndimage import gaussian_filter

    return (gaussian_filter(rng.standard_normal((size, size)), sigma=3)[None] * 10 + 100).astype(np.float32)


def test_known_values():
    """A constant error c on a reference of range R: l1 = c, l2 = c², psnr's distance c² / R² (PSNR = 20 log10(R / c));
    identical images: 0 everywhere (SSIM 1)."""
    ref = torch.linspace(0, 4, 256).reshape(1, 1, 16, 16).double()
    image = ref + 0.5
    got = {name: float(pixel_distance(name, ref, image)) for name in ("l1", "l2", "psnr")}
    assert got == pytest.approx({"l1": 0.5, "l2": 0.25, "psnr": 0.25 / 16.0})
    assert -10 * np.log10(got["psnr"]) == pytest.approx(20 * np.log10(4.0 / 0.5))
    same = {name: float(pixel_distance(name, ref, ref)) for name in PIXEL_METRICS}
    assert same == pytest.approx({name: 0.0 for name in PIXEL_METRICS}, abs=1e-6)
    with pytest.raises(ValueError, match="unknown pixel metric"):
        pixel_distance("lpips", ref, ref)


def test_known_ordering_of_the_baselines():
    """Three kinds of triplet whose answer each metric's definition fixes (h = 0: p0 judged closer):

    * weaker vs stronger noise: every baseline prefers the weaker (2AFC 1);
    * a brightness shift (structure intact, MSE 0.25) vs noise of smaller MSE (0.16): L1 / L2 / PSNR prefer the noise
      (2AFC 0), SSIM the shift (2AFC 1) - the case SSIM was designed for (Wang et al. 2004, Fig. 2);
    * PSNR and L2 rank every triplet alike (one data range per reference)."""
    rng = np.random.default_rng(0)
    noise_pairs, shift_pairs = [], []
    for _ in range(6):
        ref = _smooth(rng)
        noise = rng.standard_normal(ref.shape).astype(np.float32)
        noise_pairs.append(Triplet(ref=ref, p0=ref + 0.1 * noise, p1=ref + 0.5 * noise, h=0.0))
        shift_pairs.append(Triplet(ref=ref, p0=ref + 0.5, p1=ref + 0.4 * noise, h=0.0))
    scores = {}
    for name in PIXEL_METRICS:
        for kind, triplets in (("noise", noise_pairs), ("shift", shift_pairs)):
            d0, d1 = pixel_triplet_distances(triplets, name)
            scores[name, kind] = twoafc_score(d0, d1, [t.h for t in triplets])
    assert {name: scores[name, "noise"] for name in PIXEL_METRICS} == {name: 1.0 for name in PIXEL_METRICS}
    assert {name: scores[name, "shift"] for name in PIXEL_METRICS} == {"l1": 0.0, "l2": 0.0, "psnr": 0.0, "ssim": 1.0}
    flipped = [Triplet(ref=t.ref, p0=t.p0, p1=t.p1, h=1.0) for t in shift_pairs]  # the raters' other answer
    assert twoafc_score(*pixel_triplet_distances(flipped, "ssim"), [1.0] * len(flipped)) == 0.0


def test_cli_prints_one_row_per_baseline_and_network(tmp_path, capsys):
    """Table II's no-download rows from one command: pixel metrics and a random VGG-16, each computed on the triplets."""
    from benchmark.perceptual.triplets import builtin_triplet_root
    from benchmark.perceptual.twoafc import read_triplets

    root = builtin_triplet_root(tmp_path / "cache", n_cases=2, slices_per_case=1)
    networks = "l1,l2,psnr,ssim,rand:vgg16_unet"
    assert main(["twoafc", str(root), "--network", networks, "--size", "smoke"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.rsplit(" with ", 1)[1] for line in lines] == networks.split(",")
    scores = {line.rsplit(" with ", 1)[1]: float(line.split()[1]) for line in lines}
    triplets = read_triplets(root)
    for name in PIXEL_METRICS:  # computed, not stored: the library gives the same number
        assert scores[name] == pytest.approx(twoafc_score(*pixel_triplet_distances(triplets, name), [t.h for t in triplets]), abs=1e-4)
    assert scores["psnr"] == scores["l2"]


def test_cli_agreement_rows_for_baselines(tmp_path, capsys):
    """Ratings that fall as the noise grows: every pixel baseline ranks the synthetic images as the expert does."""
    rng = np.random.default_rng(1)
    real = _smooth(rng, 32)[0]
    write_rated_noise_series(tmp_path, real, rng)
    assert main(["agreement", str(tmp_path), "--network", "l1,psnr,ssim"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in out] == ["l1", "psnr", "ssim"]
    assert all("spearman 1.0000" in line and "n 3.0000" in line for line in out)
