"""Whole-volume prediction: MONAI sliding-window inference (2D networks slice by slice) and test-time augmentation.

Every kind that predicts images (segmentation logits, synthetic series) and the synthesis evaluation's
segmenter call ``predict_volume``; model selection calls it without test-time augmentation, the test
evaluation with the Job's (``FinetuneSettings.tta``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import nn

    from benchmark.protocol import Protocol

# Flip test-time augmentation (LADP II.D): "the various flip transforms seen during training", i.e. the
# horizontal and vertical flips of the axial slices: X, Y and both (spatial axes of [C, X, Y, Z]; never Z).
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (0, 1))


def predict_volume(model: "nn.Module", image: torch.Tensor, *, roi, protocol: "Protocol", tta: str = "none",
                   multilabel: bool = False) -> torch.Tensor:
    """Logits for a whole volume image [C, X, Y, Z] -> [1, K, X, Y, Z] by MONAI sliding-window inference.

    A 2D ``roi`` means a slice-wise network: the axial slices become the batch of a 2D sliding window.

    ``tta="flip"`` (LADP II.D: "we aggregate the model outputs created by first applying the various flip
    transforms seen during training. We then average the outputs"): the image is flipped by each of
    ``TTA_FLIPS``, predicted, flipped back, and the probabilities (sigmoid if ``multilabel``, else softmax
    over the K outputs) are averaged; returned as logits of that mean (logit / log), so thresholding or
    argmax reads the mean probability. Probabilities, not logits, are averaged as in the authors' code
    (github.com/Ninalgad/LADP, docker/process.py ``aug_predict``, which averages sigmoid outputs); the
    paper's "outputs" does not say which.
    """
    if tta == "none":
        return _predict(model, image, roi=roi, protocol=protocol)
    if tta != "flip":
        raise ValueError(f"unknown test-time augmentation {tta!r}; expected none or flip")
    total = 0.0
    for axes in TTA_FLIPS:
        flipped = image.flip([1 + a for a in axes]) if axes else image  # [C, X, Y, Z]
        logits = _predict(model, flipped, roi=roi, protocol=protocol)  # [1, K, X, Y, Z]
        logits = logits.flip([2 + a for a in axes]) if axes else logits
        total = total + (logits.sigmoid() if multilabel else logits.softmax(dim=1))
    mean = total / len(TTA_FLIPS)
    return torch.logit(mean, eps=1e-7) if multilabel else mean.clamp_min(1e-12).log()


def to_grid(logits: torch.Tensor, shape, *, multilabel: bool = False) -> torch.Tensor:
    """Logits [1, K, X, Y, Z] of a case resampled in-plane -> logits [1, K, *shape] on the case's own grid
    (``Volume.native``), where its metrics are computed (the challenge scores the native grid, with native spacing).

    The probabilities are resampled (sigmoid if ``multilabel``, else softmax over K), not the predicted label map,
    and returned as the logits of the resampled probabilities (logit / log, as ``predict_volume``'s TTA mean), so
    thresholding or argmax reads them. Each axial slice is resampled by torch's anti-aliased bilinear interpolation
    (``antialias=True``: a triangle filter as wide as the factor, its weights normalised, as PIL resamples): where the
    case was upscaled (HIE: native slices -> 256 x 256), every upscaled voxel that a native voxel covers votes for it,
    weighted by its distance to the native voxel's centre, and the K probabilities of a voxel still sum to one.
    Nearest-neighbour resampling of the label map would keep ONE upscaled voxel per native voxel and discard the rest
    (15 of 16 in-plane at 256 / 64). A prediction equal to the upscaled label comes back as the native label
    (``benchmark.volumes._resize`` upscales labels centre-aligned; tests/test_hie_native_grid.py). The LADP authors'
    challenge submission resamples probabilities too (github.com/Ninalgad/LADP, docker/process.py: sigmoid outputs
    zoomed back to the native shape, then thresholded). A grid that also differs along Z (not produced by the
    in-plane pre-processing) is interpolated trilinearly."""
    import torch.nn.functional as F

    current, target = tuple(logits.shape[2:]), tuple(int(s) for s in shape)
    if current == target:
        return logits
    probabilities = (logits.sigmoid() if multilabel else logits.softmax(dim=1)).float()
    if len(target) == 3 and target[2] == current[2]:  # in-plane: slice by slice, [Z, K, X, Y]
        slices = F.interpolate(probabilities[0].permute(3, 0, 1, 2), size=target[:2], mode="bilinear", align_corners=False, antialias=True)
        resampled = slices.permute(1, 2, 3, 0)[None]  # [1, K, *shape]
    else:
        resampled = F.interpolate(probabilities, size=target, mode="trilinear" if len(target) == 3 else "bilinear", align_corners=False)
    resampled = resampled.clamp(0.0, 1.0)  # the filter has non-negative weights summing to one: only rounding leaves [0, 1]
    return torch.logit(resampled, eps=1e-7) if multilabel else resampled.clamp_min(1e-12).log()


def _predict(model: "nn.Module", image: torch.Tensor, *, roi, protocol: "Protocol") -> torch.Tensor:
    from monai.inferers import sliding_window_inference  # deferred: monai.inferers loads monai.data/transforms (~0.3 GB)

    model.eval()
    with torch.no_grad():
        if len(roi) == 3:
            return sliding_window_inference(image[None], roi_size=roi, sw_batch_size=protocol.sliding_window_batch_3d, predictor=model,
                                            overlap=protocol.sliding_window_overlap)
        slices = image.permute(3, 0, 1, 2)  # [Z, C, X, Y]
        logits = sliding_window_inference(slices, roi_size=roi, sw_batch_size=protocol.sliding_window_batch_2d, predictor=model,
                                          overlap=protocol.sliding_window_overlap)
        return logits.permute(1, 2, 3, 0)[None]
