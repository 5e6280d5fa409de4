"""Evaluation of synthetic images as CoPer Table III does it, the same for every method of a comparison.

The generator works in the pix2pix domain (``scaling``: each axial slice of each series mapped to [-1, 1] by its own
foreground range). Per test case, over its axial slices that hold foreground (Table III: "averaged across the 2D
slices"):

* ``psnr`` / ``ssim``: on the paper's 8-bit slices (IV.A.2: slices "rescale[d] to [0, 255]"; pix2pix saves its
  outputs as 8-bit images): the real and the synthetic slice mapped from [-1, 1] to the gray levels 0..255 and
  rounded (``Protocol.synthesis_quality`` = ``slice_8bit``; ``slice_float``: not rounded), PSNR = 10 log10(255² / MSE)
  per slice (data range 255; MSE floored at 1e-10, so an identical slice scores 148 dB, not infinity), SSIM with MONAI's
  ``SSIMMetric`` (Gaussian window 11, σ 1.5, K 0.01 / 0.03, Wang et al. 2004; data range 255) per slice, both averaged
  over the slices (``QUALITY_CONVENTION``). One slice's range decides its scale, as for the paper's images: the whole
  volume's range would score the same error 4-5 dB apart;
* ``coper``: the CoPer metric (III.B, weights one) with the paper's evaluation network, a SwAV-pretrained VGG-16
  (SwAV is the paper's choice for domain-specific representations, V.B) trained on the TARGET series of the split's
  non-test cases: its own seed and its own half of those cases, so it is never the network an ``l1+coper`` row trained
  against (``SynthesisKind.planned_networks``). It reads both images on the scale it was trained on: the z-scored
  slices (the synthetic one mapped back by the real slice's map, ``SliceScale.to_zscore``);
* ``lpips``: the LPIPS formula (Zhang et al. 2018) with the ``lpips`` package's own randomly initialised
  VGG-16 trunk and no calibrated linear layers (``pretrained=False, pnet_rand=True, lpips=False``: nothing is
  downloaded), seeded, on the [-1, 1] slices as LPIPS expects;
* ``dice_synth_<region>`` / ``dice_synth_mean`` (labelled base tasks only): the Dice of a segmentation network
  trained on REAL z-scored images (the base task's kind, all its series) applied to the case with its target series
  replaced by the synthetic one, mapped back to the z-scored scale (Table III's downstream Dice; the "upper bound" is
  that network on the real case: a perfect synthesis gives it exactly).

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
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.inference import predict_volume
from benchmark.perceptual.metric import FeatureExtractor, cnn_extractor, coper_distance
from benchmark.synthesis.scaling import SliceScale, to_levels

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
QUALITY_CONVENTION = ("per axial slice with foreground: real and synthetic slice in the paper's gray levels 0-255 (each slice's "
                      "foreground range; {scale}), PSNR with data range 255 and SSIM (Gaussian 11, sigma 1.5) per slice, "
                      "averaged over the slices")
MSE_FLOOR = 1e-10


def slice_quality(fake: torch.Tensor, real: torch.Tensor, *, data_range: float = 255.0) -> dict[str, float]:
    """PSNR and SSIM of slices [S, 1, H, W] already in [0, ``data_range``], per slice, averaged over the slices."""
    from monai.metrics import SSIMMetric

    mse = (fake - real).pow(2).flatten(1).mean(dim=1).clamp_min(MSE_FLOOR)  # [S]
    psnr = 10 * torch.log10(data_range ** 2 / mse)
    ssim = SSIMMetric(spatial_dims=2, data_range=data_range, reduction="none")(fake, real).flatten()
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
def quality_rows(fake: torch.Tensor, real: torch.Tensor, *, scale: SliceScale, targets: tuple[int, ...], evaluator: Evaluator | None,
                 primary_only: bool, quality_scale: str = "slice_8bit") -> dict[str, float]:
    """Every image-quality metric of one case (module docstring): ``fake``, ``real`` [n, X, Y, Z] in the pix2pix domain
    (n target series, the case's series ``targets``; averaged over them), ``scale`` the case's slice map."""
    idx = scale.slices()
    out: dict[str, list[float]] = {}
    as_slices = lambda v: v[..., idx].permute(2, 0, 1)[:, None]  # noqa: E731 - [X, Y, Z] -> [S, 1, X, Y]
    for j, channel in enumerate(targets):
        fs, rs = as_slices(fake[j]), as_slices(real[j])
        quality = slice_quality(to_levels(fs, quality_scale), to_levels(rs, quality_scale))
        values = {"psnr": quality["psnr"]} if primary_only else quality
        if not primary_only and evaluator is not None:
            zf, zr = (as_slices(scale.to_zscore(v[j][None], channels=(channel,))[0]) for v in (fake, real))
            values["coper"] = float(coper_distance(zf, zr, evaluator.metric_network.to(fs.device)).mean())
            lp = evaluator.lpips_net.to(fs.device)
            values["lpips"] = float(lp(fs.repeat(1, 3, 1, 1), rs.repeat(1, 3, 1, 1)).mean())
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
def dice_on_synthetic(segmenter: nn.Module, base_task, image: torch.Tensor, label: np.ndarray, synthetic: torch.Tensor, *,
                      target_index: tuple[int, ...], segmenter_roi, device: Any, protocol) -> dict[str, float]:
    """Dice of ``segmenter`` on the z-scored case ``image`` [C, X, Y, Z] with its target series replaced by ``synthetic``
    [n, X, Y, Z] (on the same z-scored scale): dice_synth_<region> and dice_synth_mean (the base task's regions, MONAI DiceMetric)."""
    mixed = torch.as_tensor(image).to(device).clone()
    mixed[list(target_index)] = synthetic.to(device)
    logits = predict_volume(segmenter.to(device), mixed, roi=segmenter_roi, protocol=protocol)
    truth = base_task.label_to_regions(torch.from_numpy(np.asarray(label, dtype=np.int64)).to(device)[None, None])
    return {f"dice_synth_{k[len('dice_'):]}": v for k, v in base_task.dice(base_task.logits_to_regions(logits), truth).items()}


@torch.no_grad()
def synthesize(model: nn.Module, sources: torch.Tensor, *, roi, protocol) -> torch.Tensor:
    """The generator on every axial slice of ``sources`` [m, X, Y, Z] (pix2pix domain) -> [n, X, Y, Z]: MONAI's sliding
    window over the slices, which are first padded to the crop with background (-1, not the window's 0: mid-gray here)."""
    pad = [max(0, r - s) for r, s in zip(roi, sources.shape[1:3])]
    padded = F.pad(sources, (0, 0, 0, pad[1], 0, pad[0]), value=-1.0) if any(pad) else sources
    out = predict_volume(model, padded, roi=roi, protocol=protocol)[0]  # [n, X', Y', Z]
    return out[:, : sources.shape[1], : sources.shape[2]]


def with_evaluator(model, evaluator: Evaluator) -> Any:
    model.__dict__["evaluator"] = evaluator
    return model

