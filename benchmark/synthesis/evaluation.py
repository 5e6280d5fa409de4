"""Evaluation of synthetic images as CoPer Table III does it, the same for every method of a comparison.

Per test case, over its axial slices that hold foreground (the real target is non-zero there; Table III
"averaged across the 2D slices"):

* ``psnr`` / ``ssim``: MONAI ``PSNRMetric`` / ``SSIMMetric`` (Gaussian window 11, σ 1.5, Wang et al. 2004) on
  the images rescaled by the REAL target's intensity range of the case ([min, max] -> [0, 1]; data range 1);
* ``coper``: the CoPer metric (III.B, weights one) with the paper's evaluation network: a SwAV-pretrained VGG
  (SwAV is the paper's choice for domain-specific representations, V.B) trained on the TARGET series of the
  split's non-test cases, like the default ``l1+coper`` loss network (trained separately here, so that a run
  without that method still has it);
* ``lpips``: the LPIPS formula (Zhang et al. 2018) with the ``lpips`` package's own randomly initialised
  VGG-16 trunk and no calibrated linear layers (``pretrained=False, pnet_rand=True, lpips=False``: nothing is
  downloaded), seeded, inputs scaled to [-1, 1] as LPIPS expects;
* ``dice_synth_<region>`` / ``dice_synth_mean`` (labelled base tasks only): the Dice of a segmentation network
  trained on REAL images (the base task's kind, all its series) applied to the case with its target series
  replaced by the synthetic one (Table III's downstream Dice; the "upper bound" is that network on the real case).

The segmentation and CoPer networks are planned with each Job (``SynthesisKind.planned_networks``: keyed by content
hash, cached in ``<cache>/synthesis_eval/``), trained by the loops before the cells like a pretraining
(``benchmark.train.run_job``: once across concurrent Jobs, DDP-safe, their time counted as pretraining, nothing
reported into a search trial's metric stream), and only loaded here, so every method of a comparison is scored by
the same networks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.inference import predict_volume
from benchmark.perceptual.metric import FeatureExtractor, cnn_extractor, coper_distance

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


# ---- the evaluation networks (planned with the Job, trained by the loops; only loaded here) -----------------------
def load_evaluator(specs: dict, states: dict[str, dict], *, size, segmenter_task=None) -> Evaluator:
    """The Evaluator from the Job's trained networks: ``specs`` (role -> ``benchmark.job.NetworkSpec``) and ``states``
    (role -> what ``benchmark.train`` saved: {"backbone": ...} for the CoPer network, {"model": ...} for the segmenter)."""
    metric = specs["coper_metric"]
    metric_net = build_backbone(metric.backbone, in_channels=metric.channels[0], out_channels=metric.channels[1], size=size, roi=metric.roi)
    metric_net.load_state_dict(states["coper_metric"]["backbone"])
    extractor = cnn_extractor(metric_net, metric.backbone, metric.channels[0])
    segmenter, segmenter_roi = None, ()
    if segmenter_task is not None and "segmenter" in specs:
        spec = specs["segmenter"]
        segmenter = build_backbone(spec.backbone, in_channels=spec.channels[0], out_channels=spec.channels[1], size=size, roi=spec.roi)
        segmenter.load_state_dict(states["segmenter"]["model"])
        segmenter, segmenter_roi = segmenter.eval().requires_grad_(False), tuple(spec.roi)
    return Evaluator(metric_network=extractor, lpips_net=lpips_network(), segmenter=segmenter, segmenter_roi=segmenter_roi)


@torch.no_grad()
def dice_on_synthetic(segmenter: nn.Module, base_task, image: np.ndarray, label: np.ndarray, synthetic: torch.Tensor, *,
                      target_index: tuple[int, ...], segmenter_roi, device: Any, protocol) -> dict[str, float]:
    """Dice of ``segmenter`` on the case ``image`` [C, X, Y, Z] with its target series replaced by ``synthetic``
    [n, X, Y, Z]: dice_synth_<region> and dice_synth_mean (the base task's regions, MONAI DiceMetric)."""
    mixed = torch.from_numpy(image).to(device).clone()
    mixed[list(target_index)] = synthetic.to(device)
    logits = predict_volume(segmenter.to(device), mixed, roi=segmenter_roi, protocol=protocol)
    truth = base_task.label_to_regions(torch.from_numpy(np.asarray(label, dtype=np.int64)).to(device)[None, None])
    return {f"dice_synth_{k[len('dice_'):]}": v for k, v in base_task.dice(base_task.logits_to_regions(logits), truth).items()}


def with_evaluator(model, evaluator: Evaluator) -> Any:
    model.__dict__["evaluator"] = evaluator
    return model

