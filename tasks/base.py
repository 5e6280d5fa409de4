"""What every downstream segmentation task provides: layout reader, normalisation, targets, metrics.

A task subclass only states its dataset: file layout (``find_cases``), channel and label
conventions, intensity normalisation, how labels map to evaluated regions, and how to
write its synthetic counterpart in the same layout. Loading, validation and Dice live here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from benchmark.registry import Registry
from tasks.nifti import load_nifti, nifti_shape

TASKS: Registry[type["SegmentationTask"]] = Registry("task")


def register_task(name: str):
    return TASKS.register(name)


def list_tasks() -> list[str]:
    return TASKS.names()


def get_task(name: str) -> "SegmentationTask":
    return TASKS.get(name)()


@dataclass(frozen=True)
class Case:
    """One patient: one NIfTI file per input channel (in ``SegmentationTask.channels`` order) and a label."""

    case_id: str
    images: tuple[Path, ...]
    label: Path


@dataclass
class Volume:
    """A loaded, normalised case. image: [C, X, Y, Z] float32 (RAS); label: [X, Y, Z] int64 raw values."""

    case_id: str
    image: np.ndarray
    label: np.ndarray


class SegmentationTask:
    registry_name: ClassVar[str]  # set by @register_task
    description: ClassVar[str]
    channels: ClassVar[tuple[str, ...]]
    label_values: ClassVar[tuple[int, ...]]  # every raw value a label file may contain (0 included)
    region_names: ClassVar[tuple[str, ...]]  # evaluated regions; one Dice metric each
    multilabel: ClassVar[bool]  # True: one sigmoid channel per (overlapping) region; False: softmax over classes
    synthetic_cases: ClassVar[int]
    synthetic_shape: ClassVar[tuple[int, int, int]]
    test_fraction: ClassVar[float] = 0.25
    split_seed: ClassVar[int] = 0  # the test cases are fixed per task, whatever the run's seeds

    # ---- dataset-specific parts -------------------------------------------------------------
    def find_cases(self, root: Path) -> list[Case]:
        raise NotImplementedError

    def normalize(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        """label [B, 1, *spatial] raw values -> bool [B, K, *spatial], one channel per region."""
        raise NotImplementedError

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        raise NotImplementedError

    # ---- shared machinery -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.registry_name

    @property
    def num_outputs(self) -> int:
        return len(self.region_names) if self.multilabel else len(self.label_values)

    def check_cases(self, cases: list[Case], *, root: Path) -> None:
        """Up-front check before any training: every file reads as NIfTI, image and label grids
        agree, intensities are finite, label values are ones the task defines."""
        if not cases:
            raise BenchmarkInputError(f"{root}: no {self.name} cases found; expected {self.layout_help()}")
        known = set(self.label_values)
        for case in cases:
            label_shape = nifti_shape(case.label)
            for path in case.images:
                shape = nifti_shape(path)
                if shape[:3] != label_shape[:3]:
                    raise BenchmarkInputError(
                        f"{case.label}: label shape {label_shape} differs from image {path} shape {shape}; "
                        "expected the same voxel grid"
                    )
            for path in case.images:
                self._check_finite(path, load_nifti(path)[0])
            label, _ = load_nifti(case.label, dtype=np.float32)
            unknown = sorted(set(np.unique(label).tolist()) - known)
            if unknown:
                raise BenchmarkInputError(
                    f"{case.label}: label values {unknown} are not defined by task {self.name!r}; "
                    f"expected only {sorted(known)}"
                )

    @staticmethod
    def _check_finite(path: Path, data: np.ndarray) -> None:
        if not np.isfinite(data).all():
            raise BenchmarkInputError(f"{path}: contains NaN or infinite intensities; expected finite values")

    def layout_help(self) -> str:
        return self.description

    def load(self, case: Case) -> Volume:
        channels = []
        for path in case.images:
            data, _ = load_nifti(path)
            self._check_finite(path, data)
            channels.append(data)
        label, _ = load_nifti(case.label, dtype=np.float32)
        image = self.normalize(np.stack(channels).astype(np.float32))
        return Volume(case_id=case.case_id, image=image, label=np.rint(label).astype(np.int64))

    def loss_target(self, label: torch.Tensor) -> torch.Tensor:
        """label [B, 1, *spatial] raw values -> dense float target [B, num_outputs, *spatial].

        Region channels for multi-label tasks, one-hot classes otherwise; dense so that
        fine-tuning augmentations such as mixup can blend targets like images.
        """
        if self.multilabel:
            return self.label_to_regions(label).float()
        index = self.label_to_index(label)[:, 0]  # [B, *spatial]
        return torch.nn.functional.one_hot(index, len(self.label_values)).movedim(-1, 1).float()

    def label_to_index(self, label: torch.Tensor) -> torch.Tensor:
        """Raw label values -> contiguous class indices (e.g. BraTS 4 -> 3)."""
        lut = torch.zeros(max(self.label_values) + 1, dtype=torch.long, device=label.device)
        lut[torch.tensor(self.label_values, device=label.device)] = torch.arange(len(self.label_values), device=label.device)
        return lut[label.long()]

    def make_loss(self) -> torch.nn.Module:
        """Dice + cross-entropy (MONAI). ``batch=True`` pools Dice over the batch, so crops or slices
        without a structure do not each contribute a Dice loss of ~1 (nnU-Net's batch Dice)."""
        from monai.losses import DiceCELoss

        if self.multilabel:
            return DiceCELoss(sigmoid=True, batch=True)
        return DiceCELoss(softmax=True, batch=True)  # targets are dense (soft) one-hot, see loss_target

    def logits_to_regions(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [B, num_outputs, *spatial] -> bool [B, K, *spatial] predicted regions."""
        if self.multilabel:
            return logits.sigmoid() > 0.5
        index = logits.argmax(dim=1, keepdim=True)
        values = torch.tensor(self.label_values, device=logits.device)[index]
        return self.label_to_regions(values)

    def dice(self, pred_regions: torch.Tensor, true_regions: torch.Tensor) -> dict[str, float]:
        """Per-region Dice of one case (MONAI DiceMetric) and their mean.

        ``ignore_empty=False``: a region absent from both prediction and truth scores 1, a
        region absent from the truth but predicted scores 0 (the BraTS challenge convention).
        """
        from monai.metrics import DiceMetric

        metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
        values = metric(y_pred=pred_regions.float(), y=true_regions.float())[0]  # [K]
        out = {f"dice_{name}": float(v) for name, v in zip(self.region_names, values)}
        out["dice_mean"] = float(values.mean())
        return out
