"""Case-level classification on the benchmark's backbones: which cells can run, the network, its data.

The CSM paper (section IV) diagnoses breast and prostate MRI with its ViT encoder and a
classification head. ``ClassifierNet`` does that for every volumetric backbone the suite has:
the (pretrained or scratch) backbone's encoder features -> global average pool -> Linear. The
backbone comes from ``benchmark.train.transfer_model`` exactly as for segmentation, so every
method's transfer rules (encoder only, whole network, new input layer) apply unchanged; the
segmentation decoder is simply not used.

Fine-tuning sees whole volumes, resized to the profile's crop size (the ViT's position
embeddings are for that grid), with random flips: one image and one class per case.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from benchmark.errors import BenchmarkInputError
from tasks.base import Volume


def _vit_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ViTSegmenter: encoder tokens [B, S, N, dim] averaged over series and positions -> [B, dim]."""
    return model.encoder(x).mean(dim=(1, 2))


def _swin_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SwinUNETR3D: deepest encoder stage [B, 16*feature_size, d, h, w] averaged over space -> [B, F]."""
    return model.bottleneck(x).mean(dim=(2, 3, 4))


# backbone name -> (features of a batch, their width)
FEATURES = {
    "vit": (_vit_features, lambda model: model.encoder.dim),
    "swin_unetr": (_swin_features, lambda model: model.bottleneck_channels),
}


def classification_reason(task, *, method_cls, backbone: str, finetune_aug: str) -> str | None:
    """Why ``method_cls`` on ``backbone`` cannot run on classification ``task`` (an n/a cell), or None.

    None for segmentation tasks. A 2D (slice-wise) network has no features of a whole case;
    a label-aware pretraining reads segmentation labels, which a classification task does not
    have; mixup / CarveMix blend dense label maps.
    """
    if getattr(task, "kind", "segmentation") != "classification":
        return None
    if backbone not in FEATURES:
        from benchmark.backbones import BACKBONES

        what = "a 2D (slice-wise) network" if getattr(BACKBONES.get(backbone), "spatial_dims", 3) == 2 else "a backbone without a case-level feature extractor"
        return (f"task {task.name!r} classifies whole volumes (one class per case); backbone {backbone!r} is {what}; "
                f"expected one of {sorted(FEATURES)}")
    if method_cls.label_aware:
        return f"{method_cls.registry_name} pretrains on segmentation labels; task {task.name!r} has one class per case, no label maps"
    if finetune_aug != "none":
        return f"--finetune-aug {finetune_aug} blends dense label maps; task {task.name!r} has one class per case"
    return None


class ClassifierNet(nn.Module):
    """backbone features -> global average pool -> Linear(num_classes): image [B, C, *roi] -> logits [B, K]."""

    def __init__(self, backbone: nn.Module, *, backbone_name: str, num_classes: int) -> None:
        super().__init__()
        if backbone_name not in FEATURES:
            raise ValueError(f"no case-level features for backbone {backbone_name!r}; expected one of {sorted(FEATURES)}")
        self.backbone = backbone
        self._features, width = FEATURES[backbone_name][0], FEATURES[backbone_name][1](backbone)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(self.backbone, x))


def fit_to_roi(volumes: list[Volume], roi: tuple[int, ...]) -> list[Volume]:
    """Whole volumes resized to ``roi`` (MONAI Resize, trilinear); spacing scaled, label zeros, class kept."""
    import dataclasses

    from monai.transforms import Resize

    if len(roi) != 3:
        raise BenchmarkInputError(f"case-level classification needs a 3D crop size, got {tuple(roi)}")
    resize = Resize(spatial_size=tuple(roi), mode="trilinear")
    out = []
    for v in volumes:
        if tuple(v.image.shape[1:]) != tuple(roi):
            spacing = tuple(s * old / new for s, old, new in zip(v.spacing, v.image.shape[1:], roi))
            v = dataclasses.replace(v, image=np.asarray(resize(v.image), dtype=np.float32), label=np.zeros(roi, dtype=np.int64), spacing=spacing)
        out.append(v)
    return out


class VolumeClassDataset(Dataset):
    """``length`` samples {"image": [C, *roi], "target": class index}: a random case, flipped at random
    along each axis. Draws are seeded by (seed, index), as ``benchmark.data.CropDataset``."""

    def __init__(self, volumes: list[Volume], *, length: int, seed: int):
        if not volumes:
            raise BenchmarkInputError("no labelled cases to fine-tune on; expected at least one")
        missing = [v.case_id for v in volumes if v.target is None]
        if missing:
            raise ValueError(f"cases {missing[:3]} have no class (Volume.target); expected a classification task's volumes")
        self.volumes, self.length, self.seed = volumes, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        volume = self.volumes[int(rng.integers(len(self.volumes)))]
        axes = tuple(1 + a for a in range(volume.image.ndim - 1) if rng.random() < 0.5)
        image = np.flip(volume.image, axis=axes) if axes else volume.image
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "target": torch.tensor(volume.target, dtype=torch.long)}
