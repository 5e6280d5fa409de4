"""What a kind of task brings: its targets, loss, network head, evaluation and metric rows.

Segmentation (a label map per case), case-level classification (one class per case) and image
synthesis are the kinds. A dataset (``tasks/``) names its kind as a string (``Task.kind``); the
layers that run a task look the kind up here (``kind_of(task)``, the way lm-evaluation-harness
resolves a task's ``output_type``) and call its methods instead of asking which kind a task is. A
new kind is one new file in this package, registered with ``register_kind``; the datasets, the
planner and the training loops stay as they are.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from benchmark.records import FINETUNE_LOSS_CHOICES, TTA_CHOICES, FinetuneSettings, MetricInfo, MetricRow
from benchmark.registry import Registry
from benchmark.spatial_augmentation import SpatialAugmentation, resolve_policy

if TYPE_CHECKING:  # annotations only
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from benchmark.job import NetworkSpec
    from benchmark.protocol import Protocol
    from tasks.base import Case, Task, Volume

KINDS: Registry["TaskKind"] = Registry("task kind")


def register_kind(kind: "TaskKind") -> "TaskKind":
    """Register a kind instance under its ``name`` (the string a task's ``kind`` holds); returns it."""
    KINDS.register(kind.name)(kind)
    return kind


def get_kind(name: str) -> "TaskKind":
    return KINDS.get(name)


def kind_of(task: "Task") -> "TaskKind":
    """The kind that runs ``task`` (its ``kind`` name looked up in the registry)."""
    return KINDS.get(task.kind)


@dataclass(frozen=True)
class NetworkPlanning:
    """What the planner knows about one Job when a kind plans its evaluation networks (``planned_networks``)."""

    profile: Any  # benchmark.profiles.Profile: the recipes and crop sizes of the run
    storage: str  # where trained networks are cached (benchmark.storage: a path or URI)
    seed: int
    train_ids: tuple[str, ...]  # the split's fine-tuning cases
    val_ids: tuple[str, ...]  # its validation cases
    data_fingerprint: str  # the task data's fingerprint (the cache keys change when its files do)
    epoch_slices: int  # axial slices of the training + validation cases (2D samples per epoch)
    finetune_samples: int  # samples per fine-tuning epoch of the Job
    protocol: "Protocol"


def resolve_finetune_loss(name: str, task: "Task") -> str:
    """The loss ``name`` stands for on ``task``: auto -> the task's paper loss (``Task.paper_loss``); a loss the task
    does not list (``Task.finetune_losses``) is a ValueError naming the ones it has."""
    if name not in FINETUNE_LOSS_CHOICES:
        raise ValueError(f"--finetune-loss {name!r}: expected one of {', '.join(FINETUNE_LOSS_CHOICES)}")
    loss = task.paper_loss if name == "auto" else name
    offered = task.finetune_losses
    if loss not in offered:
        raise ValueError(f"--finetune-loss {loss}: task {task.name!r} has no such loss; expected one of {', '.join(('auto', *offered))}")
    return loss


def resolve_tta(name: str, task: "Task") -> str:
    """The test-time augmentation ``name`` stands for on ``task``: auto -> its paper's (``Task.paper_tta``);
    one its kind cannot apply (``TaskKind.test_time_augmentations``) is a ValueError."""
    if name not in TTA_CHOICES:
        raise ValueError(f"--tta {name!r}: expected one of {', '.join(TTA_CHOICES)}")
    tta = task.paper_tta if name == "auto" else name
    if tta not in kind_of(task).test_time_augmentations:
        raise ValueError(f"--tta {tta}: task {task.name!r} ({task.kind}) has no such test-time augmentation; "
                         f"expected one of {', '.join(('auto', *kind_of(task).test_time_augmentations))}")
    return tta


class TaskKind(ABC):
    """The kind-specific half of fine-tuning and evaluation (see module docstring)."""

    name: str

    # ---- planning ------------------------------------------------------------------------------
    def unsupported_reason(self, task: "Task", *, method_cls: Any, backbone: str, spatial_dims: int, finetune: FinetuneSettings) -> str | None:
        """Why ``method_cls`` on ``backbone`` cannot run on ``task`` (an n/a cell), or None. Default: every method but
        the synthesis generator losses (``benchmark/methods/synthesis_losses.py``), which only the synthesis kind takes."""
        if getattr(method_cls, "synthesis_loss", False):
            return (f"{method_cls.registry_name} is a generator loss for image synthesis (CoPer III.C); task {task.name!r} is not a "
                    "synthesis task (expected brats_synthesis or synthesis:TASK:SRC->TGT)")
        return None

    def strata(self, cases: list["Case"]) -> dict[str, int] | None:
        """case id -> stratum for stratified splits (classification: the class), or None."""
        return None

    # The method run once per backbone as every comparison's baseline (``benchmark.plan``); synthesis: "l1".
    baseline_method: str = "scratch"

    def finetune_network(self, backbone: str) -> str:
        """The network whose crop size and fine-tuning recipe the profile applies to this kind's Jobs on ``backbone``
        (default: the backbone itself; synthesis: its generator, whatever loss network the Job's backbone names)."""
        return backbone

    def pretraining_volumes(self, task: "Task", volumes: list["Volume"]) -> list["Volume"]:
        """What a method pretrains on from ``volumes`` (default: every series; synthesis: the target series only)."""
        return volumes

    def pretrain_key(self, task: "Task") -> dict:
        """Entries the pretraining cache key adds for this kind (e.g. the series pretrained on); none by default."""
        return {}

    @abstractmethod
    def describe(self, task: "Task") -> str:
        """What the targets are, for ``--check-data``'s summary."""

    @abstractmethod
    def metric_info(self, task: "Task") -> list[MetricInfo]:
        """Every metric the task records, its main one flagged (the report reads this)."""

    # ---- fine-tuning ---------------------------------------------------------------------------
    def prepare(self, volumes: list["Volume"], *, roi: tuple[int, ...]) -> list["Volume"]:
        """Volumes as fine-tuning and evaluation read them (e.g. resized whole cases)."""
        return volumes

    def build_model(self, network: "nn.Module", *, task: "Task", backbone_name: str) -> "nn.Module":
        """The fine-tuned network around the (pretrained) backbone."""
        return network

    def planned_networks(self, task: "Task", *, plan: "NetworkPlanning") -> tuple["NetworkSpec", ...]:
        """The networks this kind's evaluation needs beside the compared one, planned with the Job (``NetworkSpec``:
        keyed, cached, trained by the loops before the cells, only loaded by ``job_model``); none by default."""
        return ()

    def job_model(self, job: Any, *, task: "Task", state: dict | None, networks: dict[str, dict], hooks: Any) -> "nn.Module | None":
        """A kind that builds its fine-tuned model from the whole Job returns it here (synthesis: pix2pix around
        the Job's pretrained loss network ``state``, scored by its trained ``networks`` (role -> state dict));
        None (default): the transferred backbone in ``build_model``."""
        return None

    ddp_options: dict = {}  # passed to prepare_model (DDP) during fine-tuning

    @abstractmethod
    def training_set(self, task: "Task", volumes: list["Volume"], *, roi: tuple[int, ...], length: int, seed: int,
                     protocol: "Protocol", finetune: FinetuneSettings = FinetuneSettings()) -> "Dataset":
        """``length`` labelled training samples drawn from ``volumes``, augmented by ``finetune.spatial_aug``
        (``spatial_augmentation`` below)."""

    @staticmethod
    def spatial_augmentation(task: "Task", *, finetune: FinetuneSettings, spatial_dims: int, protocol: "Protocol"):
        """The ``SpatialAugmentation`` of ``finetune.spatial_aug`` on this task for samples of ``spatial_dims``
        (the elastic part only where ``protocol.spatial_aug_elastic_dims`` holds ``spatial_dims``)."""
        return SpatialAugmentation(resolve_policy(finetune.spatial_aug, task), spatial_dims=spatial_dims,
                                   elastic=spatial_dims in protocol.spatial_aug_elastic_dims)

    @abstractmethod
    def loss_fn(self, task: "Task", model: "nn.Module", *, finetune: FinetuneSettings,
                generator: "torch.Generator") -> Callable[[dict], "torch.Tensor"]:
        """batch -> scalar loss of ``model``."""

    # ---- evaluation ----------------------------------------------------------------------------
    def validation_score(self, task: "Task", rows: list[MetricRow]) -> float:
        """Model selection's number (higher is better): the task's main metric on the validation cases,
        averaged over cases (a set-level metric: its value); NaN when undefined."""
        primary = next(i for i in self.metric_info(task) if i.primary)
        values = [r.value for r in rows if r.metric == primary.name and not math.isnan(r.value)]
        if not values:
            return float("nan")
        mean = sum(values) / len(values)
        return mean if primary.higher_is_better else -mean

    # Test-time augmentations ``evaluate`` can apply (its ``tta`` keyword, passed only when not "none").
    test_time_augmentations: tuple[str, ...] = ("none",)

    @abstractmethod
    def evaluate(self, model: "nn.Module", task: "Task", volumes: list["Volume"], *, roi: tuple[int, ...], device: Any,
                 protocol: "Protocol", log: Callable[[str], None], primary_only: bool = False) -> list[MetricRow]:
        """Metric rows on ``volumes`` (per case and per set); ``primary_only``: just what ``validation_score`` reads
        (model selection evaluates often: surface distances there would cost more than the fine-tuning). A kind
        that lists test-time augmentations also takes ``tta`` (one of them)."""

    # ---- the task contract (``benchmark.testing.check_task``) ----------------------------------------
    @abstractmethod
    def target_problem(self, task: "Task", volume: "Volume") -> str | None:
        """Why a loaded case's targets do not fit this kind (a label map of the image's grid with the task's label values,
        a class index, ...), or None: what the task contract checks of every case a task's reader loads."""

    @abstractmethod
    def contract_metric_rows(self, task: "Task", volumes: list["Volume"]) -> tuple[list[MetricRow], list[MetricRow]]:
        """(leaderboard rows, case-level prediction rows) that ``evaluate`` writes for ``volumes`` against a prediction
        made from their own targets, without trained networks: the task contract checks that ``metric_info`` lists every
        leaderboard row with its scope (``MetricRow.case_id`` None: "set") and no prediction row (classification's
        probabilities, segmentation's empty-prediction flags), which are kept for re-analysis, not tabulated."""
