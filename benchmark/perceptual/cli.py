"""Command line of the CoPer metric: ``python -m benchmark.perceptual {distance,twoafc,agreement} ...``.

    python -m benchmark.perceptual distance A.nii.gz B.nii.gz [--network rand:resnet_unet | CHECKPOINT | l1 | ...] [--slice Z]
    python -m benchmark.perceptual twoafc [ROOT] [--network ...]      # default ROOT: the built-in triplets
    python -m benchmark.perceptual agreement ROOT [--network ...]     # ROOT/ratings.csv (CoPer IV.A.4)

``--network`` takes a comma-separated list; each gives one row (CoPer Table II's layout), e.g. its baselines that need
no download: ``--network l1,l2,psnr,ssim,rand:vgg16_unet,rand:resnet_unet`` (``benchmark.perceptual.baselines``;
``--resnet-depth 34`` for Table II's ResNet-34). ``distance`` z-scores both images with their joint non-zero statistics
(the same transform for both, so the distance is symmetric); ``twoafc`` z-scores each triplet with its reference's.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmark.errors import BenchmarkInputError

DEFAULT_CACHE = Path(os.environ.get("MEDSSL_CACHE", Path.home() / ".cache" / "medssl-bench"))  # as benchmark.cli


def _network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", default="rand:resnet_unet",
                   help="comma-separated: rand:<resnet_unet|vgg16_unet|vgg_unet|unet2d|vit> (random weights), a checkpoint "
                        "<cache>/pretrained/<key>.pt, or a pixel metric l1|l2|psnr|ssim (default: %(default)s)")
    p.add_argument("--size", default="paper", choices=("paper", "smoke"), help="network size of a rand: network (default: %(default)s)")
    p.add_argument("--resnet-depth", type=int, default=None, choices=(18, 34, 50, 101, 152),
                   help="ResNet depth of rand:resnet_unet (default: the size's, 50 at paper size; Table II also has 34)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed of a rand: network")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.perceptual", description="CoPer perceptual metric (Li et al., III.B, IV.A)")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("distance", help="CoPer distance of two NIfTI images (2D, or one slice of 3D volumes)")
    d.add_argument("image0", type=Path)
    d.add_argument("image1", type=Path)
    d.add_argument("--slice", type=int, default=None, help="slice index along the last axis of 3D volumes")
    _network_args(d)
    t = sub.add_parser("twoafc", help="2AFC score on a triplet folder (ROOT/triplets.csv: ref,p0,p1,h)")
    t.add_argument("root", type=Path, nargs="?", default=None, help="triplet folder (default: the built-in BraTS T2 triplets, written into the cache)")
    t.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the built-in triplets are written (default: %(default)s; env MEDSSL_CACHE)")
    _network_args(t)
    a = sub.add_parser("agreement", help="expert-rating agreement on ROOT/ratings.csv (image,reference,rating[,rater])")
    a.add_argument("root", type=Path)
    _network_args(a)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except BenchmarkInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import dataclasses

    import numpy as np
    import torch

    from benchmark.perceptual.baselines import PIXEL_METRICS, pixel_distance, pixel_triplet_distances
    from benchmark.perceptual.metric import coper_distance, load_extractor, resolve_size, triplet_distances
    from benchmark.perceptual.twoafc import expert_agreement, read_ratings, read_slice, read_triplets, standardize, twoafc_score

    if args.command == "twoafc" and args.root is not None and not (args.root / "triplets.csv").is_file():
        raise BenchmarkInputError(f"{args.root}: no triplets.csv; expected ROOT/triplets.csv with columns ref,p0,p1,h")
    names = [n.strip() for n in args.network.split(",") if n.strip()]
    if not names:
        raise BenchmarkInputError("--network: expected at least one network or pixel metric")
    size = resolve_size(args.size)
    if args.resnet_depth is not None:
        size = dataclasses.replace(size, resnet_depth=args.resnet_depth)

    extractors = {name: load_extractor(name, size=size, seed=args.seed) for name in names if name not in PIXEL_METRICS}  # errors first

    def distance_of(name: str):
        """(reference [B, c, H, W], image) -> [B] for a pixel metric or a network."""
        if name in PIXEL_METRICS:
            return lambda a, b: pixel_distance(name, a, b)
        return lambda a, b: coper_distance(a, b, extractors[name])

    if args.command == "distance":
        a = read_slice(args.image0, slice_index=args.slice)
        b = read_slice(args.image1, slice_index=args.slice)
        if a.shape != b.shape:
            raise BenchmarkInputError(f"{args.image1}: shape {a.shape[1:]} differs from {args.image0}'s {b.shape[1:]}; expected the same size")
        a, b = standardize(a, b)
        for name in names:
            with torch.no_grad():
                d = distance_of(name)(torch.from_numpy(a)[None], torch.from_numpy(b)[None])
            print(f"{float(d):.6f}" if len(names) == 1 else f"{name} {float(d):.6f}")
        return 0
    if args.command == "twoafc":
        root = args.root
        if root is None:
            from benchmark.perceptual.triplets import builtin_triplet_root

            root = builtin_triplet_root(args.cache_dir)
        triplets = read_triplets(root)
        for name in names:
            if name in PIXEL_METRICS:
                d0, d1 = pixel_triplet_distances(triplets, name)
            else:
                d0, d1 = triplet_distances(triplets, extractors[name])
            score = twoafc_score(d0, d1, [t.h for t in triplets])
            print(f"2AFC {score:.4f} on {len(triplets)} triplets of {root} with {name}")
        return 0
    pairs = read_ratings(args.root)
    images = [standardize(read_slice(pair.real), read_slice(pair.synthetic)) for pair in pairs]
    for name in names:
        distance = distance_of(name)
        with torch.no_grad():
            distances = [float(distance(torch.from_numpy(a)[None], torch.from_numpy(b)[None])) for a, b in images]
        for rater in sorted({p.rater for p in pairs}):
            idx = [i for i, p in enumerate(pairs) if p.rater == rater]
            res = expert_agreement(np.asarray(distances)[idx], [pairs[i].rating_real for i in idx], [pairs[i].rating_synthetic for i in idx])
            prefix = f"{rater}: " if len(names) == 1 else f"{name} {rater}: "
            print(prefix + ", ".join(f"{k} {v:.4f}" for k, v in res.items()))
    return 0
