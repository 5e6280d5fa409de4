"""Segmentation: a label map per case; dense targets, Dice + CE loss, sliding-window evaluation.

Targets are dense floats (region channels or one-hot classes, ``SegmentationTask.loss_target``)
so that mixup blends them like images; CarveMix pastes lesion regions with their labels. The
network is the backbone itself (its output layer has one channel per target). Evaluation runs
MONAI sliding-window inference over each whole test volume (2D networks slice by slice) and
records the task's per-case metrics (Dice, HD95 and the task's own, ``SegmentationTask.metrics``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from tasks.kinds.base import FinetuneSettings, MetricInfo, MetricRow, TaskKind, resolve_finetune_loss

if TYPE_CHECKING:
    import torch
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
        from benchmark.data import CropDataset

        augmentation = self.spatial_augmentation(task, finetune=finetune, spatial_dims=len(roi), protocol=protocol)
        return CropDataset(volumes, roi=roi, length=length, seed=seed, with_label=True, foreground_prob=protocol.finetune_foreground_prob,
                           augmentation=augmentation)

    def loss_fn(self, task: "SegmentationTask", model: "nn.Module", *, finetune: FinetuneSettings,
                generator: "torch.Generator") -> Callable[[dict], "torch.Tensor"]:
        from benchmark.augmentations import carvemix, mixup

        if finetune.augmentation not in self.finetune_augmentations:
            raise ValueError(f"unknown fine-tuning augmentation {finetune.augmentation!r}; expected one of {self.finetune_augmentations}")
        loss_name = resolve_finetune_loss(finetune.loss, task)  # --finetune-loss: "default" is the task's make_loss()
        criterion = task.make_loss() if loss_name == "default" else task.make_loss(loss_name)

        def loss(batch: dict) -> "torch.Tensor":
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
        import torch

        rows = []
        for v in volumes:
            logits = predict_volume(model, torch.from_numpy(v.image).to(device), roi=roi, protocol=protocol, tta=tta,
                                    multilabel=task.multilabel)
            label = torch.from_numpy(v.label).to(device)[None, None]
            pred, true = task.logits_to_regions(logits), task.label_to_regions(label)
            metrics = task.dice(pred, true) if primary_only else task.metrics(pred, true, spacing=v.spacing, image=v.image, label=label)
            rows.extend(MetricRow(metric=name, value=value, case_id=v.case_id) for name, value in metrics.items())
        return rows


# Flip test-time augmentation (LADP II.D): "the various flip transforms seen during training", i.e. the
# horizontal and vertical flips of the axial slices: X, Y and both (spatial axes of [C, X, Y, Z]; never Z).
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (0, 1))


def predict_volume(model: "nn.Module", image: "torch.Tensor", *, roi, protocol: "Protocol", tta: str = "none",
                   multilabel: bool = False) -> "torch.Tensor":
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
    import torch

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


def _predict(model: "nn.Module", image: "torch.Tensor", *, roi, protocol: "Protocol") -> "torch.Tensor":
    import torch
    from monai.inferers import sliding_window_inference

    model.eval()
    with torch.no_grad():
        if len(roi) == 3:
            return sliding_window_inference(image[None], roi_size=roi, sw_batch_size=protocol.sliding_window_batch_3d, predictor=model,
                                            overlap=protocol.sliding_window_overlap)
        slices = image.permute(3, 0, 1, 2)  # [Z, C, X, Y]
        logits = sliding_window_inference(slices, roi_size=roi, sw_batch_size=protocol.sliding_window_batch_2d, predictor=model,
                                          overlap=protocol.sliding_window_overlap)
        return logits.permute(1, 2, 3, 0)[None]


SEGMENTATION = SegmentationKind()
