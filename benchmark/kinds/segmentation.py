"""Segmentation: a label map per case; dense targets, Dice + CE loss, sliding-window evaluation.

Targets are dense floats (region channels or one-hot classes, ``SegmentationTask.loss_target``)
so that mixup blends them like images; CarveMix pastes lesion regions with their labels. The
network is the backbone itself (its output layer has one channel per target). Evaluation runs
MONAI sliding-window inference over each whole test volume (2D networks slice by slice) and
records the task's per-case metrics (Dice, HD95 and the task's own, ``SegmentationTask.metrics``).
A case the paper's in-plane pre-processing resampled (HIE's 256 x 256 slices, ``Volume.native``) is
predicted on that grid and scored on its own: the probabilities are resampled back
(``benchmark.inference.to_grid``) and compared with the native label at the native spacing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from benchmark.augmentations import carvemix, mixup
from benchmark.data import CropDataset
from benchmark.inference import predict_volume, to_grid
from benchmark.kinds.base import TaskKind, register_kind, resolve_finetune_loss
from benchmark.records import EMPTY_PRED_PREFIX, FinetuneSettings, MetricInfo, MetricRow

if TYPE_CHECKING:
    from torch import nn

    from benchmark.protocol import Protocol
    from tasks.base import SegmentationTask, Volume

LOWER_IS_BETTER_PREFIXES = ("hd95", "masd")  # surface distances in mm


def higher_is_better(metric: str) -> bool:
    return not metric.startswith(LOWER_IS_BETTER_PREFIXES)


class SegmentationKind(TaskKind):
    name = "segmentation"
    finetune_augmentations = ("none", "mixup", "carvemix")
    test_time_augmentations = ("none", "flip")  # predict_volume's tta

    def describe(self, task: "SegmentationTask") -> str:
        return f"label values in {list(task.label_values)}"

    def metric_info(self, task: "SegmentationTask") -> list[MetricInfo]:
        names = [f"dice_{r}" for r in task.region_names] + ["dice_mean"]
        names += [f"hd95_{r}" for r in task.region_names] + ["hd95_mean"] + list(task.extra_metrics)
        return [MetricInfo(n, higher_is_better=higher_is_better(n), primary=n == "dice_mean") for n in dict.fromkeys(names)]

    def training_set(self, task, volumes, *, roi, length, seed, protocol: "Protocol", finetune: FinetuneSettings = FinetuneSettings()):
        augmentation = self.spatial_augmentation(task, finetune=finetune, spatial_dims=len(roi), protocol=protocol)
        return CropDataset(volumes, roi=roi, length=length, seed=seed, with_label=True, foreground_prob=protocol.finetune_foreground_prob,
                           foreground_sampling=protocol.finetune_foreground_sampling, augmentation=augmentation)

    def loss_fn(self, task: "SegmentationTask", model: "nn.Module", *, finetune: FinetuneSettings,
                generator: "torch.Generator") -> Callable[[dict], torch.Tensor]:
        if finetune.augmentation not in self.finetune_augmentations:
            raise ValueError(f"unknown fine-tuning augmentation {finetune.augmentation!r}; expected one of {self.finetune_augmentations}")
        loss_name = resolve_finetune_loss(finetune.loss, task)  # --finetune-loss: "default" is the task's make_loss()
        criterion = task.make_loss() if loss_name == "default" else task.make_loss(loss_name)

        def loss(batch: dict) -> torch.Tensor:
            image, label = batch["image"], batch["label"]
            if finetune.augmentation == "carvemix":
                image, label = carvemix(image, label, generator=generator)
            target = task.loss_target(label)
            if finetune.augmentation == "mixup":
                image, target = mixup(image, target, alpha=finetune.mixup_alpha or 0.0, generator=generator)
            return criterion(model(image), target)

        return loss

    def evaluate(self, model, task: "SegmentationTask", volumes: list["Volume"], *, roi, device: Any, protocol: "Protocol",
                 log, primary_only: bool = False, tta: str = "none") -> list[MetricRow]:
        rows = []
        for v in volumes:
            logits = predict_volume(model, torch.from_numpy(v.image).to(device), roi=roi, protocol=protocol, tta=tta,
                                    multilabel=task.multilabel)
            scored = v if v.native is None else v.native  # a resampled case is scored on its own grid, with its own spacing (``to_grid``)
            logits = to_grid(logits, scored.image.shape[1:], multilabel=task.multilabel)
            label = torch.from_numpy(np.asarray(scored.label, dtype=np.int64)).to(device)[None, None]  # a prepared map is stored small
            pred, true = task.logits_to_regions(logits), task.label_to_regions(label)
            metrics = (task.dice(pred, true) if primary_only
                       else task.metrics(pred, true, spacing=scored.spacing, image=scored.image, label=label))
            rows.extend(MetricRow(metric=name, value=value, case_id=v.case_id) for name, value in metrics.items())
        return rows

    # ---- the task contract ---------------------------------------------------------------------------
    def target_problem(self, task: "SegmentationTask", volume: "Volume") -> str | None:
        return label_map_problem(task, volume)

    def contract_metric_rows(self, task: "SegmentationTask", volumes: list["Volume"]) -> tuple[list[MetricRow], list[MetricRow]]:
        """Each case's metrics with its own label as the prediction; the empty-prediction flags are the prediction rows."""
        rows = []
        for v in volumes:
            label = torch.from_numpy(np.asarray(v.label, dtype=np.int64))[None, None]
            regions = task.label_to_regions(label)
            metrics = task.metrics(regions, regions, spacing=v.spacing, image=v.image, label=label)
            rows += [MetricRow(metric=name, value=value, case_id=v.case_id) for name, value in metrics.items()]
        flags = [r for r in rows if r.metric.startswith(EMPTY_PRED_PREFIX)]
        return [r for r in rows if not r.metric.startswith(EMPTY_PRED_PREFIX)], flags


def label_map_problem(task: "SegmentationTask", volume: "Volume") -> str | None:
    """Why ``volume`` lacks ``task``'s label map (int64, the image's grid, values among ``task.label_values``), or None."""
    label = volume.label
    if label is None:
        return f"{task.name}: case {volume.case_id} has no label map"
    if label.dtype != np.int64 or label.shape != volume.image.shape[1:]:
        return (f"{task.name}: case {volume.case_id}'s label map is {label.dtype} {tuple(label.shape)}; expected int64 of the image's "
                f"grid {tuple(volume.image.shape[1:])}")
    extra = sorted(set(np.unique(label).tolist()) - set(task.label_values))
    if extra:
        return f"{task.name}: case {volume.case_id} has label values {extra} outside {list(task.label_values)}"
    return None


SEGMENTATION = register_kind(SegmentationKind())
