"""Micro-benchmark: fine-tuning sample time with and without each paper's augmentation (CPU, one thread).

    OMP_NUM_THREADS=1 python scripts/bench_augmentation.py [--samples 200]
    OMP_NUM_THREADS=1 python scripts/bench_augmentation.py --pretraining [--steps 10]

Draws samples from ``CropDataset`` on smoke-size volumes (4 channels, 64 x 64 x 32) for a 2D slice network
(64 x 64 crops, unet2d) and a 3D one (64 x 64 x 32 crops, swin_unetr / vit), once without augmentation and once
per policy (``benchmark/spatial_augmentation.py``), with and without the elastic part, and prints ms per sample.

``--pretraining``: the pretraining samples of one smoke step (the smoke crop and batch of the method's backbone) of
one method per paper that augments its pretraining (csi / wsi source pools and inpainting crops: SI; ladp: LADP;
csm: CSM), built on the built-in data by ``benchmark.train.pretraining_dataset`` without and with the paper's
policy, in CPU milliseconds per step (``time.process_time``: other processes' load does not count). With the
DataLoader in the training process (``--loader-workers 0``, the default) that is what a pretraining step gains.
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


def pretraining_steps(steps: int) -> None:
    import tempfile

    from benchmark.backbones import build_backbone
    from benchmark.datasources import resolve_task_data
    from benchmark.volumes import load_volumes
    from benchmark.methods import get_method
    from benchmark.profiles import SMOKE
    from benchmark.train import pretraining_dataset
    from tasks import get_task

    cache = Path(tempfile.mkdtemp(prefix="bench-aug-"))
    print(f"{'method':>11} {'backbone':>9} {'batch':>5} {'policy':>6} {'none ms/step':>12} {'aug ms/step':>11} {'added':>7}")
    for name, task in (("csi", "brats"), ("wsi", "brats"), ("inpainting", "brats"), ("ladp", "hie"), ("csm", "brats")):
        td = resolve_task_data(get_task(task), data_root=None, cache_dir=cache)
        volumes = load_volumes(td.task, td.cases[:8], volume_size=SMOKE.volume_size)
        cls = get_method(name)
        cfg = cls.make_config()
        backbone, policy = cls.backbone_for(cfg), cls.pretrain_augmentation(cfg)
        roi, batch = SMOKE.rois[backbone], SMOKE.smoke_pretrain[backbone].batch_size
        channels = cls.backbone_channels(cfg, in_channels=len(td.task.channels))
        method = cls(build_backbone(backbone, in_channels=channels[0], out_channels=channels[1], size=SMOKE.backbone_size, roi=roi), cfg,
                     in_channels=len(td.task.channels))
        ms = {}
        for aug in ("none", policy):
            data = pretraining_dataset(method, volumes, roi=roi, length=batch * (steps + 1), seed=0, protocol=SMOKE.protocol, augmentation=aug)
            data[0]  # imports, first-call set-up
            start = time.process_time()
            for i in range(1, batch * steps + 1):
                data[i]
            ms[aug] = (time.process_time() - start) / steps * 1000
        print(f"{name:>11} {backbone:>9} {batch:>5} {policy:>6} {ms['none']:12.1f} {ms[policy]:11.1f} {ms[policy] - ms['none']:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pretraining", action="store_true", help="the pretraining samples of a smoke step instead")
    parser.add_argument("--steps", type=int, default=10, help="--pretraining: steps timed per method")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.pretraining:
        pretraining_steps(args.steps)
        return
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
