"""Micro-benchmark: fine-tuning sample time with and without each paper's augmentation (CPU, one thread).

    OMP_NUM_THREADS=1 python scripts/bench_augmentation.py [--samples 200]

Draws samples from ``CropDataset`` on smoke-size volumes (4 channels, 64 x 64 x 32) for a 2D slice network
(64 x 64 crops, unet2d) and a 3D one (64 x 64 x 32 crops, swin_unetr / vit), once without augmentation and once
per policy (``benchmark/spatial_augmentation.py``), with and without the elastic part, and prints ms per sample.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repository's packages

from benchmark.data import CropDataset
from benchmark.spatial_augmentation import POLICIES, SpatialAugmentation
from tasks import Volume


def volumes(n: int = 4, shape=(64, 64, 32)) -> list[Volume]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        label = np.zeros(shape, dtype=np.int64)
        label[20:40, 24:44, 8:20] = rng.choice([1, 2, 4], size=(20, 20, 12))
        out.append(Volume(case_id=f"c{i}", image=rng.standard_normal((4, *shape), dtype=np.float32), label=label))
    return out


def ms_per_sample(dataset, samples: int) -> float:
    dataset[0]  # imports, first-call set-up
    start = time.perf_counter()
    for i in range(samples):
        dataset[i]
    return (time.perf_counter() - start) / samples * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    vols = volumes()
    print(f"{'crop':>12} {'policy':>14} {'ms/sample':>10}")
    for roi in ((64, 64), (64, 64, 32)):
        n = args.samples if len(roi) == 2 else max(20, args.samples // 4)
        base = ms_per_sample(CropDataset(vols, roi=roi, length=n + 1, seed=0, with_label=True, foreground_prob=0.33), n)
        print(f"{'x'.join(map(str, roi)):>12} {'(no aug)':>14} {base:10.2f}")
        for policy in POLICIES:
            variants = [True, False] if policy == "si" else [True]
            for elastic in variants:
                aug = SpatialAugmentation(policy, spatial_dims=len(roi), elastic=elastic)
                data = CropDataset(vols, roi=roi, length=n + 1, seed=0, with_label=True, foreground_prob=0.33, augmentation=aug)
                name = policy + ("" if elastic or policy != "si" else " (no elastic)")
                print(f"{'x'.join(map(str, roi)):>12} {name:>14} {ms_per_sample(data, n):10.2f}")


if __name__ == "__main__":
    main()
