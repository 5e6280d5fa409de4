"""What every downstream task provides: layout reader, normalisation, its kind's name, targets, metrics.

``Task`` is what every dataset shares (registry name, channels, file checks, loading, synthetic
counterpart); ``SegmentationTask`` adds label maps, regions and their metrics. A task subclass only
states its dataset: file layout (``find_cases``), channel and label conventions, intensity
normalisation, how labels map to evaluated regions, and how to write its synthetic counterpart in
the same layout. What fine-tuning and evaluation do with a task comes from its kind, which the task
names as a string (``Task.kind``) and the training side looks up (``benchmark/kinds/``): a dataset
imports no training code, and code outside the kinds never asks which kind a task is.

Tasks are found by name (``@register_task``) or by a reference prefix (``@register_task_prefix``:
``nnunet:PATH``, ``synthesis:TASK:SRC->TGT``), a task built from its reference without registration.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from benchmark.records import EMPTY_PRED_PREFIX
from benchmark.registry import Registry
from tasks.nifti import load_nifti, nifti_shape, voxel_spacing

TASKS: Registry[type["Task"]] = Registry("task")
# Image and label affines may differ by float32 header rounding, never by a real shift or voxel size.
AFFINE_ATOL_MM, AFFINE_RTOL = 1e-3, 1e-4


@dataclass(frozen=True)
class TaskPrefix:
    """A family of tasks built from a reference (``PREFIX...``) instead of a registered name."""

    prefix: str  # e.g. "nnunet:"
    usage: str  # how a reference is written, for --list and error messages, e.g. "nnunet:PATH"
    kind: str  # the kind of the tasks it builds (--list)
    help: str
    build: Callable[[str], "Task"]  # reference -> task; raises BenchmarkInputError naming the reference


TASK_PREFIXES: Registry[TaskPrefix] = Registry("task prefix")


def register_task(name: str):
    return TASKS.register(name)


def register_task_prefix(prefix: str, *, usage: str, kind: str, help: str):
    """Register ``build(ref) -> Task`` for every task reference that starts with ``prefix`` (``--tasks PREFIX...``)."""
    def decorator(build: Callable[[str], "Task"]) -> Callable[[str], "Task"]:
        TASK_PREFIXES.register(prefix)(TaskPrefix(prefix=prefix, usage=usage, kind=kind, help=help, build=build))
        return build

    return decorator


def plugin_problem(cls) -> str | None:
    """Why an entry point's object (``benchmark.plugins``) cannot be a task, or None."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        return f"{cls!r} is not a task class: expected a subclass of tasks.base.Task (e.g. tasks.base.SegmentationTask)"
    missing = [a for a in ("kind", "description", "channels", "synthetic_cases", "synthetic_shape") if not hasattr(cls, a)]
    if missing:
        return f"{cls.__name__} declares no {' / '.join(missing)} (see tasks/base.py Task)"
    return None


def list_tasks() -> list[str]:
    return TASKS.names()


def list_task_prefixes() -> list[TaskPrefix]:
    return [TASK_PREFIXES.get(p) for p in TASK_PREFIXES.names()]


def task_prefix(ref: str) -> TaskPrefix | None:
    """The registered prefix ``ref`` starts with, or None (a plain task name)."""
    return next((p for p in list_task_prefixes() if ref.startswith(p.prefix)), None)


def is_task_ref(ref: str) -> bool:
    """Whether ``ref`` names a task: a registered name or a registered prefix's reference (not yet built)."""
    return ref in TASKS or task_prefix(ref) is not None


def task_choices() -> list[str]:
    """What ``--tasks`` accepts, for error messages: the registered names, then each prefix's usage."""
    return [*list_tasks(), *(p.usage for p in list_task_prefixes())]


def get_task(name: str) -> "Task":
    """A registered task, or one built from a prefixed reference (``nnunet:PATH``: any nnU-Net raw dataset
    folder from its dataset.json, tasks/nnunet.py; ``synthesis:TASK:SRC->TGT``, tasks/synthesis.py), so
    bring-your-own data needs no registration."""
    prefix = task_prefix(name)
    if prefix is not None:
        return prefix.build(name)
    return TASKS.get(name)()


@dataclass(frozen=True)
class Case:
    """One patient: one image file (NIfTI or MetaImage, tasks/nifti.py) per input channel (in ``SegmentationTask.channels`` order) and a label.

    ``channels_last``: ``images`` is a single 4D NIfTI [X, Y, Z, C] holding every channel (the MSD layout).
    ``target``: the case's class index for case-level classification tasks (tasks/classification.py),
    whose ``label`` is None or an optional region-of-interest mask; None for segmentation.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path | None
    channels_last: bool = False
    target: int | None = None


@dataclass(frozen=True, eq=False)
class VolumeIndex:
    """Where a volume's content is, computed once when it is prepared (``benchmark.prepared``) so that samplers need
    not scan the whole volume for every sample: the axial slices with any non-zero voxel (``body_slices``) and with
    any label (``labelled_slices``), and every labelled voxel's [x, y, z] (``foreground``, label > 0) ordered by label
    value, then in C order, with ``foreground_classes`` [M, 2]: each label value present and the row of ``foreground``
    where its voxels start (so a sampler picks a class, then one of its voxels, without scanning).

    It describes the arrays ``image`` and ``label`` it was computed from and nothing else: a Volume whose arrays
    were replaced (resized, a series dropped) keeps a stale index, which its readers detect by identity
    (``describes``) and then scan the new arrays themselves."""

    image: np.ndarray
    label: np.ndarray | None
    body_slices: np.ndarray
    labelled_slices: np.ndarray
    foreground: np.ndarray
    foreground_classes: np.ndarray

    def describes(self, volume: "Volume") -> bool:
        return self.image is volume.image and self.label is volume.label


@dataclass
class Volume:
    """A loaded, normalised case. image: [C, X, Y, Z] float32 (RAS); label: [X, Y, Z] raw integer values (int64 when
    read from the files; the smallest integer type that holds them when prepared, ``benchmark.prepared``, so readers
    cast what they take), None for a case without label map (a classification case, an unlabeled pretraining case).
    Prepared volumes hold memory-mapped arrays: reading a crop reads only its pages.

    spacing: voxel size in mm along X, Y, Z, from the file's RAS affine (updated when resampled);
    surface-distance metrics (HD95, MASD, NSD) are in these mm.
    target: the class index of a classification case; None for segmentation.
    index: where the content is (``VolumeIndex``), when prepared; None: readers scan the arrays.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    target: int | None = None
    index: VolumeIndex | None = None


_MODALITY_SYNONYMS = {"t1w": "t1", "t2w": "t2", "t1gd": "t1ce", "t1c": "t1ce", "flairw": "flair"}


def normalized_modality(channel: str) -> str:
    """A channel name as a modality of the cross-task vocabulary (``Task.modalities``)."""
    name = channel.strip().lower()
    return _MODALITY_SYNONYMS.get(name, name)


class Task:
    """What every dataset shares, whatever its kind (see module docstring)."""

    registry_name: ClassVar[str]  # set by @register_task
    kind: ClassVar[str]  # the name of its kind: segmentation / classification / synthesis (benchmark/kinds/)
    description: ClassVar[str]
    channels: ClassVar[tuple[str, ...]]
    synthetic_cases: ClassVar[int]
    synthetic_shape: ClassVar[tuple[int, int, int]]
    test_fraction: ClassVar[float] = 0.25
    # Validation cases held out of each split's training cases for model selection and hyperparameter search:
    # a share (float) or a number of cases (int), from the paper that used the task; at most a third of the
    # training cases and at least one (``benchmark.plan.split_validation``).
    validation: ClassVar[float | int] = 0.15
    split_seed: ClassVar[int] = 0  # the test cases are fixed per task, whatever the run's seeds
    # In-plane pre-processing of the paper that used the task, applied at native resolution (paper
    # profile): ("crop_pad", (X, Y)) crops/pads around the foreground centre keeping every slice,
    # ("resize", (X, Y)) rescales each slice. None: the volume as read.
    inplane: ClassVar[tuple[str, tuple[int, int]] | None] = None
    # Fine-tuning augmentation of the paper that used the task (benchmark/spatial_augmentation.py: si, ladp, csm,
    # dae), what ``--spatial-aug auto`` applies; "none" for a dataset no paper here used.
    spatial_aug: ClassVar[str] = "none"
    # Fine-tuning losses ``--finetune-loss`` may pick (``make_loss(name)``; "default": the task's own), the one
    # ``auto`` picks (its paper's), and the test-time augmentation ``--tta auto`` applies (benchmark/kinds/base.py).
    finetune_losses: ClassVar[tuple[str, ...]] = ("default",)
    paper_loss: ClassVar[str] = "default"
    paper_tta: ClassVar[str] = "none"

    # ---- dataset-specific parts -------------------------------------------------------------
    def find_cases(self, root: Path) -> list[Case]:
        raise NotImplementedError

    def normalize(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        raise NotImplementedError

    # ---- shared machinery -------------------------------------------------------------------
    default_data_root: Path | None = None  # read when no --data-root is given (nnunet:PATH); None: synthetic

    @property
    def name(self) -> str:
        return self.registry_name

    @property
    def ref(self) -> str:
        """What ``get_task`` rebuilds this task from in a worker process: its name, or ``nnunet:/abs/path``."""
        return self.name

    @property
    def modalities(self) -> tuple[str, ...]:
        """The imaging modality of each channel, as one vocabulary across tasks: DAE's cross-modal contrastive
        loss pairs samples by it ("the meta-data"), so BraTS's ``t2`` and FeTA's ``T2w`` are one modality and
        BTCV's ``ct`` another. Lower-cased channel names with the ``w`` of "weighted" dropped and the
        gadolinium synonyms merged (``t1gd`` -> ``t1ce``)."""
        return tuple(normalized_modality(c) for c in self.channels)

    @property
    def num_outputs(self) -> int:
        """Output channels of the fine-tuned network."""
        raise NotImplementedError

    def check_cases(self, cases: list[Case], *, root: Path) -> None:
        """Up-front check before any training; raises BenchmarkInputError naming the file."""
        raise NotImplementedError

    def _check_channel_axis(self, path: Path, shape: tuple[int, ...]) -> None:
        """A 4D multi-channel file must hold exactly the task's channels on its 4th axis."""
        if len(shape) != 4 or shape[3] != len(self.channels):
            raise BenchmarkInputError(
                f"{path}: image shape {shape}; expected a 4D volume [X, Y, Z, {len(self.channels)}] "
                f"holding the channels {', '.join(self.channels)}"
            )

    @staticmethod
    def _check_finite(path: Path, data: np.ndarray) -> None:
        if not np.isfinite(data).all():
            raise BenchmarkInputError(f"{path}: contains NaN or infinite intensities; expected finite values")

    def layout_help(self) -> str:
        return self.description

    def load(self, case: Case) -> Volume:
        channels = []
        for path in case.images:
            data, _ = load_nifti(path)
            self._check_finite(path, data)
            if case.channels_last:  # one 4D file [X, Y, Z, C] -> C volumes
                self._check_channel_axis(path, data.shape)
                channels.extend(np.moveaxis(data, -1, 0))
            else:
                channels.append(data)
        image = self.normalize(np.stack(channels).astype(np.float32))
        if case.label is None:  # an unlabeled pretraining case (tasks/unlabeled.py): geometry from the first image
            affine = load_nifti(case.images[0])[1]
            return Volume(case_id=case.case_id, image=image, label=None, spacing=voxel_spacing(affine))
        label, affine = load_nifti(case.label, dtype=np.float32)  # same affine as the images (check_cases)
        return Volume(case_id=case.case_id, image=image, label=np.rint(label).astype(np.int64), spacing=voxel_spacing(affine))

class SegmentationTask(Task):
    """A task with a label map per case: regions evaluated by Dice, HD95 and the task's own metrics."""

    kind = "segmentation"
    label_values: ClassVar[tuple[int, ...]]  # every raw value a label file may contain (0 included)
    region_names: ClassVar[tuple[str, ...]]  # evaluated regions; one Dice metric each
    multilabel: ClassVar[bool]  # True: one sigmoid channel per (overlapping) region; False: softmax over classes
    extra_metrics: ClassVar[tuple[str, ...]] = ()  # metrics ``metrics`` adds beyond Dice and HD95 (named for the report)

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        """label [B, 1, *spatial] raw values -> bool [B, K, *spatial], one channel per region."""
        raise NotImplementedError

    @property
    def num_outputs(self) -> int:
        return len(self.region_names) if self.multilabel else len(self.label_values)

    def check_cases(self, cases: list[Case], *, root: Path) -> None:
        """Up-front check before any training: every file reads (NIfTI or MetaImage), image and label grids
        agree (shape and affine), intensities are finite, label values are ones the task defines."""
        if not cases:
            raise BenchmarkInputError(f"{root}: no {self.name} cases found; expected {self.layout_help()}")
        known = set(self.label_values)
        for case in cases:
            label_shape = nifti_shape(case.label)
            for path in case.images:
                shape = nifti_shape(path)
                if case.channels_last:
                    self._check_channel_axis(path, shape)
                if shape[:3] != label_shape[:3]:
                    raise BenchmarkInputError(
                        f"{case.label}: label shape {label_shape} differs from image {path} shape {shape}; "
                        "expected the same voxel grid"
                    )
            affines = {}
            for path in case.images:
                data, affines[path] = load_nifti(path)
                self._check_finite(path, data)
            label, label_affine = load_nifti(case.label, dtype=np.float32)
            unknown = sorted(set(np.unique(label).tolist()) - known)
            if unknown:
                raise BenchmarkInputError(
                    f"{case.label}: label values {unknown} are not defined by task {self.name!r}; "
                    f"expected only {sorted(known)}"
                )
            for path, affine in affines.items():  # same grid must also mean same voxel size, orientation, origin
                if not np.allclose(affine, label_affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL_MM):
                    raise BenchmarkInputError(
                        f"{case.label}: label affine {np.round(label_affine, 4).tolist()} differs from image {path} "
                        f"affine {np.round(affine, 4).tolist()}; expected the same affine (voxel size, orientation, origin)"
                    )


    def loss_target(self, label: torch.Tensor) -> torch.Tensor:
        """label [B, 1, *spatial] raw values -> dense float target [B, num_outputs, *spatial].

        Region channels for multi-label tasks, one-hot classes otherwise; dense so that
        fine-tuning augmentations such as mixup can blend targets like images.
        """
        if self.multilabel:
            return self.label_to_regions(label).float()
        index = self.label_to_index(label)[:, 0]  # [B, *spatial]
        return torch.nn.functional.one_hot(index, len(self.label_values)).movedim(-1, 1).float()

    def label_to_index(self, label: torch.Tensor) -> torch.Tensor:
        """Raw label values -> contiguous class indices (e.g. BraTS 4 -> 3)."""
        lut = torch.zeros(max(self.label_values) + 1, dtype=torch.long, device=label.device)
        lut[torch.tensor(self.label_values, device=label.device)] = torch.arange(len(self.label_values), device=label.device)
        return lut[label.long()]

    def make_loss(self) -> torch.nn.Module:
        """Dice + cross-entropy (MONAI). ``batch=True`` pools Dice over the batch, so crops or slices
        without a structure do not each contribute a Dice loss of ~1 (nnU-Net's batch Dice)."""
        from monai.losses import DiceCELoss

        if self.multilabel:
            return DiceCELoss(sigmoid=True, batch=True)
        return DiceCELoss(softmax=True, batch=True)  # targets are dense (soft) one-hot, see loss_target

    def logits_to_regions(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [B, num_outputs, *spatial] -> bool [B, K, *spatial] predicted regions."""
        if self.multilabel:
            return logits.sigmoid() > 0.5
        index = logits.argmax(dim=1, keepdim=True)
        values = torch.tensor(self.label_values, device=logits.device)[index]
        return self.label_to_regions(values)

    def dice(self, pred_regions: torch.Tensor, true_regions: torch.Tensor) -> dict[str, float]:
        """Per-region Dice of one case (MONAI DiceMetric) and their mean.

        ``ignore_empty=False``: a region absent from both prediction and truth scores 1, a
        region absent from the truth but predicted scores 0 (the BraTS challenge convention).
        """
        from monai.metrics import DiceMetric

        metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
        values = metric(y_pred=pred_regions.float(), y=true_regions.float())[0]  # [K]
        out = {f"dice_{name}": float(v) for name, v in zip(self.region_names, values)}
        out["dice_mean"] = float(values.mean())
        return out

    def metrics(self, pred_regions: torch.Tensor, true_regions: torch.Tensor, *, spacing: tuple[float, ...],
                image: np.ndarray | None = None, label: torch.Tensor | None = None) -> dict[str, float]:
        """Every per-case metric of one case: bool regions [1, K, *spatial], ``spacing`` in mm per axis.

        Default: ``dice`` (dice_<region>, dice_mean) + hd95_<region>, hd95_mean in mm (empty-mask
        rules in tasks/metrics.py: NaN, undefined, when exactly one of prediction and truth is empty;
        hd95_mean is then NaN too, so two methods are compared on the same regions) + ``empty_pred_<region>``,
        1.0 where the region's prediction is empty and its truth is not (a flag, not a metric: the report
        counts the undefined distances of those cases as empty predictions). Tasks add their own by
        overriding (wmh: lesion recall; hie: MASD, NSD, Dice by lesion size), using ``image`` (the
        normalised image [C, *spatial]) or ``label`` (raw values [1, 1, *spatial]) where a metric needs
        more than the regions.
        """
        from tasks.metrics import hd95

        out = self.dice(pred_regions, true_regions)
        distances = hd95(pred_regions, true_regions, spacing=spacing)[0]  # [K], NaN where undefined
        out.update({f"hd95_{name}": float(d) for name, d in zip(self.region_names, distances)})
        out["hd95_mean"] = float(distances.mean())
        missed = ~pred_regions[0].flatten(1).any(dim=1) & true_regions[0].flatten(1).any(dim=1)  # [K]
        out.update({f"{EMPTY_PRED_PREFIX}{name}": float(m) for name, m in zip(self.region_names, missed)})
        return out
