"""Evaluation of synthetic images as CoPer Table III does it, the same for every method of a comparison.

Per test case, over its axial slices that hold foreground (the real target is non-zero there; Table III
"averaged across the 2D slices"):

* ``psnr`` / ``ssim``: MONAI ``PSNRMetric`` / ``SSIMMetric`` (Gaussian window 11, σ 1.5, Wang et al. 2004) on
  the images rescaled by the REAL target's intensity range of the case ([min, max] -> [0, 1]; data range 1);
* ``coper``: the CoPer metric (III.B, weights one) with the paper's evaluation network: a SwAV-pretrained VGG
  (SwAV is the paper's choice for domain-specific representations, V.B) trained on the TARGET series of the
  split's non-test cases, like the ``l1+coper_swav_vgg`` loss network (trained separately here, so that a run
  without that method still has it);
* ``lpips``: the LPIPS formula (Zhang et al. 2018) with the ``lpips`` package's own randomly initialised
  VGG-16 trunk and no calibrated linear layers (``pretrained=False, pnet_rand=True, lpips=False``: nothing is
  downloaded), seeded, inputs scaled to [-1, 1] as LPIPS expects;
* ``dice_synth_<region>`` / ``dice_synth_mean`` (labelled base tasks only): the Dice of a segmentation network
  trained on REAL images (the base task's kind, all its series) applied to the case with its target series
  replaced by the synthetic one (Table III's downstream Dice; the "upper bound" is that network on the real case).

The segmentation and CoPer networks are trained once per task / seed / split and cached by content hash in
``<cache>/synthesis_eval/`` (a lock file makes concurrent jobs train them once), so every method of a
comparison is scored by the same networks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.datasources import fingerprint
from benchmark.inference import predict_volume
from benchmark.perceptual.metric import FeatureExtractor, coper_distance

LPIPS_SEED = 0


@dataclass
class Evaluator:
    """The networks every method of a comparison is scored with (module docstring)."""

    metric_network: FeatureExtractor
    lpips_net: nn.Module
    segmenter: nn.Module | None  # None: the base task has no labels
    segmenter_roi: tuple[int, ...] = ()  # its sliding window (the profile's unet2d crop)


def target_series_volumes(task, volumes: list) -> list:
    """The target series only (CoPer IV.B), one grey volume per target series and case (Table I mixes modalities):
    what a loss network or the CoPer scoring network is pretrained on."""
    return [dataclasses.replace(v, image=v.image[i:i + 1], label=None, case_id=f"{v.case_id}:{task.channels[i]}")
            for v in volumes for i in task.target_index]


# ---- per-slice image quality ------------------------------------------------------------------------------
def foreground_slices(real: torch.Tensor) -> torch.Tensor:
    """Indices of the axial slices where the real target [n, X, Y, Z] has any non-zero voxel (all if none has)."""
    keep = (real != 0).flatten(0, 2).any(dim=0) if real.dim() == 4 else (real != 0).flatten(0, 1).any(dim=0)
    idx = torch.nonzero(keep).flatten()
    return idx if len(idx) else torch.arange(real.shape[-1])


def rescale(fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images mapped by the real image's [min, max] to [0, 1] (the fake is not clipped)."""
    lo, hi = real.min(), real.max()
    scale = (hi - lo).clamp_min(1e-8)
    return (fake - lo) / scale, (real - lo) / scale


def slice_quality(fake: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """PSNR and SSIM (MONAI, data range 1) of slices [S, 1, H, W] already in [0, 1], averaged over the slices."""
    from monai.metrics import PSNRMetric, SSIMMetric

    psnr = PSNRMetric(max_val=1.0, reduction="none")(fake, real).flatten()
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(fake, real).flatten()
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean())}


def lpips_network(seed: int = LPIPS_SEED) -> nn.Module:
    """LPIPS with its random VGG-16 trunk and no linear layers (no download), seeded; the global RNG is untouched."""
    import warnings

    import lpips

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about the deprecated ``pretrained`` argument
        torch.manual_seed(seed)
        net = lpips.LPIPS(pretrained=False, net="vgg", pnet_rand=True, lpips=False, verbose=False)
    return net.eval().requires_grad_(False)


@torch.no_grad()
def quality_rows(fake: torch.Tensor, real: torch.Tensor, *, evaluator: Evaluator | None, primary_only: bool) -> dict[str, float]:
    """Every image-quality metric of one case: fake, real [n, X, Y, Z] (n target series; averaged over them)."""
    idx = foreground_slices(real)
    out: dict[str, list[float]] = {}
    for j in range(real.shape[0]):
        f, r = rescale(fake[j], real[j])
        fs, rs = f[..., idx].permute(2, 0, 1)[:, None], r[..., idx].permute(2, 0, 1)[:, None]  # [S, 1, X, Y]
        values = {"psnr": slice_quality(fs, rs)["psnr"]} if primary_only else slice_quality(fs, rs)
        if not primary_only and evaluator is not None:
            device = fs.device
            values["coper"] = float(coper_distance(fs, rs, evaluator.metric_network.to(device)).mean())
            lp = evaluator.lpips_net.to(device)
            values["lpips"] = float(lp(fs.repeat(1, 3, 1, 1) * 2 - 1, rs.repeat(1, 3, 1, 1) * 2 - 1).mean())
        for k, v in values.items():
            out.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in out.items()}


# ---- the cached networks ----------------------------------------------------------------------------------
def _cached(path: Path, build, *, log) -> dict:
    """``torch.load(path)`` or ``build()`` saved there atomically, under a lock (one training across jobs)."""
    from filelock import FileLock

    from benchmark.train import save_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            log(f"  synthesis evaluation network reused from cache {path.name}")
            return torch.load(path, map_location="cpu", weights_only=True)
        state = build()
        save_atomic(state, path)
        return state


def build_evaluator(job, task, *, train: list, validation: list, hooks) -> Evaluator:
    """The segmenter (base task, real images) and the SwAV-VGG metric network of ``job``'s split, cached."""
    from benchmark.backbones import build_backbone
    from benchmark.perceptual.metric import _cnn_extractor
    from benchmark.profiles import get_profile
    from benchmark.store import content_hash

    cases = {c.case_id: c for c in task.find_cases(Path(job.data_root))}
    base_key = {"task": task.ref, "data": fingerprint([cases[i] for i in (*job.train_ids, *job.val_ids)]), "seed": job.seed,
                "train_ids": list(job.train_ids), "val_ids": list(job.val_ids), "volume_size": job.volume_size,
                "backbone_size": dataclasses.asdict(job.backbone_size), "version": 1}
    cache = Path(job.cache_dir) / "synthesis_eval"
    profile = get_profile(job.profile)

    # CoPer metric network: SwAV on vgg_unet, the target series of every non-test case (IV.B).
    from benchmark.methods import get_method

    swav = get_method("swav")
    recipe, roi = profile.pretrain_recipe(swav, "vgg_unet"), tuple(profile.rois["vgg_unet"])
    pool = target_series_volumes(task, [*train, *validation])
    steps = recipe.steps_for(sum(v.image.shape[-1] for v in pool))
    size = job.backbone_size
    key = content_hash({**base_key, "what": "coper_metric", "pretext": "swav", "config": dataclasses.asdict(swav.make_config()),
                        "recipe": dataclasses.asdict(recipe), "steps": steps, "roi": roi, "series": list(task.targets)})

    def train_metric() -> dict:
        from benchmark.train import pretrain

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.seed)
            net = build_backbone("vgg_unet", in_channels=1, out_channels=1, size=size, roi=roi)
            method = swav(net, swav.make_config(), in_channels=1).to(hooks.device)
            pretrain(method, pool, recipe=recipe, steps=steps, roi=roi, seed=job.seed, hooks=hooks, protocol=job.protocol)
        return {"backbone": {k: v.detach().cpu() for k, v in net.state_dict().items()}}

    metric_state = _cached(cache / f"coper-{key}.pt", train_metric, log=hooks.log)
    metric_net = build_backbone("vgg_unet", in_channels=1, out_channels=1, size=size, roi=roi)
    metric_net.load_state_dict(metric_state["backbone"])
    extractor = _cnn_extractor(metric_net, "vgg_unet", 1)

    segmenter = None
    if task.label_task is not None:
        segmenter = _segmenter(job, task.label_task, base_key=base_key, cache=cache, train=train, validation=validation, hooks=hooks)
    return Evaluator(metric_network=extractor, lpips_net=lpips_network(), segmenter=segmenter, segmenter_roi=tuple(profile.rois["unet2d"]))


def _segmenter(job, base_task, *, base_key: dict, cache: Path, train: list, validation: list, hooks) -> nn.Module:
    """A ``unet2d`` segmentation network of the base task trained on the real images of the split's training
    cases (all of them, every series), validation-selected: the same network for every method."""
    from benchmark.backbones import build_backbone
    from benchmark.store import content_hash
    from benchmark.train import ModelSelection, finetune

    from benchmark.profiles import get_profile

    profile = get_profile(job.profile)  # the profile's segmentation recipe of unet2d, as for any segmentation task
    recipe, roi = profile.finetune_recipes["unet2d"], tuple(profile.rois["unet2d"])
    steps = recipe.steps_for(job.finetune_samples)
    size, in_channels = job.backbone_size, len(base_task.channels)
    key = content_hash({**base_key, "what": "segmenter", "network": "unet2d", "recipe": dataclasses.asdict(recipe), "steps": steps, "roi": roi,
                        "protocol": dataclasses.asdict(job.protocol)})
    build = lambda: build_backbone("unet2d", in_channels=in_channels, out_channels=base_task.num_outputs, size=size, roi=roi)  # noqa: E731

    def train_segmenter() -> dict:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.seed)
            model = build().to(hooks.device)
            every = max(1, steps // job.protocol.validations_per_finetune)
            selection = ModelSelection(model, base_task, validation, every=every, roi=roi, hooks=hooks, protocol=job.protocol)
            finetune(model, base_task, train, recipe=recipe, steps=steps, roi=roi, seed=job.seed, hooks=hooks,
                     tag=f"segmenter {base_task.name} (real images)", protocol=job.protocol, selection=selection)
            selection.restore_best()
        return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}

    model = build()
    model.load_state_dict(_cached(cache / f"segmenter-{key}.pt", train_segmenter, log=hooks.log)["model"])
    return model.eval().requires_grad_(False)


@torch.no_grad()
def dice_on_synthetic(segmenter: nn.Module, base_task, image: np.ndarray, label: np.ndarray, synthetic: torch.Tensor, *,
                      target_index: tuple[int, ...], segmenter_roi, device: Any, protocol) -> dict[str, float]:
    """Dice of ``segmenter`` on the case ``image`` [C, X, Y, Z] with its target series replaced by ``synthetic``
    [n, X, Y, Z]: dice_synth_<region> and dice_synth_mean (the base task's regions, MONAI DiceMetric)."""
    mixed = torch.from_numpy(image).to(device).clone()
    mixed[list(target_index)] = synthetic.to(device)
    logits = predict_volume(segmenter.to(device), mixed, roi=segmenter_roi, protocol=protocol)
    truth = base_task.label_to_regions(torch.from_numpy(label).to(device)[None, None])
    return {f"dice_synth_{k[len('dice_'):]}": v for k, v in base_task.dice(base_task.logits_to_regions(logits), truth).items()}


def with_evaluator(model, evaluator: Evaluator) -> Any:
    model.__dict__["evaluator"] = evaluator
    return model

