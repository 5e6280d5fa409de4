"""What an SSL objective is: corruption + target + loss around a backbone it is handed.

A method owns only its heads / decoders; the backbone (whose weights transfer to
fine-tuning) is built by ``benchmark.backbones`` and passed in. Methods are pure torch:
no Ray, no file I/O. Randomness comes from the ``torch.Generator`` passed to ``forward``
so the same seed gives the same loss.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.registry import Registry

METHODS: Registry[type["PretextTask"]] = Registry("method")


def register_method(name: str):
    return METHODS.register(name)


def list_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> type["PretextTask"]:
    return METHODS.get(name)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimisation of a pretraining or fine-tuning run, written as data.

    ``steps`` are optimiser steps; a paper that counts epochs sets ``epochs`` instead and the
    planner converts with the training-set size (``steps_for``).
    """

    steps: int | None
    batch_size: int
    lr: float
    optimizer: str = "adamw"  # adamw | adam | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | poly | constant
    warmup_steps: int = 0
    source: str = ""  # where in the paper the numbers come from
    epochs: int | None = None
    iterations_per_epoch: int | None = None  # nnU-Net-style fixed-length epochs; None: one pass over the data

    def steps_for(self, n_samples: int) -> int:
        if self.steps is not None:
            return self.steps
        per_epoch = self.iterations_per_epoch or max(1, -(-n_samples // self.batch_size))
        return self.epochs * per_epoch


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a pretraining batch must contain.

    kind "crops": ``batch["image"]`` [B, C, *roi] random crops of unlabeled training cases.
    kind "modality_crops": ``batch["image"]`` [B, 1, *roi], one random channel (modality) of a
    crop per sample, with ``batch["modality"]`` [B] its channel index (DAE's metadata).
    kind "source_pool": ``batch["sources"]`` [B, N, C, H, W], N axial slices that all have
    brain/body foreground overlapping the first (target) slice; ``same_patient`` draws all N
    from one patient (WSI) instead of N different patients (CSI).
    """

    kind: str = "crops"
    pool_size: int = 0
    same_patient: bool = False


class PretextTask(nn.Module):
    """Base class of every SSL objective (see module docstring)."""

    Config: ClassVar[type]
    default_backbone: ClassVar[str]
    supported_backbones: ClassVar[tuple[str, ...]]
    transfer: ClassVar[str] = "all"  # "all": encoder + decoder transfer (dense methods); "encoder": encoder only
    label_aware: ClassVar[bool] = False  # True if pretraining reads labels (reported as such)
    replace_input_on_transfer: ClassVar[bool] = False  # new input layer for fine-tuning even if channels match
    pretrains: ClassVar[bool] = True
    trains_whole_backbone: ClassVar[bool] = True  # False: some backbone parameters get no gradient in pretraining (DDP must know)
    paper_recipe: ClassVar[Recipe]
    paper: ClassVar[str] = ""

    def __init__(self, backbone: nn.Module, cfg: Any, *, in_channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.in_channels = in_channels

    # --- class-level description used by the planner ----------------------------------------
    @classmethod
    def backbone_channels(cls, cfg: Any, *, in_channels: int) -> tuple[int, int]:
        """(input, output) channels of the backbone during pretraining; default: reconstruct the input."""
        return in_channels, in_channels

    @classmethod
    def data_spec(cls, cfg: Any) -> DataSpec:
        return DataSpec()

    @classmethod
    def finetune_rounds(cls, cfg: Any) -> int:
        """Supervised runs per cell; > 1 restarts the schedule from the previous run's weights (CNN-restart)."""
        return 1

    @classmethod
    def unsupported_reason(cls, *, task: Any, backbone: str) -> str | None:
        """Why this method cannot run on ``task`` / ``backbone`` (reported as n/a), or None."""
        if backbone not in cls.supported_backbones:
            return f"{cls.registry_name} needs one of the backbones {list(cls.supported_backbones)}, not {backbone!r}"
        return None

    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None) -> Any:
        """Paper defaults with ``overrides`` applied; unknown keys are an error naming the valid ones."""
        overrides = dict(overrides or {})
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for method {cls.registry_name!r}; expected some of {sorted(fields)}")
        return cls.Config(**overrides)

    def forward(self, batch: dict[str, torch.Tensor], *, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError
