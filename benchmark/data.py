"""From a task's volumes (``benchmark.volumes``) to training batches: random crops, SI source pools, corpora.

Every random draw is seeded from (seed, sample index), so a dataset gives the same sample
for the same index in any process; under DDP a DistributedSampler splits the indices.

Augmentation (``benchmark.spatial_augmentation``) is drawn from a seed of its own per sample. In fine-tuning it
is the sample generator's last draw (every method shares the fine-tuning samples anyway). In pretraining it is
``augmentation_seed(seed, index, ...)``, a function of the run seed and the sample index ONLY: methods of one paper
make different crop draws (a label-aware foreground decision, DAE's channel pick, a source pool's redraws), yet
their sample i gets the same augmentation draws, so the paper's methods are compared on equally augmented data.
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
from benchmark.volumes import body_slices, foreground_by_class, foreground_points, labelled_slices, load_volumes
from tasks import get_task
from tasks.base import Volume
from tasks.unlabeled import find_unlabeled_cases


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


# The third word of an augmentation seed's SeedSequence (sample generators use two: (seed, index)), so the
# augmentation stream never coincides with a sample's own stream.
AUGMENTATION_STREAM = 0x417567


def augmentation_seed(seed: int, index: int, *slot: int) -> int:
    """The pretraining augmentation seed of sample ``index`` of a dataset seeded ``seed`` (``slot``: which slice of a
    source pool and which draw of it): independent of every other draw the sample makes (module docstring)."""
    return int(np.random.default_rng((seed, index, AUGMENTATION_STREAM, *slot)).integers(2**31 - 1))


def sample_dims(kind: str, roi) -> int:
    """Spatial dimensions of the samples a pretraining data kind (``DataSpec.kind``) draws with crop size ``roi``:
    source pools are axial slices (2), crops have the roi's."""
    return 2 if kind == "source_pool" else len(roi)


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
        dropped = rng.choice(channels, size=n_drop, replace=False)
        image = v.image.copy()
        image[dropped] = 0.0
        native = v.native
        if native is not None:  # the scored grid misses the same series
            native_image = native.image.copy()
            native_image[dropped] = 0.0
            native = dataclasses.replace(native, image=native_image)
        out.append(dataclasses.replace(v, image=image, native=native))
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

    ``augmentation`` (``benchmark.spatial_augmentation.SpatialAugmentation``): the paper's augmentation of each
    crop, image and label together. Fine-tuning: seeded by a last draw of the sample's own generator, so sample i
    is augmented alike for every method. ``shared_draws`` (pretraining): seeded by ``augmentation_seed(seed, i)``,
    whatever the method's own draws, so every method of a paper gets the same augmentation draws. None (or policy
    ``none``): the crop as is.
    """

    def __init__(self, volumes: list[Volume], *, roi, length: int, seed: int, with_label: bool, foreground_prob: float = 0.0,
                 foreground_sampling: str = "class", single_modality: bool = False, modality_ids: list[tuple[int, ...]] | None = None,
                 augmentation=None, shared_draws: bool = False):
        if not volumes:
            raise BenchmarkInputError("no training cases to sample from; expected at least one")
        if modality_ids is not None and [len(m) for m in modality_ids] != [v.image.shape[0] for v in volumes]:
            raise ValueError("modality_ids: expected one modality id per channel of every volume")
        self.volumes, self.roi, self.length, self.seed = volumes, tuple(roi), length, seed
        self.with_label, self.foreground_prob, self.single_modality = with_label, foreground_prob, single_modality
        self.foreground_sampling = foreground_sampling
        self.modality_ids = modality_ids
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None
        self.shared_draws = shared_draws

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
            seed = augmentation_seed(self.seed, index) if self.shared_draws else sample_seed(rng)
            image, label = self.augmentation(item["image"].numpy(), item["label"].numpy() if self.with_label else None, seed=seed)
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

    ``augmentation`` (SI 5.5.3: "applied to the original 2D images ... for all experiments"): every drawn slice is
    augmented on its own, before the overlap test (the paper measures the brain overlap of augmented slices, section
    6), with the seed ``augmentation_seed(seed, index, position, draw)``: CSI, WSI and DSI draw different slices but
    the same augmentation at each position and draw.
    """

    max_redraws = 20

    def __init__(self, volumes: list[Volume], *, roi, length: int, seed: int, pool_size: int, same_patient: bool, augmentation=None):
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
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None
        self.non_overlapping_fallbacks = 0  # pools that kept a non-target without foreground overlap

    def __len__(self) -> int:
        return self.length

    @staticmethod
    def _slice_at(volume: Volume, z: int, roi, rng: np.random.Generator) -> np.ndarray:
        """The in-plane crop of axial slice ``z`` [C, *roi]: ``random_crop`` on the one-slice volume (same draws)."""
        one = dataclasses.replace(volume, image=volume.image[..., z : z + 1],
                                  label=None if volume.label is None else volume.label[..., z : z + 1])
        return random_crop(one, roi, rng)[0]

    def _source(self, image: np.ndarray, index: int, position: int, draw: int) -> torch.Tensor:
        """A drawn slice [C, *roi] as the pool holds it: augmented (its own seed, see the class docstring) or as is."""
        if self.augmentation is not None:
            image, _ = self.augmentation(image, None, seed=augmentation_seed(self.seed, index, position, draw))
        return torch.from_numpy(np.ascontiguousarray(image))

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
        slices = [self._source(random_crop(self.volumes[patients[0]], self.roi, rng)[0], index, 0, 0)]
        for position, patient in enumerate(patients[1:], start=1):
            for draw in range(self.max_redraws):
                candidate = self._source(random_crop(self.volumes[patient], self.roi, rng)[0], index, position, draw)
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
        slices = [self._source(self._slice_at(volume, z0, self.roi, rng), index, 0, 0)]
        for position in range(1, self.pool_size):
            tried: list[int] = []
            overlapping = False
            for draw in range(self.max_redraws):
                free = [z for z in candidates if z not in used and z not in tried]
                if not free:  # every remaining non-empty slice was tried: any unused slice, else stop
                    free = [z for z in range(depth) if z not in used and z not in tried]
                if not free:
                    break
                tried.append(int(free[rng.integers(len(free))]))
                candidate = self._source(self._slice_at(volume, tried[-1], self.roi, rng), index, position, draw)
                if foreground_overlap(slices[0], candidate):
                    overlapping = True
                    break
            if not overlapping:
                self._fallback(index)  # the last draw is kept
            used.add(tried[-1])
            slices.append(candidate)
        return slices
