"""Plain value types every layer may import: what a task records and the downstream settings of a run; and the
one atomic file writer.

A leaf module (no torch, standard library only): the Job contract (``benchmark.job``), the planner, the task kinds
(``benchmark/kinds/``), the store and the report all read these, so none of them has to import the code
that produces them. It also holds the suite's one atomic writer (``atomic_path`` / ``write_atomic``): every file
the suite writes (the store's tables, checkpoints, the report's pages, the tasks' NIfTI files) goes through a temp
file in the same folder renamed into place, so a reader never sees half a file. It lives here because this is the
one kernel module both ``tasks/`` and ``reports/`` may import.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


# ---- the one atomic writer ------------------------------------------------------------------------------
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp path beside ``path`` to write to; on leaving the block it is renamed onto ``path``
    (``os.replace``: atomic on one file system), so ``path`` holds either its old content or the whole new file.

    The parent folders are created. The temp name is hidden (leading dot), unique (pid + random) and keeps the
    file's suffixes (``.case.nii.gz.<pid>.<hex>.tmp.nii.gz``), so writers that pick the format from the name
    (nibabel: ``.nii.gz``) write the right one. The temp file is not created here: the writer creates it, with the
    permissions a plain ``open`` gives. If the block raises (or the rename fails) the temp file is removed, the old
    ``path`` is left as it was, and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{''.join(path.suffixes)}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text, UTF-8; or bytes) to ``path`` atomically (``atomic_path``); parent folders created."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            with open(tmp, "xb") as handle:
                handle.write(data)
        else:
            with open(tmp, "x", encoding="utf-8") as handle:
                handle.write(data)


@dataclass(frozen=True)
class MetricInfo:
    """One metric a task records: its direction, whether it is the task's main one, its scope
    ("case": one value per test case; "set": one value per test set, e.g. AUC) and how it is computed where a
    convention decides its scale (``description``, e.g. synthesis PSNR on 8-bit slices)."""

    name: str
    higher_is_better: bool = True
    primary: bool = False
    scope: str = "case"
    description: str = ""


# Per-case rows of segmentation tasks that are flags, not metrics: ``empty_pred_<region>`` = 1.0 where the region's
# prediction is empty and its truth is not (its boundary distances are then undefined, NaN; tasks/metrics.py). The
# report counts them beside the distance tables instead of tabulating them (reports/load.py).
EMPTY_PRED_PREFIX = "empty_pred_"


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
    # task's paper policy (Task.spatial_aug), profile = the run profile's choice (``Profile.finetune_spatial_aug``);
    # a planned Job holds the resolved name (none | si | ladp | csm | dae).
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


PRECISION_CHOICES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ExecutionSettings:
    """How the loops run, shared by every Job of a run and recorded per cell: nothing here changes what is compared.

    ``precision``: fp32, or autocast to bf16 / fp16 (fp16 with a GradScaler; a method's half-precision-unstable
    terms, e.g. DAE's cross-modal contrastive loss, stay fp32). ``compile``: ``torch.compile`` the trained network.
    ``loader_workers``: DataLoader worker processes building the training samples (0: in the training process;
    every sample is seeded by its index, so the batches and the results are the same for any number).
    ``max_steps``: a cap on every training stage (pretraining, fine-tuning, evaluation networks); a capped run is a
    dry run (memory, step time), its rows are marked as not results. ``channels_last``: 2D convolutions on CUDA
    in channels-last memory format. ``checkpoint_every``: a training stage writes its checkpoint every N steps and at
    its end; None: every ``checkpoint_minutes`` of the stage's wall time and at its end (an interrupted stage
    resumes from its last checkpoint with the same numbers, so neither changes what is compared)."""

    precision: str = "fp32"
    compile: bool = False
    loader_workers: int = 0
    max_steps: int | None = None
    channels_last: bool = False
    checkpoint_every: int | None = None
    checkpoint_minutes: float = 15.0

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISION_CHOICES)}")
        if self.loader_workers < 0:
            raise ValueError(f"--loader-workers {self.loader_workers}: expected 0 or more")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps {self.max_steps}: expected at least 1")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every {self.checkpoint_every}: expected at least 1 (steps)")
        if self.checkpoint_minutes <= 0:
            raise ValueError(f"checkpoint_minutes {self.checkpoint_minutes}: expected > 0")

    def numeric_key(self) -> dict:
        """What changes the numbers (cache keys and cell ids): the precision, when not fp32; empty by default so the
        keys of fp32 runs stay those of older runs."""
        return {"precision": self.precision} if self.precision != "fp32" else {}
