"""Bring your own data: any nnU-Net raw dataset folder, as ``--tasks nnunet:PATH`` (Isensee et al. 2021).

Nothing is registered per dataset: ``get_task("nnunet:PATH")`` builds the task from
``PATH/dataset.json`` (tasks/dataset_json.py reads nnU-Net v2, nnU-Net v1 and MSD variants):

* channels: ``channel_names`` (``modality`` in v1 / MSD), in index order;
* labels: every non-background label is an evaluated region with one Dice each. Integer labels
  are disjoint classes (softmax, ``multilabel`` False). If any label is an nnU-Net *region*
  (a list of values, e.g. ``"tumour core": [2, 3]``), the regions may overlap, so the task is
  multi-label: one sigmoid output per region, region k = voxels whose value is in its list;
  ``regions_class_order`` is not needed because we never convert regions back to a label map.
  nnU-Net's ``ignore`` label (sparse annotation) is refused with a clear error;
* normalisation per channel from its name, as nnU-Net's ``get_normalization_scheme``
  (nnunetv2/preprocessing/normalization): ``CT`` clip to the 0.5 / 99.5 percentiles then
  z-score, ``noNorm``, ``rescale_to_0_1``, ``rgb_to_0_1``, anything else z-score (inside the
  non-zero mask when it covers < 3/4 of the image, nnU-Net's ``use_mask_for_norm`` rule).
  Deviation: nnU-Net's CT statistics are dataset-wide, pooled over the labelled foreground of all
  training cases; ours are per case over the whole image, so a worker need not read the whole
  dataset and a test case's label is never looked at.

Names: the task's ``name`` (results, cell ids, leaderboard) is ``nnunet:<folder name>``, readable
and stable across machines; its ``ref`` (what a Ray worker rebuilds it from) is
``nnunet:<absolute path>``. Without ``--data-root`` the data are read from PATH itself.
``nnunet:synthetic`` is a built-in 2-channel nnU-Net v2 dataset (written to the cache in that
layout, read back by the same reader) for trying the bring-your-own-data path without data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, SegmentationTask, register_task_prefix
from tasks.dataset_json import DatasetSpec, find_dataset_cases, parse_spec, read_dataset_json, safe_region_name
from tasks.nifti import save_nifti
from tasks.synthetic import brats_subject

NNUNET_PREFIX = "nnunet:"  # --tasks nnunet:PATH
SYNTHETIC = "synthetic"
LAYOUT = (
    "an nnU-Net raw dataset folder: dataset.json ('channel_names', 'labels', 'file_ending'), "
    "imagesTr/<case>_0000.nii.gz .. _000C (one file per channel), labelsTr/<case>.nii.gz "
    "(or an MSD / nnU-Net v1 dataset.json with 'modality' and a 'training' list)"
)
SYNTHETIC_META = {
    "name": "Dataset900_SyntheticBrain",
    "description": "Synthetic 2-channel brain-tumour dataset in nnU-Net v2 raw layout (medssl-bench)",
    "channel_names": {"0": "T1gd", "1": "FLAIR"},
    "labels": {"background": 0, "edema": 1, "non_enhancing": 2, "enhancing": 3},
    "file_ending": ".nii.gz",
}
_SYNTHETIC_CHANNELS = (1, 3)  # brats_subject gives t1, t1ce, t2, flair -> T1gd, FLAIR
_BRATS_TO_SYNTHETIC = np.array([0, 2, 1, 0, 3], dtype=np.uint8)  # BraTS 1 -> 2, 2 -> 1, 4 -> 3 (MSD-like)


class NnUNetTask(SegmentationTask):
    """One nnU-Net raw dataset folder; its attributes come from the folder's dataset.json."""

    synthetic_cases = 12
    synthetic_shape = (64, 64, 32)

    def __init__(self, path: Path | None = None) -> None:
        if path is None:  # nnunet:synthetic
            meta, where = SYNTHETIC_META, Path(f"<{NNUNET_PREFIX}{SYNTHETIC}>") / "dataset.json"
            self._name = self._ref = NNUNET_PREFIX + SYNTHETIC
            self.description = f"built-in synthetic nnU-Net v2 dataset ({LAYOUT})"
        else:
            # Absolute, so that a Ray worker with another working directory finds the same folder.
            path = Path(path).expanduser().resolve()
            if not path.is_dir():
                raise BenchmarkInputError(f"{NNUNET_PREFIX}{path}: folder does not exist; expected {LAYOUT}")
            meta, where = read_dataset_json(path, expected=LAYOUT), path / "dataset.json"
            self._name, self._ref = NNUNET_PREFIX + path.name, NNUNET_PREFIX + str(path)
            self.default_data_root = path
            self.description = f"nnU-Net dataset {path}: {LAYOUT}"
        self.spec: DatasetSpec = parse_spec(meta, path=where)
        self.channels = self.spec.channels
        self.label_values = self.spec.label_values
        self.multilabel = self.spec.has_regions  # regions may overlap -> one sigmoid per region
        names = [name for name in self.spec.labels if name != self.spec.background]
        self.region_names = tuple(safe_region_name(name) for name in names)
        if len(set(self.region_names)) != len(names):
            raise BenchmarkInputError(f"{where}: label names {names} collide as metric names {list(self.region_names)}; expected distinct names")
        self._region_values = [self.spec.labels[name] for name in names]

    @classmethod
    def from_ref(cls, ref: str) -> "NnUNetTask":
        """``nnunet:PATH`` -> the task of that folder; ``nnunet:synthetic`` -> the built-in dataset."""
        text = ref[len(NNUNET_PREFIX):].strip()
        if not text:
            raise BenchmarkInputError(f"task {ref!r}: expected {NNUNET_PREFIX}PATH, PATH being {LAYOUT}")
        return cls(None if text == SYNTHETIC else Path(text))

    @property
    def name(self) -> str:
        return self._name

    @property
    def ref(self) -> str:
        return self._ref

    # ---- dataset-specific parts -------------------------------------------------------------
    def find_cases(self, root: Path) -> list[Case]:
        root = Path(root)
        meta = read_dataset_json(root, expected=LAYOUT)
        path = root / "dataset.json"
        spec = parse_spec(meta, path=path)
        if spec != self.spec:  # --data-root pointing at another dataset than the one the task was built from
            raise BenchmarkInputError(
                f"{path}: channels {list(spec.channels)} and labels {spec.labels}; expected those of task {self.name!r}: "
                f"channels {list(self.spec.channels)}, labels {self.spec.labels}"
            )
        return find_dataset_cases(root, meta, spec, path=path)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        nonzero = (image != 0).any(axis=0)
        mask = nonzero if nonzero.mean() < 0.75 else None  # nnU-Net: mask when cropping to non-zero saves >= 1/4
        return np.stack([normalize_channel(image[c], scheme=name, mask=mask) for c, name in enumerate(self.channels)])

    def label_to_regions(self, label: torch.Tensor) -> torch.Tensor:
        regions = [torch.isin(label[:, 0], torch.tensor(values, device=label.device)) for values in self._region_values]
        return torch.stack(regions, dim=1)  # [B, K, *spatial]

    def write_synthetic(self, root: Path, *, n_cases: int, shape: tuple[int, int, int], seed: int) -> None:
        """A 2-channel nnU-Net v2 dataset from brats_subject anatomy, labels 0..3 (MSD-like order)."""
        rng = np.random.default_rng(seed)
        affine = np.diag([240.0 / shape[0], 240.0 / shape[1], 155.0 / shape[2], 1.0])
        for i in range(n_cases):
            case = f"Synth_{i:03d}"
            image, label = brats_subject(shape, rng)
            for c, source in enumerate(_SYNTHETIC_CHANNELS):
                save_nifti(image[source], root / "imagesTr" / f"{case}_{c:04d}.nii.gz", affine=affine)
            save_nifti(_BRATS_TO_SYNTHETIC[label], root / "labelsTr" / f"{case}.nii.gz", affine=affine)
        root.mkdir(parents=True, exist_ok=True)
        (root / "dataset.json").write_text(json.dumps({**SYNTHETIC_META, "numTraining": n_cases}, indent=4))


def normalize_channel(x: np.ndarray, *, scheme: str, mask: np.ndarray | None) -> np.ndarray:
    """One channel [X, Y, Z] normalised by nnU-Net's scheme for its channel name (case-insensitive)."""
    scheme = scheme.casefold()
    if scheme == "ct":
        x = np.clip(x, *np.percentile(x, [0.5, 99.5]))
        return (x - x.mean()) / max(float(x.std()), 1e-8)
    if scheme == "nonorm":
        return x
    if scheme == "rescale_to_0_1":
        x = x - x.min()
        return x / max(float(x.max()), 1e-8)
    if scheme == "rgb_to_0_1":
        return x / 255.0
    if mask is None:  # "zscore" and every other name
        return (x - x.mean()) / max(float(x.std()), 1e-8)
    out = np.zeros_like(x)
    values = x[mask]
    out[mask] = (values - values.mean()) / max(float(values.std()), 1e-8)
    return out


@register_task_prefix(NNUNET_PREFIX, usage=f"{NNUNET_PREFIX}PATH", kind="segmentation",
                      help="any nnU-Net raw dataset folder (dataset.json, imagesTr/, labelsTr/); nnunet:synthetic: a built-in one")
def nnunet_task(ref: str) -> NnUNetTask:
    return NnUNetTask.from_ref(ref)
