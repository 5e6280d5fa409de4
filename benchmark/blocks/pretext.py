"""What an SSL objective is: corruption + target + loss around a backbone it is handed.

A method owns only its heads / decoders; the backbone (whose weights transfer to
fine-tuning) is built by ``benchmark.backbones`` and passed in. Methods are pure torch:
no Ray, no file I/O. Randomness comes from the ``torch.Generator`` passed to ``forward``
so the same seed gives the same loss.

These classes live in the building-block layer so that shared pretext bases
(``benchmark.blocks.pretexts``) can extend ``PretextTask`` without importing the method
package; ``benchmark.methods.base`` re-exports them with the method registry.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimisation of a pretraining or fine-tuning run, written as data.

    ``steps`` are optimiser steps; a paper that counts epochs sets ``epochs`` instead and the
    planner converts with the training-set size (``steps_for``).

    ``final_lr``: the learning rate the schedule decays to (absolute; None: to 0, the default of
    every schedule), e.g. SwAV's cosine from 0.6 to 0.0006. ``warmup_epochs``: a warm-up given in
    epochs (None: ``warmup_steps`` is used), converted with ``steps_per_epoch`` of the run.
    """

    steps: int | None
    batch_size: int
    lr: float
    optimizer: str = "adamw"  # adamw | adam | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD / LARS momentum; Adam's beta1 (0.9: torch's default; pix2pix: 0.5)
    schedule: str = "cosine"  # cosine | poly | constant
    warmup_steps: int = 0
    source: str = ""  # where in the paper the numbers come from
    epochs: int | None = None
    iterations_per_epoch: int | None = None  # nnU-Net-style fixed-length epochs; None: one pass over the data
    final_lr: float | None = None  # the lr the schedule ends at (absolute); None: 0
    warmup_epochs: float | None = None  # warm-up in epochs instead of warmup_steps

    def __post_init__(self) -> None:
        if self.final_lr is not None and not 0.0 <= self.final_lr <= self.lr:
            raise ValueError(f"Recipe.final_lr must be in [0, lr = {self.lr}], got {self.final_lr}")
        if self.warmup_epochs is not None:
            if self.warmup_epochs < 0:
                raise ValueError(f"Recipe.warmup_epochs must be >= 0, got {self.warmup_epochs}")
            if self.epochs is None and self.iterations_per_epoch is None:
                raise ValueError("Recipe.warmup_epochs needs epochs or iterations_per_epoch (a recipe counted in steps has no epoch)")
            if self.warmup_steps:
                raise ValueError("Recipe: give the warm-up in warmup_steps or in warmup_epochs, not both")

    def steps_for(self, n_samples: int) -> int:
        if self.steps is not None:
            return self.steps
        per_epoch = self.iterations_per_epoch or max(1, -(-n_samples // self.batch_size))
        return self.epochs * per_epoch

    def steps_per_epoch(self, total_steps: int) -> float | None:
        """Optimiser steps per epoch of a run of ``total_steps`` (``iterations_per_epoch``, else total / epochs);
        None for a recipe counted in steps, which has no epochs."""
        if self.iterations_per_epoch:
            return float(self.iterations_per_epoch)
        if self.epochs:
            return total_steps / self.epochs
        return None

    def warmup_steps_for(self, total_steps: int) -> int:
        """Warm-up length in steps: ``warmup_steps``, or ``warmup_epochs`` x steps per epoch (rounded)."""
        if self.warmup_epochs is None:
            return self.warmup_steps
        return int(round(self.warmup_epochs * self.steps_per_epoch(total_steps)))


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
    # Registered backbones the method cannot use, each with the reason (reported as the n/a cell's reason).
    # Every registered backbone is either supported or listed here (tests/test_registry_contract.py).
    unsupported_backbones: ClassVar[dict[str, str]] = {}
    transfer: ClassVar[str] = "all"  # "all": encoder + decoder transfer (dense methods); "encoder": encoder only
    label_aware: ClassVar[bool] = False  # True if pretraining reads labels (reported as such); see ``is_label_aware``
    replace_input_on_transfer: ClassVar[bool] = False  # new input layer for fine-tuning even if channels match
    pretrains: ClassVar[bool] = True
    trains_whole_backbone: ClassVar[bool] = True  # False: some backbone parameters get no gradient in pretraining (DDP must know)
    paper_recipe: ClassVar[Recipe]
    paper: ClassVar[str] = ""
    # The augmentation of the pretraining samples its paper states (a policy of benchmark/spatial_augmentation.py:
    # none | si | ladp | csm | dae), the same for every method of one paper (tests/test_registry_contract.py): "none"
    # where the paper names none or the method draws its own views (SwAV / SimSiam multi-crop, Swin-UNETR SSL).
    pretrain_aug: ClassVar[str] = "none"

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
    def is_label_aware(cls, cfg: Any) -> bool:
        """True if pretraining with ``cfg`` reads labels (``batch["label"]``): reported as label-aware, and it
        may then see only the labelled cases of the fraction it is compared at. Default: the class's ``label_aware``;
        a method whose label use depends on its configuration (``ddp:cases=labelled``) overrides it."""
        return cls.label_aware

    @classmethod
    def pretrains_on_labelled_cases(cls, cfg: Any) -> bool:
        """True: one pretraining per label fraction, on exactly that fraction's labelled cases (what a label-aware
        pretraining must do); False: one pretraining on every non-test case (and --pretrain-extra) for all fractions."""
        return cls.is_label_aware(cfg)

    @classmethod
    def pretrain_augmentation(cls, cfg: Any) -> str:
        """The augmentation policy of this configuration's pretraining samples (default: the class's ``pretrain_aug``)."""
        return cls.pretrain_aug

    @classmethod
    def pretrain_foreground_prob(cls, cfg: Any) -> float:
        """Share of pretraining crops centred on a labelled voxel (``benchmark.data.random_crop``); only a
        label-aware pretraining may sample by labels, so the default is 0 (uniform crops)."""
        return 0.0

    # True: the Job's backbone comes from the Config (``backbone_for``), and another --backbone is an n/a cell.
    backbone_from_config: ClassVar[bool] = False

    @classmethod
    def backbone_for(cls, cfg: Any) -> str:
        """The backbone a Job of this configuration runs on when no --backbone is given (default: the paper's)."""
        return cls.default_backbone

    @classmethod
    def pretrains_with(cls, cfg: Any) -> bool:
        """Whether this configuration has a pretraining (default: the class's ``pretrains``)."""
        return cls.pretrains

    @classmethod
    def recipe_for(cls, cfg: Any) -> Recipe:
        """The paper recipe of this configuration's pretraining (default: the class's ``paper_recipe``)."""
        return cls.paper_recipe

    @classmethod
    def pretraining_config(cls, cfg: Any) -> dict:
        """The configuration the pretraining cache key holds (default: the whole Config). A method whose Config also
        holds fine-tuning-only settings (the synthesis losses' λ1) leaves them out, so changing them pretrains once."""
        return dataclasses.asdict(cfg)

    @classmethod
    def finetune_rounds(cls, cfg: Any) -> int:
        """Supervised runs per cell; > 1 restarts the schedule from the previous run's weights (CNN-restart)."""
        return 1

    @classmethod
    def unsupported_reason(cls, *, task: Any, backbone: str) -> str | None:
        """Why this method cannot run on ``task`` / ``backbone`` (reported as n/a), or None."""
        if backbone in cls.unsupported_backbones:
            return f"{cls.registry_name} cannot run on backbone {backbone!r}: {cls.unsupported_backbones[backbone]}"
        if backbone not in cls.supported_backbones:
            return f"{cls.registry_name} needs one of the backbones {list(cls.supported_backbones)}, not {backbone!r}"
        return None

    @classmethod
    def pretraining_data_problem(cls, cfg: Any, *, modalities: tuple[str, ...], global_batch: int) -> str | None:
        """Why the pretraining data cannot train this configuration as its paper did (the cell is n/a with this
        reason rather than trained with a silently dead loss term), or None. ``modalities``: what the pretraining
        samples can be (a task's, or a --pretrain-corpus's); ``global_batch``: batch per worker x workers."""
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

    def configure_schedule(self, *, recipe: Recipe, steps: int) -> None:
        """Told the pretraining recipe and its step count before the first step (default: nothing to do).

        Lets a method express a duration in epochs (SwAV's prototype freeze, CoPer appendix B): the
        planner knows the epoch length, the method alone does not.
        """

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """The backbone weights this pretraining hands to fine-tuning, under the backbone's names (on the CPU).

        Default: the trained backbone's. A method whose transferred network is not the one the optimiser trains
        (DINO evaluates its EMA teacher) returns that one instead."""
        return {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()}

    def forward(self, batch: dict[str, torch.Tensor], *, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError
