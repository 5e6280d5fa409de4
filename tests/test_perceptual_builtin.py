"""The built-in triplet set (written to disk, read back through the reader) and the command line."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from benchmark.perceptual.cli import main
from benchmark.perceptual.metric import random_extractor, triplet_distances
from benchmark.perceptual.triplets import DISTORTIONS, SEVERITIES, builtin_triplet_root, distort, triplet_kinds
from benchmark.perceptual.twoafc import read_triplets, twoafc_score
from rating_fixtures import write_rated_noise_series
from tasks.nifti import save_nifti


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("coper-cache")


@pytest.fixture(scope="module")
def root(cache):
    return builtin_triplet_root(cache, n_cases=2, slices_per_case=1)


def test_builtin_layout_and_convention(root):
    """h = 1 exactly when p1 is the weaker distortion; 3 severity pairs per kind and reference."""
    triplets = read_triplets(root)
    with open(root / "triplets.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(triplets) == len(rows) == 2 * len(DISTORTIONS) * 3
    for t, row in zip(triplets, rows):
        assert t.h == (1.0 if float(row["severity1"]) < float(row["severity0"]) else 0.0)
    assert 0 < sum(t.h for t in triplets) < len(triplets)  # both orders occur
    assert sorted(set(triplet_kinds(root))) == sorted(DISTORTIONS)
    assert builtin_triplet_root(root.parent.parent, n_cases=2, slices_per_case=1) == root  # written once


def test_distortions_grow_with_severity(root):
    ref = read_triplets(root)[0].ref
    for kind in DISTORTIONS:
        errors = [float(np.abs(distort(ref, kind, s, seed=1) - ref).mean()) for s in SEVERITIES[kind]]
        assert errors[0] > 0 and errors == sorted(errors), kind


@pytest.mark.parametrize("backbone", ["resnet_unet", "vgg_unet"])
def test_random_networks_beat_chance_on_builtin_triplets(root, backbone):
    triplets = read_triplets(root)
    d0, d1 = triplet_distances(triplets, random_extractor(backbone, size="smoke"))
    score = twoafc_score(d0, d1, [t.h for t in triplets])
    print(f"rand:{backbone} (smoke) 2AFC on {len(triplets)} built-in triplets: {score:.3f}")
    assert score > 0.5


def test_cli_distance_and_twoafc(root, tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(32, 32, 3)).astype(np.float32)
    save_nifti(a, tmp_path / "a.nii.gz")
    save_nifti(a + 0.3 * rng.normal(size=a.shape).astype(np.float32), tmp_path / "b.nii.gz")
    args = ["--network", "rand:vgg_unet", "--size", "smoke"]
    assert main(["distance", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--slice", "1", *args]) == 0
    d_ab = float(capsys.readouterr().out)
    assert main(["distance", str(tmp_path / "b.nii.gz"), str(tmp_path / "a.nii.gz"), "--slice", "1", *args]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(d_ab, rel=1e-5) and d_ab > 0
    assert main(["distance", str(tmp_path / "a.nii.gz"), str(tmp_path / "a.nii.gz"), "--slice", "1", *args]) == 0
    assert float(capsys.readouterr().out) == 0.0
    assert main(["twoafc", str(root), *args]) == 0
    assert "2AFC" in capsys.readouterr().out


def test_cli_errors_name_the_file(tmp_path, capsys):
    save_nifti(np.zeros((32, 32, 3), np.float32), tmp_path / "a.nii.gz")
    assert main(["distance", str(tmp_path / "a.nii.gz"), str(tmp_path / "a.nii.gz"), "--network", "rand:vgg_unet", "--size", "smoke"]) == 2
    assert "a.nii.gz: a 3D volume (32, 32, 3) needs a slice index" in capsys.readouterr().err
    assert main(["twoafc", str(tmp_path), "--network", "rand:vgg_unet"]) == 2
    assert f"{tmp_path}: no triplets.csv" in capsys.readouterr().err
    assert main(["distance", str(tmp_path / "a.nii.gz"), str(tmp_path / "a.nii.gz"), "--network", str(tmp_path / "x.pt")]) == 2
    assert "x.pt: no such checkpoint" in capsys.readouterr().err


def test_cli_agreement_on_ratings(tmp_path, capsys):
    rng = np.random.default_rng(1)
    real = rng.normal(size=(32, 32)).astype(np.float32)
    write_rated_noise_series(tmp_path, real, rng)
    assert main(["agreement", str(tmp_path), "--network", "rand:vgg_unet", "--size", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rater: n 3.0000") and "spearman 1.0000" in out
