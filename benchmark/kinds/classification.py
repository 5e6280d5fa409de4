"""Case-level classification: one class per case (CSM paper, section IV: breast and prostate MRI).

The fine-tuned network is ``ClassifierNet``: the (pretrained or scratch) backbone's bottleneck
(the Backbone interface, ``benchmark/backbones/base.py``) -> global average pool -> Linear. The
backbone comes from ``transfer_model`` exactly as for segmentation, so every method's transfer rules
(encoder only, whole network, new input layer) apply unchanged; the segmentation decoder is unused. It sees whole volumes resized to the crop size (the
ViT's position embeddings are for that grid) with random flips, cross-entropy on the case's class.
Evaluation writes per test case the class probabilities, ``correct`` and ``target``, and per test
SET the AUC and accuracy (set-level rows: ``MetricRow.case_id`` None). Splits are stratified by
class so every test set holds every class (AUC defined).
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from benchmark.errors import BenchmarkInputError
from benchmark.kinds.base import TaskKind, register_kind
from benchmark.records import FinetuneSettings, MetricInfo, MetricRow
from benchmark.spatial_augmentation import sample_seed

if TYPE_CHECKING:
    from benchmark.protocol import Protocol
    from tasks.base import Case, Volume
    from tasks.classification import ClassificationTask


class ClassificationKind(TaskKind):
    name = "classification"
    ddp_options = {"find_unused_parameters": True}  # the backbone's segmentation decoder gets no gradient

    def unsupported_reason(self, task, *, method_cls, backbone: str, spatial_dims: int, finetune: FinetuneSettings) -> str | None:
        """A 2D (slice-wise) network has no features of a whole case; a label-aware pretraining reads
        segmentation labels, which a classification task does not have; mixup / CarveMix blend dense label maps."""
        if spatial_dims != 3:
            return (f"task {task.name!r} classifies whole volumes (one class per case); backbone {backbone!r} is a 2D (slice-wise) network; "
                    "expected a volumetric backbone (vit, swin_unetr)")
        if method_cls.label_aware:
            return f"{method_cls.registry_name} pretrains on segmentation labels; task {task.name!r} has one class per case, no label maps"
        if finetune.augmentation != "none":
            return f"--finetune-aug {finetune.augmentation} blends dense label maps; task {task.name!r} has one class per case"
        return None

    def strata(self, cases: list["Case"]) -> dict[str, int]:
        return {c.case_id: c.target for c in cases}

    def describe(self, task: "ClassificationTask") -> str:
        return f"classes {list(task.class_names)}"

    def metric_info(self, task: "ClassificationTask") -> list[MetricInfo]:
        # The per-case rows (prob_positive / prob_<k>, correct, target) are the predictions the set metrics are
        # computed from (kept for re-analysis, e.g. DeLong tests); they are not leaderboard metrics.
        return [MetricInfo("auc", primary=True, scope="set"), MetricInfo("accuracy", scope="set")]

    def validation_score(self, task, rows: list[MetricRow]) -> float:
        """AUC on the validation cases; their accuracy when the AUC is undefined (one class only: small sets)."""
        values = {r.metric: r.value for r in rows if r.case_id is None}
        auc = values.get("auc", float("nan"))
        return auc if not math.isnan(auc) else values.get("accuracy", float("nan"))

    def prepare(self, volumes, *, roi):
        return fit_to_roi(volumes, roi)

    def build_model(self, network, *, task, backbone_name: str):
        return ClassifierNet(network, backbone_name=backbone_name, num_classes=task.num_outputs)

    def training_set(self, task, volumes, *, roi, length, seed, protocol, finetune: FinetuneSettings = FinetuneSettings()):
        augmentation = self.spatial_augmentation(task, finetune=finetune, spatial_dims=len(roi), protocol=protocol)
        return VolumeClassDataset(volumes, length=length, seed=seed, augmentation=augmentation)

    def loss_fn(self, task, model, *, finetune, generator):
        criterion = torch.nn.CrossEntropyLoss()
        return lambda batch: criterion(model(batch["image"]), batch["target"])

    def evaluate(self, model, task: "ClassificationTask", volumes: list["Volume"], *, roi, device: Any, protocol: "Protocol", log,
                 primary_only: bool = False) -> list[MetricRow]:
        """Per test case (prob_positive, correct, target) and per test set (auc, accuracy). A test set of
        one class has no AUC: NaN, and a log line says so."""
        model.eval()
        with torch.no_grad():
            probs = [torch.softmax(model(torch.from_numpy(v.image)[None].to(device)), dim=1)[0].cpu().numpy() for v in volumes]  # [K] each
        targets = [int(v.target) for v in volumes]
        rows = [MetricRow(metric=name, value=value, case_id=v.case_id)
                for v, p, t in zip(volumes, probs, targets) for name, value in task.case_metrics(p, t).items()]
        summary = task.set_metrics(np.stack(probs), np.asarray(targets))
        if math.isnan(summary["auc"]):
            present = sorted({task.class_names[t] for t in targets})
            log(f"  AUC undefined on {task.name}: the {len(volumes)} test case(s) hold the classes {present} only (every class is needed); written as NaN")
        rows.extend(MetricRow(metric=name, value=value) for name, value in summary.items())
        return rows

    # ---- the task contract ---------------------------------------------------------------------------
    def target_problem(self, task: "ClassificationTask", volume: "Volume") -> str | None:
        if volume.label is not None:
            return f"{task.name}: case {volume.case_id} has a label map; a classification case has one class, no map"
        if volume.target is None or not 0 <= int(volume.target) < task.num_outputs:
            return f"{task.name}: case {volume.case_id} has class {volume.target!r}; expected an index in [0, {task.num_outputs})"
        return None

    def contract_metric_rows(self, task: "ClassificationTask", volumes: list["Volume"]) -> tuple[list[MetricRow], list[MetricRow]]:
        """The set metrics of one-hot probabilities of every case's own class; the per-case rows are predictions."""
        targets = np.array([int(v.target) for v in volumes])
        probs = np.eye(task.num_outputs)[targets]  # [N, K]
        cases = [MetricRow(metric=name, value=value, case_id=v.case_id)
                 for v, p, t in zip(volumes, probs, targets) for name, value in task.case_metrics(p, int(t)).items()]
        return [MetricRow(metric=name, value=value) for name, value in task.set_metrics(probs, targets).items()], cases


class ClassifierNet(nn.Module):
    """backbone bottleneck (``Backbone.bottleneck``) -> global average pool -> Linear(num_classes):
    image [B, C, *roi] -> logits [B, K]. Any volumetric backbone: the ViT's token map (series averaged),
    Swin-UNETR's deepest stage."""

    def __init__(self, backbone: nn.Module, *, backbone_name: str, num_classes: int) -> None:
        super().__init__()
        if backbone.spatial_dims != 3:
            raise ValueError(f"no case-level features for the 2D backbone {backbone_name!r}; expected a volumetric backbone (vit, swin_unetr)")
        self.backbone = backbone
        self.head = nn.Linear(backbone.bottleneck_channels, num_classes)

    def forward(self, x):
        z = self.backbone.bottleneck(x)  # [B, F, *grid]
        return self.head(z.mean(dim=tuple(range(2, z.dim()))))


def fit_to_roi(volumes: list["Volume"], roi: tuple[int, ...]) -> list["Volume"]:
    """Whole volumes resized to ``roi`` (MONAI Resize, trilinear); spacing scaled, class kept."""
    from monai.transforms import Resize  # deferred: monai.transforms costs the planning driver ~0.3 GB of imports

    if len(roi) != 3:
        raise BenchmarkInputError(f"case-level classification needs a 3D crop size, got {tuple(roi)}")
    resize = Resize(spatial_size=tuple(roi), mode="trilinear")
    out = []
    for v in volumes:
        if tuple(v.image.shape[1:]) != tuple(roi):
            spacing = tuple(s * old / new for s, old, new in zip(v.spacing, v.image.shape[1:], roi))
            v = dataclasses.replace(v, image=np.asarray(resize(v.image), dtype=np.float32), spacing=spacing)
        out.append(v)
    return out


class VolumeClassDataset:
    """``length`` samples {"image": [C, *roi], "target": class index}: a random case, augmented by
    ``augmentation`` (``benchmark.spatial_augmentation``; the CSM policy flips each axis with p=0.5; None:
    the case as is). Draws are seeded by (seed, index), as ``benchmark.data.CropDataset``."""

    def __init__(self, volumes: list["Volume"], *, length: int, seed: int, augmentation=None):
        if not volumes:
            raise BenchmarkInputError("no labelled cases to fine-tune on; expected at least one")
        missing = [v.case_id for v in volumes if v.target is None]
        if missing:
            raise ValueError(f"cases {missing[:3]} have no class (Volume.target); expected a classification task's volumes")
        self.volumes, self.length, self.seed = volumes, length, seed
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng((self.seed, index))
        volume = self.volumes[int(rng.integers(len(self.volumes)))]
        image = volume.image
        if self.augmentation is not None:
            image, _ = self.augmentation(image, None, seed=sample_seed(rng))
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "target": torch.tensor(volume.target, dtype=torch.long)}


CLASSIFICATION = register_kind(ClassificationKind())
