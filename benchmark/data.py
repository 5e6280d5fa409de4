"""From a task's cases to training batches: load + resample volumes, random crops, SI source pools.

Every random draw is seeded from (seed, sample index), so a dataset gives the same sample
for the same index in any process; under DDP a DistributedSampler splits the indices.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmark.blocks.mixing import foreground_overlap
from benchmark.errors import BenchmarkInputError
from benchmark.spatial_augmentation import sample_seed
from tasks import get_task
from tasks.base import Case, Task, Volume
from tasks.unlabeled import find_unlabeled_cases


def load_volumes(task: Task, cases: list[Case], *, volume_size: tuple[int, int, int] | None) -> list[Volume]:
    """Load and normalise ``cases``; resample to ``volume_size`` when the profile asks for it (smoke),
    else apply the task's paper pre-processing in-plane (``task.inplane``, e.g. 200 x 200 x Z for the SI tasks)."""
    volumes = [task.load(case) for case in cases]
    if volume_size is not None:
        return [_resize(v, tuple(volume_size)) for v in volumes]
    if task.inplane is None:
        return volumes
    mode, size = task.inplane
    if mode == "resize":
        return [_resize(v, (*size, v.image.shape[3])) for v in volumes]
    if mode == "crop_pad":
        return [_crop_pad_inplane(v, size) for v in volumes]
    raise ValueError(f"task {task.name}: unknown in-plane pre-processing {mode!r}; expected 'resize' or 'crop_pad'")


def load_corpus(parts, *, modalities: tuple[str, ...], volume_size: tuple[int, int, int] | None,
                read: Callable[..., list[Volume]] | None = None) -> tuple[list[Volume], list[tuple[int, ...]]]:
    """The volumes of a pretraining corpus (``benchmark.job.CorpusPart``s: several tasks' non-test cases and their
    ``--pretrain-extra`` cases, each read and normalised by its own task) and, per volume, each channel's index in
    the corpus's modality vocabulary ``modalities`` (``Task.modalities``). ``read(task, case_ids, data_root=...,
    extra_root=...)`` reads them (default: the files decoded here; the loops pass the Job's prepared reader)."""
    read = read or partial(_read_files, volume_size=volume_size)
    volumes, modality_ids = [], []
    for part in parts:
        task = get_task(part.task_ref)
        unknown = [m for m in task.modalities if m not in modalities]
        if unknown:
            raise BenchmarkInputError(f"pretraining corpus: task {task.name}'s modalities {unknown} are not in the corpus vocabulary {list(modalities)}")
        loaded = read(task, part.case_ids, data_root=part.data_root, extra_root=part.extra_root)
        volumes += loaded
        modality_ids += [tuple(modalities.index(m) for m in task.modalities)] * len(loaded)
    return volumes, modality_ids


def _read_files(task, case_ids, *, data_root: str, extra_root: str | None, volume_size) -> list[Volume]:
    """``case_ids`` of ``task`` decoded from the data folder (and the ``--pretrain-extra`` folder)."""
    cases = {c.case_id: c for c in task.find_cases(Path(data_root))}
    if extra_root:
        cases.update({c.case_id: c for c in find_unlabeled_cases(task, Path(extra_root))})
    missing = [i for i in case_ids if i not in cases]
    if missing:
        raise BenchmarkInputError(f"pretraining corpus: task {task.name} at {data_root} has no case(s) {missing[:5]}; "
                                  "the data changed since the run was planned")
    return load_volumes(task, [cases[i] for i in case_ids], volume_size=volume_size)


def _resize(v: Volume, size: tuple[int, int, int]) -> Volume:
    """Resample image (trilinear) and label (nearest) to ``size`` voxels (MONAI Resize)."""
    if tuple(v.image.shape[1:]) == size:
        return v
    from monai.transforms import Resize

    image = np.asarray(Resize(spatial_size=size, mode="trilinear")(v.image), dtype=np.float32)
    label = None if v.label is None else np.asarray(Resize(spatial_size=size, mode="nearest")(v.label[None].astype(np.float32)))[0].round().astype(np.int64)
    # Same field of view on fewer/more voxels: each voxel's size scales by old / new count.
    spacing = tuple(s * old / new for s, old, new in zip(v.spacing, v.image.shape[1:], size))
    return dataclasses.replace(v, image=image, label=label, spacing=spacing)


def _crop_pad_inplane(v: Volume, size: tuple[int, int]) -> Volume:
    """Crop / zero-pad X and Y to ``size`` around the centre of the foreground's bounding box, every
    slice kept (MONAI SpatialCrop + SpatialPad), so the whole brain stays in view (SI paper 5.1)."""
    from monai.transforms import SpatialCrop, SpatialPad

    depth = v.image.shape[3]
    foreground = np.argwhere((v.image != 0).any(axis=0))
    lo, hi = (foreground.min(0), foreground.max(0)) if len(foreground) else (np.zeros(3, int), np.array(v.image.shape[1:]) - 1)
    centre = [int((a + b + 1) // 2) for a, b in zip(lo[:2], hi[:2])] + [depth // 2]
    crop = SpatialCrop(roi_center=centre, roi_size=(*size, depth))
    pad = SpatialPad(spatial_size=(*size, depth), method="symmetric")
    image = np.asarray(pad(crop(v.image)), dtype=np.float32)
    label = None if v.label is None else np.asarray(pad(crop(v.label[None])))[0].astype(np.int64)
    return dataclasses.replace(v, image=image, label=label)


def drop_series(volumes: list[Volume], fraction: float) -> list[Volume]:
    """Missing-series scenario of the CSM paper (Table VII "Complete-series ×", section IV.C).

    "Some series of some data are missing ... we artificially created such scenarios ... by
    randomly eliminating one or two series. In finetuning and inference, such missing series
    can be padded with zeros." A share ``fraction`` of the cases loses one or two series
    (never all: at most C−1), which are set to zero. Which cases and which series depend only
    on the case id, so every method is fine-tuned and tested on the same incomplete data.
    """
    if not 0.0 <= fraction <= 1.0:
        raise BenchmarkInputError(f"--missing-series {fraction}: expected a share of cases in [0, 1]")
    if fraction == 0.0:
        return volumes
    import zlib

    out = []
    for v in volumes:
        channels = v.image.shape[0]
        rng = np.random.default_rng(zlib.crc32(v.case_id.encode()))
        affected = rng.random() < fraction
        n_drop = min(int(rng.integers(1, 3)), channels - 1)
        if not affected or n_drop < 1:
            out.append(v)
            continue
        image = v.image.copy()
        image[rng.choice(channels, size=n_drop, replace=False)] = 0.0
        out.append(dataclasses.replace(v, image=image))
    return out


def _pad_to(array: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Zero-pad the trailing spatial dims of [C, *spatial] up to ``size`` (crops larger than the volume)."""
    spatial = array.shape[1:]
    pads = [(0, 0)] + [(0, max(0, s - d)) for d, s in zip(spatial, size)]
    return np.pad(array, pads) if any(p[1] for p in pads) else array


FOREGROUND_SAMPLINGS = ("class", "voxel")


def random_crop(
    volume: Volume, roi: tuple[int, ...], rng: np.random.Generator, *, foreground_prob: float = 0.0, foreground_sampling: str = "class"
) -> tuple[np.ndarray, np.ndarray]:
    """A crop of ``roi`` from ``volume``: 3D roi -> [C, *roi]; 2D roi -> one axial slice [C, *roi].

    With probability ``foreground_prob`` the crop is centred on a labelled voxel (nnU-Net-style
    foreground oversampling, so small structures are seen during fine-tuning): ONE draw decides, and a
    foreground sample of a 2D roi takes that voxel's slice and centres on it (two independent draws would
    make only ~foreground_prob² of the crops lesion-centred). ``foreground_sampling`` says which voxel:
    ``class`` (nnU-Net's ``class_locations``): one of the label values present in the volume, uniformly, then
    one of its voxels, so a 130-voxel adrenal gland is centred as often as a 8,000-voxel liver; ``voxel``: any
    labelled voxel, uniformly (large structures dominate). A volume without label map (``label`` None) gives
    an all-zero label crop. ``foreground_prob`` 0 draws nothing for the decision.
    """
    image = volume.image
    label = volume.label[None] if volume.label is not None else np.zeros((1, *image.shape[1:]), dtype=np.int64)
    if foreground_sampling not in FOREGROUND_SAMPLINGS:
        raise ValueError(f"foreground_sampling {foreground_sampling!r}; expected one of {FOREGROUND_SAMPLINGS}")
    foreground = foreground_prob > 0 and rng.random() < foreground_prob
    centre = None
    if foreground and foreground_sampling == "class":
        centre = _class_balanced_voxel(volume, rng)  # [x, y, z], or None without any label
    if len(roi) == 2:
        z = int(centre[2]) if centre is not None else _pick_slice(volume, rng, foreground)
        image, label = image[..., z], label[..., z]
        if foreground and foreground_sampling == "voxel":
            points = np.argwhere(label[0] > 0)  # one slice: cheap to scan
            centre = points[rng.integers(len(points))] if len(points) else None
    elif foreground and foreground_sampling == "voxel":  # the whole volume's labelled voxels, from its index when prepared
        points = foreground_points(volume)
        centre = points[rng.integers(len(points))] if len(points) else None
    image, label = _pad_to(image, roi), _pad_to(label, roi)  # trailing zero padding moves no voxel
    spatial = image.shape[1:]
    if centre is not None:
        start = [int(np.clip(c - r // 2, 0, s - r)) for c, r, s in zip(centre, roi, spatial)]
    else:
        start = [int(rng.integers(0, s - r + 1)) for r, s in zip(roi, spatial)]
    window = tuple(slice(a, a + r) for a, r in zip(start, roi))
    # Copies (a prepared volume's crop is a view of its memory map); labels as int64 whatever type they are stored in.
    return np.array(image[(slice(None), *window)], dtype=np.float32), np.array(label[(slice(None), *window)], dtype=np.int64)


# ---- where a volume's content is: from its prepared index, else scanned (the same values either way) -----------
def body_slices(volume: Volume) -> np.ndarray:
    """The axial slices with any non-zero voxel in any channel."""
    if volume.index is not None and volume.index.describes(volume):
        return volume.index.body_slices
    return np.flatnonzero((volume.image != 0).reshape(-1, volume.image.shape[-1]).any(axis=0))


def labelled_slices(volume: Volume) -> np.ndarray:
    """The axial slices with any non-zero label (empty without label map)."""
    if volume.label is None:
        return np.zeros(0, dtype=np.int64)
    if volume.index is not None and volume.index.describes(volume):
        return volume.index.labelled_slices
    return np.flatnonzero(volume.label.reshape(-1, volume.label.shape[-1]).any(axis=0))


def foreground_points(volume: Volume) -> np.ndarray:
    """[K, 3] coordinates of every voxel with label > 0, ordered by label value, then in C order; [0, 3] without
    label map."""
    return foreground_by_class(volume)[0]


def foreground_by_class(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """``foreground_points`` and [M, 2]: each label value present (ascending) and the row where its voxels start."""
    if volume.label is None:
        return np.zeros((0, 3), dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    if volume.index is not None and volume.index.describes(volume):
        return volume.index.foreground, volume.index.foreground_classes
    points = np.argwhere(volume.label > 0)
    values = np.asarray(volume.label)[tuple(points.T)]
    order = np.argsort(values, kind="stable")  # stable: C order within a class
    classes, starts = np.unique(values[order], return_index=True)
    return points[order], np.stack([classes, starts], axis=1).astype(np.int64)


def _class_balanced_voxel(volume: Volume, rng: np.random.Generator) -> np.ndarray | None:
    """One voxel of one label value drawn uniformly among those present (nnU-Net's class-wise oversampling)."""
    points, classes = foreground_by_class(volume)
    if not len(classes):
        return None
    k = int(rng.integers(len(classes)))
    end = int(classes[k + 1, 1]) if k + 1 < len(classes) else len(points)
    return points[int(rng.integers(int(classes[k, 1]), end))]


def _pick_slice(volume: Volume, rng: np.random.Generator, foreground: bool) -> int:
    """An axial slice: a labelled one for a ``foreground`` sample (when the volume has any), else a non-empty one."""
    depth = volume.image.shape[-1]
    if foreground:
        labelled = labelled_slices(volume)
        if labelled.size:
            return int(labelled[rng.integers(labelled.size)])
    body = body_slices(volume)  # skip empty slices
    return int(body[rng.integers(body.size)]) if body.size else int(rng.integers(depth))


class CropDataset(Dataset):
    """``length`` random crops; ``with_label`` adds ``batch["label"]`` [1, *roi] (raw label values).

    ``single_modality``: each sample is ONE channel of the crop, drawn at random, and
    ``batch["modality"]`` is its modality (the metadata DAE's cross-modal contrastive loss pairs
    samples by; the DAE paper pretrains on single-modality volumes): ``modality_ids[i][c]`` for
    channel c of volume i (a corpus of several tasks shares one vocabulary, ``Task.modalities``),
    else the channel index.

    ``augmentation`` (``benchmark.spatial_augmentation.SpatialAugmentation``, fine-tuning): the paper's
    augmentation of each crop, image and label together, seeded by a last draw of the sample's own
    generator, so sample i is augmented alike for every method; None (or policy ``none``): the crop as is.
    """

    def __init__(self, volumes: list[Volume], *, roi, length: int, seed: int, with_label: bool, foreground_prob: float = 0.0,
                 foreground_sampling: str = "class", single_modality: bool = False, modality_ids: list[tuple[int, ...]] | None = None, augmentation=None):
        if not volumes:
            raise BenchmarkInputError("no training cases to sample from; expected at least one")
        if modality_ids is not None and [len(m) for m in modality_ids] != [v.image.shape[0] for v in volumes]:
            raise ValueError("modality_ids: expected one modality id per channel of every volume")
        self.volumes, self.roi, self.length, self.seed = volumes, tuple(roi), length, seed
        self.with_label, self.foreground_prob, self.single_modality = with_label, foreground_prob, single_modality
        self.foreground_sampling = foreground_sampling
        self.modality_ids = modality_ids
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        which = int(rng.integers(len(self.volumes)))
        volume = self.volumes[which]
        image, label = random_crop(volume, self.roi, rng, foreground_prob=self.foreground_prob if self.with_label else 0.0,
                                   foreground_sampling=self.foreground_sampling)
        item = {"image": torch.from_numpy(np.ascontiguousarray(image))}
        if self.single_modality:
            channel = int(rng.integers(image.shape[0]))
            modality = self.modality_ids[which][channel] if self.modality_ids is not None else channel
            item = {"image": item["image"][channel : channel + 1], "modality": torch.tensor(modality)}
        if self.with_label:
            item["label"] = torch.from_numpy(np.ascontiguousarray(label))
        if self.augmentation is not None:  # after every other draw: the crops stay those of an unaugmented dataset
            image, label = self.augmentation(item["image"].numpy(), item["label"].numpy() if self.with_label else None, seed=sample_seed(rng))
            item["image"] = torch.from_numpy(np.ascontiguousarray(image))
            if self.with_label:
                item["label"] = torch.from_numpy(np.ascontiguousarray(label))
        return item


class SourcePoolDataset(Dataset):
    """Source identification pools: ``pool_size`` axial slices [N, C, H, W]; slice 0 is the target.

    CSI draws each slice from a different patient, WSI from one patient (SI paper 5.2.1-5.2.2).
    Within one patient the N slices are drawn WITHOUT replacement (distinct axial positions), so the
    target never reappears as a non-target source. A non-target slice whose foreground does not
    overlap the target's is redrawn, since the paper excludes "all combinations without any
    overlapping between the brain regions" (5.2). When ``max_redraws`` draws all fail, the last one is
    kept (a pool must be returned): that is counted in ``non_overlapping_fallbacks`` and logged
    (``logging`` warning at the 1st, 2nd, 4th, 8th, ... occurrence; per process, so per DataLoader worker).
    """

    max_redraws = 20

    def __init__(self, volumes: list[Volume], *, roi, length: int, seed: int, pool_size: int, same_patient: bool):
        if not same_patient and len(volumes) < pool_size:
            raise BenchmarkInputError(
                f"cross-patient source identification needs >= {pool_size} training cases (N = pool_size), got {len(volumes)}"
            )
        if same_patient:
            short = [v.case_id for v in volumes if v.image.shape[-1] < pool_size]
            if short:
                raise BenchmarkInputError(
                    f"within-patient source identification draws {pool_size} distinct axial slices per patient (N = pool_size); "
                    f"cases {short} have fewer slices"
                )
        self.volumes, self.roi, self.length, self.seed = volumes, tuple(roi), length, seed
        self.pool_size, self.same_patient = pool_size, same_patient
        self.non_overlapping_fallbacks = 0  # pools that kept a non-target without foreground overlap

    def __len__(self) -> int:
        return self.length

    @staticmethod
    def _slice_at(volume: Volume, z: int, roi, rng: np.random.Generator) -> torch.Tensor:
        """The in-plane crop of axial slice ``z`` [C, *roi]: ``random_crop`` on the one-slice volume (same draws)."""
        one = dataclasses.replace(volume, image=volume.image[..., z : z + 1],
                                  label=None if volume.label is None else volume.label[..., z : z + 1])
        return torch.from_numpy(random_crop(one, roi, rng)[0])

    def _fallback(self, index: int) -> None:
        import logging

        self.non_overlapping_fallbacks += 1
        count = self.non_overlapping_fallbacks
        if count & (count - 1) == 0:  # 1, 2, 4, 8, ...
            logging.getLogger(__name__).warning(
                "source pool %d: no non-target slice overlapping the target's foreground after %d draws; kept a "
                "non-overlapping one (%d such pools so far in this process)", index, self.max_redraws, count)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        if self.same_patient:
            return {"sources": torch.stack(self._same_patient_pool(rng, index))}
        patients = rng.choice(len(self.volumes), size=self.pool_size, replace=False).tolist()
        slices = [torch.from_numpy(random_crop(self.volumes[patients[0]], self.roi, rng)[0])]
        for patient in patients[1:]:
            for _ in range(self.max_redraws):
                candidate = torch.from_numpy(random_crop(self.volumes[patient], self.roi, rng)[0])
                if foreground_overlap(slices[0], candidate):
                    break
            else:
                self._fallback(index)
            slices.append(candidate)
        return {"sources": torch.stack(slices)}

    def _same_patient_pool(self, rng: np.random.Generator, index: int) -> list[torch.Tensor]:
        """WSI (and DSI, whose non-targets become noise): N distinct axial slices of one patient.

        The target is drawn exactly as ``random_crop`` draws it (a non-empty slice, then the in-plane
        window), so a DSI pool's target, the only real slice it uses, is unchanged; the non-targets are
        drawn from the slices not yet in the pool and not yet rejected for this position.
        """
        volume = self.volumes[int(rng.integers(len(self.volumes)))]
        depth = volume.image.shape[-1]
        body = body_slices(volume)  # as random_crop's _pick_slice
        z0 = int(body[rng.integers(body.size)]) if body.size else int(rng.integers(depth))
        used = {z0}
        candidates = body.tolist() if body.size else list(range(depth))  # non-targets: non-empty slices, as the target
        slices = [self._slice_at(volume, z0, self.roi, rng)]
        for _ in range(self.pool_size - 1):
            tried: list[int] = []
            overlapping = False
            for _ in range(self.max_redraws):
                free = [z for z in candidates if z not in used and z not in tried]
                if not free:  # every remaining non-empty slice was tried: any unused slice, else stop
                    free = [z for z in range(depth) if z not in used and z not in tried]
                if not free:
                    break
                tried.append(int(free[rng.integers(len(free))]))
                candidate = self._slice_at(volume, tried[-1], self.roi, rng)
                if foreground_overlap(slices[0], candidate):
                    overlapping = True
                    break
            if not overlapping:
                self._fallback(index)  # the last draw is kept
            used.add(tried[-1])
            slices.append(candidate)
        return slices
