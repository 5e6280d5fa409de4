"""What a kind of task brings: its targets, loss, network head, evaluation and metric rows.

Segmentation (a label map per case) and case-level classification (one class per case) are two
kinds; image-to-image synthesis will be a third. Every task names its kind (``Task.kind``, an
instance of a ``TaskKind``), and code outside ``tasks/kinds/`` calls the kind's methods instead
of asking which kind a task is. A new kind is one new file here; the other kinds, the planner and
the training loops stay as they are.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # annotations only: importing a kind stays cheap
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from benchmark.protocol import Protocol
    from tasks.base import Case, Task, Volume


@dataclass(frozen=True)
class MetricInfo:
    """One metric a task records: its direction, whether it is the task's main one, and its scope
    ("case": one value per test case; "set": one value per test set, e.g. AUC)."""

    name: str
    higher_is_better: bool = True
    primary: bool = False
    scope: str = "case"


@dataclass(frozen=True)
class MetricRow:
    """One value of one metric: of one test case (``case_id``) or of the whole test set (``case_id`` None)."""

    metric: str
    value: float
    case_id: str | None = None

    @property
    def scope(self) -> str:
        return "set" if self.case_id is None else "case"


@dataclass(frozen=True)
class FinetuneSettings:
    """Downstream settings every method of a run shares: the fine-tuning augmentation and the
    missing-series scenario (CSM Table VII)."""

    augmentation: str = "none"  # none | mixup | carvemix
    mixup_alpha: float | None = None
    missing_series: float = 0.0


class TaskKind(ABC):
    """The kind-specific half of fine-tuning and evaluation (see module docstring)."""

    name: str

    # ---- planning ------------------------------------------------------------------------------
    def unsupported_reason(self, task: "Task", *, method_cls: Any, backbone: str, spatial_dims: int, finetune: FinetuneSettings) -> str | None:
        """Why ``method_cls`` on ``backbone`` cannot run on ``task`` (an n/a cell), or None."""
        return None

    def strata(self, cases: list["Case"]) -> dict[str, int] | None:
        """case id -> stratum for stratified splits (classification: the class), or None."""
        return None

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

    ddp_options: dict = {}  # passed to prepare_model (DDP) during fine-tuning

    @abstractmethod
    def training_set(self, task: "Task", volumes: list["Volume"], *, roi: tuple[int, ...], length: int, seed: int,
                     protocol: "Protocol") -> "Dataset":
        """``length`` labelled training samples drawn from ``volumes``."""

    @abstractmethod
    def loss_fn(self, task: "Task", model: "nn.Module", *, finetune: FinetuneSettings,
                generator: "torch.Generator") -> Callable[[dict], "torch.Tensor"]:
        """batch -> scalar loss of ``model``."""

    # ---- evaluation ----------------------------------------------------------------------------
    def validation_score(self, task: "Task", rows: list[MetricRow]) -> float:
        """Model selection's number (higher is better): the task's main metric on the validation cases,
        averaged over cases (a set-level metric: its value); NaN when undefined."""
        import math

        primary = next(i for i in self.metric_info(task) if i.primary)
        values = [r.value for r in rows if r.metric == primary.name and not math.isnan(r.value)]
        if not values:
            return float("nan")
        mean = sum(values) / len(values)
        return mean if primary.higher_is_better else -mean

    @abstractmethod
    def evaluate(self, model: "nn.Module", task: "Task", volumes: list["Volume"], *, roi: tuple[int, ...], device: Any,
                 protocol: "Protocol", log: Callable[[str], None], primary_only: bool = False) -> list[MetricRow]:
        """Metric rows on ``volumes`` (per case and per set); ``primary_only``: just what ``validation_score`` reads
        (model selection evaluates often: surface distances there would cost more than the fine-tuning)."""
