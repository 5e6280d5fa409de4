"""Plain value types every layer may import: what a task records and the downstream settings of a run.

A leaf module (no torch, no behaviour): the Job contract (``benchmark.job``), the planner, the task kinds
(``benchmark/kinds/``), the store and the report all read these, so none of them has to import the code
that produces them.
"""
from __future__ import annotations

from dataclasses import dataclass


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
    """Downstream settings every method of a run shares, so a comparison differs only in the pretraining: the
    fine-tuning augmentation (mixup / CarveMix, and the papers' spatial augmentation), the missing-series scenario
    (CSM Table VII), the fine-tuning loss and the test-time augmentation."""

    augmentation: str = "none"  # none | mixup | carvemix
    mixup_alpha: float | None = None
    missing_series: float = 0.0
    # The paper's spatial/intensity augmentation of each sample (benchmark/spatial_augmentation.py): auto = the
    # task's paper policy (Task.spatial_aug); a planned Job holds the resolved name (none | si | ladp | csm | dae).
    spatial_aug: str = "auto"
    # The fine-tuning loss: auto = the task's paper loss (``paper_loss`` of the task, "default" where it has none),
    # default = the task's own ``make_loss()``, or a loss the task lists in ``finetune_losses`` (HIE: dicefocal,
    # LADP eq. 7). Test-time augmentation of the test predictions: auto = the task's paper's (``paper_tta``), none,
    # or flip (LADP II.D: mean over the in-plane flips). A planned Job holds the resolved names
    # (``benchmark.kinds.resolve_finetune_loss`` / ``resolve_tta``).
    loss: str = "auto"
    tta: str = "auto"


FINETUNE_LOSS_CHOICES = ("auto", "default", "dicefocal")
TTA_CHOICES = ("auto", "none", "flip")
