"""The papers' fine-tuning augmentation: one named policy per paper, MONAI dictionary transforms.

A policy is applied to every fine-tuning sample (a 3D crop [C, X, Y, Z], a 2D slice [C, X, Y] for
slice-wise networks, or a whole classification volume) with image and label transformed together:
the same geometric draw for both, linear interpolation for the image and nearest for the label (so
a label keeps its value set), intensity transforms on the image only. Every method of a comparison
and its scratch baseline get the same policy AND the same draws: ``SpatialAugmentation.__call__``
seeds the transforms from the sample's own seed (``set_random_state``), never from global state,
and the datasets derive that seed from (run seed, sample index) only (``benchmark.data.CropDataset``).

The papers name the transforms, not always their ranges; where a number is not in the paper it is
taken from the code the paper follows, and the comment says which:

* ``si``   -- SI paper 5.5.3: "Random rotation, scaling, flipping, and elastic deformation ... following
  the nnUNet paper". No ranges are given, so nnU-Net's (v1) defaults: mirroring p=0.5 per axis;
  rotation p=0.2, ±180° in-plane for 2D images (the paper's case), ±15° about each axis in 3D; one
  isotropic scale factor in [0.85, 1.25], p=0.2; elastic deformation p=0.2 with nnU-Net's smoothed
  uniform-noise field (σ 9-13 voxels, α 0-900 in 3D = MONAI ``Rand3DElasticd``'s own parameterisation).
  For 2D slices MONAI's ``Rand2DElasticd`` uses a control-point field instead; its spacing (30 px) and
  magnitude (0-3 px) are set so that the displacement matches nnU-Net's 2D field (α 0-200, σ 9-13:
  a displacement std of α·0.577/(2√π·σ) ≤ 3.6 px, correlated over ~2√2·σ ≈ 30 px).
* ``ladp`` -- LADP II.D: "images are randomly flipped horizontally and vertically" (the in-plane axes
  X and Y; never Z); the paper gives no probability: 0.5 per axis, the usual random flip. Its
  Table 2 credits this augmentation with the largest gain (+3.3 Dice on lesions < 1 %).
* ``csm``  -- CSM IV.A: "we randomly flip and crop" (the crop is the dataset's): a flip along each
  spatial axis with p=0.5, as the case-level classification datasets always flipped.
* ``dae``  -- DAE 3.2 (BTCV and FeTA fine-tuning): "gaussian noise, contrast scaling, zoom and random
  flipping across the axis" / "random flipping on all 3 axes, Gaussian noise". The authors' fine-tuning
  code (Project-MONAI/research-contributions, DAE/BTCV_Finetune/utils/data_utils.py with the defaults of
  its main.py, the Swin-UNETR BTCV recipe of SwinUNETR/BTCV it is copied from) flips each axis with p=0.2
  (``RandFlipd``), rotates by k·90° in the X-Y plane, k in {1, 2, 3}, with p=0.2 (``RandRotate90d``,
  max_k=3), scales intensities by 1+U(-0.1, 0.1) with p=0.1 (``RandScaleIntensityd``) and shifts them by
  U(-0.1, 0.1) with p=0.1 (``RandShiftIntensityd``, offsets 0.1): those are used, in that order. Its code
  has no noise or zoom, which the paper's text names: MONAI's defaults for them (Gaussian noise std 0.1,
  p=0.1; zoom 0.9-1.1, p=0.1), after the flips and the rotation. The 90° rotation swaps X and Y, so the
  samples must be square in-plane (every profile's crops are).
* ``none`` -- no augmentation: samples are exactly the crops (bit-identical to a dataset without it).

Rotation, scaling and elastic deformation resample the crop itself and fill what comes from outside
it with zeros (image and label background), where nnU-Net augments a larger patch and crops after:
cheaper, at the cost of empty corners in rotated crops.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.errors import BenchmarkInputError

if TYPE_CHECKING:
    from tasks.base import Task

POLICIES = ("none", "si", "ladp", "csm", "dae")
CHOICES = ("auto", *POLICIES)  # auto: the policy of the paper the task comes from (``Task.spatial_aug``)
ELASTIC_POLICIES = ("si",)  # the policies with an elastic part (``elastic=False`` leaves it out)
SQUARE_POLICIES = ("dae",)  # the policies that rotate by 90° in the X-Y plane (samples must have X == Y)
KEYS = ("image", "label")


def resolve_policy(name: str, task: "Task") -> str:
    """The policy ``name`` stands for on ``task``: ``auto`` -> the task's paper policy (``task.spatial_aug``)."""
    if name not in CHOICES:
        raise BenchmarkInputError(f"--spatial-aug {name!r}: expected one of {', '.join(CHOICES)}")
    policy = getattr(task, "spatial_aug", "none") if name == "auto" else name
    if policy not in POLICIES:
        raise BenchmarkInputError(f"task {task.name!r}: spatial_aug = {policy!r}; expected one of {', '.join(POLICIES)}")
    return policy


def _flips(axes: range | tuple[int, ...], prob: float) -> list:
    from monai.transforms import RandFlipd

    return [RandFlipd(keys=KEYS, prob=prob, spatial_axis=axis, allow_missing_keys=True) for axis in axes]


def _modes(spatial_dims: int) -> tuple[str, str]:
    """Image and label modes of a zoom (torch ``interpolate``): torch's plain "nearest" samples half a voxel off the
    linear modes' grid, so the label would drift from its image; "nearest-exact" shares their grid."""
    return ("bilinear" if spatial_dims == 2 else "trilinear", "nearest-exact")


def policy_transforms(policy: str, *, spatial_dims: int, elastic: bool = True) -> list:
    """The MONAI dictionary transforms of ``policy`` for [C, *spatial] samples of ``spatial_dims`` (2 or 3), in order.
    ``elastic=False`` leaves out the elastic deformation (and only it)."""
    from monai.transforms import (Rand2DElasticd, Rand3DElasticd, RandGaussianNoised, RandRotate90d, RandRotated,
                                  RandScaleIntensityd, RandShiftIntensityd, RandZoomd)

    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial augmentation of {spatial_dims}D samples; expected 2D slices or 3D crops")
    if policy not in POLICIES:
        raise BenchmarkInputError(f"spatial augmentation policy {policy!r}; expected one of {', '.join(POLICIES)}")
    axes = range(spatial_dims)
    if policy == "none":
        return []
    if policy == "ladp":
        return _flips((0, 1), 0.5)  # in-plane only: "horizontally and vertically"
    if policy == "csm":
        return _flips(axes, 0.5)
    if policy == "dae":
        return [
            *_flips(axes, 0.2),
            RandRotate90d(keys=KEYS, prob=0.2, max_k=3, spatial_axes=(0, 1), allow_missing_keys=True),  # in-plane, lossless
            RandZoomd(keys=KEYS, prob=0.1, min_zoom=0.9, max_zoom=1.1, mode=_modes(spatial_dims), padding_mode="constant",
                      keep_size=True, allow_missing_keys=True),
            RandGaussianNoised(keys="image", prob=0.1, mean=0.0, std=0.1),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.1),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.1),
        ]
    # si: nnU-Net v1 defaults (module docstring). Geometric transforms first, mirroring last, as nnU-Net.
    degrees = math.pi if spatial_dims == 2 else math.radians(15)
    rotation = {"range_x": degrees} if spatial_dims == 2 else {"range_x": degrees, "range_y": degrees, "range_z": degrees}
    out = [
        RandRotated(keys=KEYS, prob=0.2, mode=("bilinear", "nearest"), padding_mode="zeros", keep_size=True, allow_missing_keys=True,
                    **rotation),
        # one isotropic factor (a scalar min/max zoom draws one value for every axis), as nnU-Net
        RandZoomd(keys=KEYS, prob=0.2, min_zoom=0.85, max_zoom=1.25, mode=_modes(spatial_dims), padding_mode="constant",
                  keep_size=True, allow_missing_keys=True),
    ]
    if elastic:
        if spatial_dims == 3:
            out.append(Rand3DElasticd(keys=KEYS, sigma_range=(9.0, 13.0), magnitude_range=(0.0, 900.0), prob=0.2,
                                      mode=("bilinear", "nearest"), padding_mode="zeros", allow_missing_keys=True))
        else:
            out.append(Rand2DElasticd(keys=KEYS, spacing=(30, 30), magnitude_range=(0.0, 3.0), prob=0.2,
                                      mode=("bilinear", "nearest"), padding_mode="zeros", allow_missing_keys=True))
    return out + _flips(axes, 0.5)


class SpatialAugmentation:
    """``policy`` as a callable on one sample: (image [C, *spatial], label [1, *spatial] or None, seed) -> the same,
    augmented. The draws depend on ``seed`` only; the outputs are numpy arrays of the inputs' dtypes.

    ``one_stream``: every transform draws, in order, from ONE ``RandomState(seed)``, instead of MONAI's
    ``Compose.set_random_state(seed)``, which seeds a new ``RandomState`` per transform (and per inner transform:
    about half the cost of a flip-only policy, ~1 ms of ~2.5 ms per 2D ``si`` sample on a CPU). Pretraining
    augmentation (new) draws this way; fine-tuning keeps the per-transform seeds its numbers were drawn with."""

    def __init__(self, policy: str, *, spatial_dims: int, elastic: bool = True, one_stream: bool = False):
        from monai.transforms import Compose

        self.policy, self.spatial_dims, self.elastic, self.one_stream = policy, spatial_dims, elastic, one_stream
        self.transforms = policy_transforms(policy, spatial_dims=spatial_dims, elastic=elastic)
        self.compose = Compose(self.transforms, map_items=False) if self.transforms else None

    @property
    def active(self) -> bool:
        return self.compose is not None

    def __call__(self, image: np.ndarray, label: np.ndarray | None, *, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.compose is None:
            return image, label
        if image.ndim != self.spatial_dims + 1:
            raise ValueError(f"{self.policy} augmentation for {self.spatial_dims}D samples got an image of shape {image.shape}; "
                             f"expected [C, {', '.join('XYZ'[:self.spatial_dims])}]")
        if self.policy in SQUARE_POLICIES and image.shape[1] != image.shape[2]:
            raise ValueError(f"{self.policy} augmentation rotates by 90° in the X-Y plane, which needs square samples; got "
                             f"{image.shape[1]} x {image.shape[2]} (a crop size with equal X and Y)")
        import torch
        from monai.data import MetaTensor, get_track_meta, set_track_meta

        if self.one_stream:
            state = np.random.RandomState(seed)
            for transform in self.transforms:  # each passes the state on to its inner array transform
                transform.set_random_state(state=state)
        else:
            self.compose.set_random_state(seed=seed)
        data: dict[str, Any] = {"image": torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)}
        if label is not None:
            data["label"] = torch.as_tensor(np.ascontiguousarray(label), dtype=torch.float32)
        # No MetaTensor bookkeeping (affines, inverse stacks): nothing is inverted, and it doubles the cost of a flip.
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            out = self.compose(data)
        finally:
            set_track_meta(tracking)
        plain = lambda x: (x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)).numpy()  # noqa: E731
        new_image = plain(out["image"]).astype(image.dtype, copy=False)
        # Nearest interpolation keeps label values; the round guards the float -> int cast.
        new_label = None if label is None else np.rint(plain(out["label"])).astype(label.dtype, copy=False)
        return new_image, new_label


def sample_seed(rng: np.random.Generator) -> int:
    """The augmentation seed of one sample, drawn from the sample's own generator (after its other draws)."""
    return int(rng.integers(2**31 - 1))
