"""The ``dataset.json`` layouts of the Medical Segmentation Decathlon and nnU-Net, read one way.

Three variants exist in the wild, and users have all of them on disk:

* MSD (Antonelli et al. 2022, http://medicaldecathlon.com): ``"modality" {"0": "FLAIR", ...}``,
  ``"labels" {"0": "background", ...}``, ``"training" [{"image": "./imagesTr/X.nii.gz",
  "label": "./labelsTr/X.nii.gz"}]``; a multi-channel case is ONE 4D NIfTI [X, Y, Z, C].
* nnU-Net v1 ``Task0XX_*``: the same dataset.json, but each case split into one 3D file per
  channel, ``imagesTr/X_0000.nii.gz``, ``X_0001.nii.gz``, ... (nnU-Net v1 dataset_conversion).
* nnU-Net v2 ``Dataset0XX_*`` (nnU-Net documentation/dataset_format.md): ``"channel_names"
  {"0": "T2", ...}``, ``"labels" {"background": 0, "tumour": 1}`` (a list of values for a
  region), ``"file_ending"``, ``"numTraining"``; cases are the ``imagesTr/<case>_XXXX<ending>``
  files, or the optional ``"dataset"`` mapping of case -> {"images": [...], "label": ...}.

Every mismatch raises one BenchmarkInputError naming the file and what was expected.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkInputError
from tasks.base import Case

NIFTI_ENDINGS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset.json declares: channel names in index order and label name -> raw values."""

    channels: tuple[str, ...]
    labels: dict[str, tuple[int, ...]]  # in file order; one value per label, several for an nnU-Net region
    background: str  # the label whose value is 0

    @property
    def has_regions(self) -> bool:
        return any(len(values) > 1 for values in self.labels.values())

    @property
    def label_values(self) -> tuple[int, ...]:
        """Every raw value a label file may contain (0 included)."""
        return tuple(sorted({0, *(v for values in self.labels.values() for v in values)}))


def read_dataset_json(root: Path, *, expected: str) -> dict:
    """``root/dataset.json`` parsed; a missing or malformed file names the path and the layout."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise BenchmarkInputError(f"{path}: not found; expected {expected}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchmarkInputError(f"{path}: could not be read as JSON ({exc}); expected {expected}") from None
    if not isinstance(meta, dict):
        raise BenchmarkInputError(f"{path}: expected a JSON object with 'labels' and 'channel_names' or 'modality'")
    return meta


def parse_spec(meta: dict, *, path: Path) -> DatasetSpec:
    """Channels and labels of an MSD / nnU-Net v1 (``modality``) or nnU-Net v2 (``channel_names``) dataset.json."""
    if "channel_names" in meta:
        channels = _indexed(meta["channel_names"], key="channel_names", path=path)
        labels = _labels_v2(meta.get("labels"), path=path)
    elif "modality" in meta:
        channels = _indexed(meta["modality"], key="modality", path=path)
        labels = _labels_v1(meta.get("labels"), path=path)
    else:
        raise BenchmarkInputError(f"{path}: has neither 'channel_names' (nnU-Net v2) nor 'modality' (MSD / nnU-Net v1)")
    background = [name for name, values in labels.items() if values == (0,)]
    if len(background) != 1:
        raise BenchmarkInputError(f"{path}: 'labels' {meta['labels']}: expected exactly one background label with value 0")
    singles = [values[0] for values in labels.values() if len(values) == 1]
    if len(set(singles)) != len(singles):
        raise BenchmarkInputError(f"{path}: 'labels' {meta['labels']}: two labels share a value; expected one value per label")
    return DatasetSpec(channels=channels, labels=labels, background=background[0])


def _indexed(mapping, *, key: str, path: Path) -> tuple[str, ...]:
    """{"0": "T2", "1": "ADC"} -> ("T2", "ADC"); keys must be 0..C-1."""
    if not isinstance(mapping, dict) or not mapping:
        raise BenchmarkInputError(f"{path}: '{key}' {mapping!r}: expected a non-empty mapping like {{\"0\": \"T2\"}}")
    if sorted(mapping) != sorted(str(i) for i in range(len(mapping))):
        raise BenchmarkInputError(f"{path}: '{key}' keys {sorted(mapping)}: expected \"0\" .. \"{len(mapping) - 1}\"")
    return tuple(str(mapping[str(i)]) for i in range(len(mapping)))


def _labels_v1(mapping, *, path: Path) -> dict[str, tuple[int, ...]]:
    """MSD / nnU-Net v1: {"0": "background", "1": "edema"} (value -> name)."""
    if not isinstance(mapping, dict) or not mapping:
        raise BenchmarkInputError(f"{path}: 'labels' {mapping!r}: expected a mapping like {{\"0\": \"background\", \"1\": \"tumour\"}}")
    labels = {}
    for value, name in mapping.items():
        if not re.fullmatch(r"\d+", str(value)):
            raise BenchmarkInputError(f"{path}: 'labels' key {value!r}: expected a non-negative integer (MSD labels map value -> name)")
        labels[str(name)] = (int(value),)
    return labels


def _labels_v2(mapping, *, path: Path) -> dict[str, tuple[int, ...]]:
    """nnU-Net v2: {"background": 0, "tumour": 1} (name -> value), or name -> [values] for a region."""
    if not isinstance(mapping, dict) or not mapping:
        raise BenchmarkInputError(f"{path}: 'labels' {mapping!r}: expected a mapping like {{\"background\": 0, \"tumour\": 1}}")
    if "ignore" in mapping:
        # nnU-Net's ignore label marks unannotated voxels (sparse annotation); our losses and Dice
        # would treat it as a class, so refuse rather than train on it silently.
        raise BenchmarkInputError(f"{path}: 'labels' has an 'ignore' label (sparse annotations); expected fully annotated labels")
    labels = {}
    for name, value in mapping.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise BenchmarkInputError(f"{path}: label {name!r}: {value!r}; expected a non-negative integer or a list of them (a region)")
        labels[str(name)] = tuple(values)
    return labels


def safe_region_name(name: str) -> str:
    """'non-enhancing tumor' -> 'non_enhancing_tumor': region names become metric names (dice_<name>)."""
    return re.sub(r"\W+", "_", name).strip("_") or "label"


# ---- cases ----------------------------------------------------------------------------------------
def find_dataset_cases(root: Path, meta: dict, spec: DatasetSpec, *, path: Path) -> list[Case]:
    """The labelled cases of an MSD / nnU-Net dataset folder, in case-id order."""
    if "training" in meta and "channel_names" not in meta:
        cases = _cases_from_training_list(root, meta["training"], n_channels=len(spec.channels), path=path)
    elif "dataset" in meta:
        cases = _cases_from_dataset_mapping(root, meta["dataset"], n_channels=len(spec.channels), path=path)
    elif "channel_names" in meta:
        cases = _cases_from_images_tr(root, meta, n_channels=len(spec.channels), path=path)
    else:
        raise BenchmarkInputError(f"{path}: has no 'training' list; expected the MSD layout with \"training\": [{{\"image\": ..., \"label\": ...}}]")
    if not cases:
        raise BenchmarkInputError(f"{root}: no labelled cases listed in {path} or found in imagesTr/; expected at least two")
    ids = [c.case_id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise BenchmarkInputError(f"{path}: case ids {duplicates} appear more than once; expected one entry per case")
    return sorted(cases, key=lambda c: c.case_id)


def _strip_nifti(name: str) -> str | None:
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return None


def _cases_from_training_list(root: Path, training, *, n_channels: int, path: Path) -> list[Case]:
    """MSD / nnU-Net v1 ``"training"`` list: the listed image is one (4D) file, or split into _XXXX files."""
    if not isinstance(training, list):
        raise BenchmarkInputError(f"{path}: 'training' is {type(training).__name__}; expected a list of {{\"image\": ..., \"label\": ...}}")
    cases = []
    for entry in training:
        if not (isinstance(entry, dict) and isinstance(entry.get("image"), str) and isinstance(entry.get("label"), str)):
            raise BenchmarkInputError(f"{path}: 'training' entry {entry!r}: expected {{\"image\": \"./imagesTr/X.nii.gz\", \"label\": \"./labelsTr/X.nii.gz\"}}")
        image, label = root / entry["image"], root / entry["label"]
        if image.name.startswith("._"):  # macOS AppleDouble files (the MSD tars contain them): not data
            continue
        case_id = _strip_nifti(image.name)
        if case_id is None:
            raise BenchmarkInputError(f"{path}: 'training' image {entry['image']!r}: expected a .nii.gz or .nii file")
        if image.is_file():
            # MSD: one file per case; several channels are the 4th axis [X, Y, Z, C].
            images, channels_last = (image,), n_channels > 1
        else:
            # nnU-Net v1: the listed name is split into <case>_0000.nii.gz, <case>_0001.nii.gz, ...
            ending = image.name[len(case_id):]
            images, channels_last = tuple(image.parent / f"{case_id}_{c:04d}{ending}" for c in range(n_channels)), False
            if not images[0].is_file():
                raise BenchmarkInputError(
                    f"{image}: listed in {path} 'training' but not found (nor split per channel as {images[0].name}); "
                    "expected every listed case on disk"
                )
            _require_channels(images, case_id=case_id, path=path)
        if not label.is_file():
            raise BenchmarkInputError(f"{label}: listed in {path} 'training' but not found; expected the label of case {case_id!r}")
        cases.append(Case(case_id=case_id, images=images, label=label, channels_last=channels_last))
    return cases


def _require_channels(images: tuple[Path, ...], *, case_id: str, path: Path) -> None:
    for c, image in enumerate(images):
        if not image.is_file():
            raise BenchmarkInputError(
                f"{image}: not found; case {case_id!r} lacks channel {c} of the {len(images)} that {path} declares"
            )


def _cases_from_dataset_mapping(root: Path, mapping, *, n_channels: int, path: Path) -> list[Case]:
    """nnU-Net v2 ``"dataset"``: case -> {"images": [...], "label": ...}, paths relative to the folder or absolute."""
    if not isinstance(mapping, dict):
        raise BenchmarkInputError(f"{path}: 'dataset' is {type(mapping).__name__}; expected case -> {{\"images\": [...], \"label\": ...}}")
    def resolve(text: str) -> Path:  # as nnU-Net v2: $VARS expanded, relative paths from the dataset folder
        expanded = Path(os.path.expandvars(text))
        return expanded if expanded.is_absolute() else root / expanded

    cases = []
    for case_id, entry in mapping.items():
        images = entry.get("images") if isinstance(entry, dict) else None
        if not (isinstance(images, list) and isinstance(entry.get("label"), str)) or len(images) != n_channels:
            raise BenchmarkInputError(f"{path}: 'dataset' entry {case_id!r}: expected {{\"images\": [{n_channels} paths], \"label\": path}}")
        images = tuple(resolve(p) for p in images)
        _require_channels(images, case_id=case_id, path=path)
        label = resolve(entry["label"])
        if not label.is_file():
            raise BenchmarkInputError(f"{label}: listed in {path} 'dataset' but not found; expected the label of case {case_id!r}")
        cases.append(Case(case_id=str(case_id), images=images, label=label))
    return cases


def _cases_from_images_tr(root: Path, meta: dict, *, n_channels: int, path: Path) -> list[Case]:
    """nnU-Net v2 default: imagesTr/<case>_XXXX<ending> (XXXX = channel) with labelsTr/<case><ending>."""
    ending = meta.get("file_ending")
    if ending not in NIFTI_ENDINGS:
        raise BenchmarkInputError(f"{path}: 'file_ending' {ending!r}; expected one of {', '.join(NIFTI_ENDINGS)} (NIfTI)")
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir():
        raise BenchmarkInputError(f"{images_dir}: folder not found; expected imagesTr/<case>_0000{ending} next to {path}")
    pattern = re.compile(r"(.+)_(\d{4})" + re.escape(ending))
    channels: dict[str, dict[int, Path]] = {}
    for file in sorted(images_dir.iterdir()):
        if file.name.startswith("._") or not file.name.endswith(ending):  # macOS AppleDouble files, notes, ...
            continue
        match = pattern.fullmatch(file.name)
        if match is None:
            raise BenchmarkInputError(f"{file}: expected a name <case>_XXXX{ending} with a 4-digit channel index")
        index = int(match.group(2))
        if index >= n_channels:
            raise BenchmarkInputError(f"{file}: channel {index}, but {path} declares {n_channels} channel(s) (_0000 .. _{n_channels - 1:04d})")
        channels.setdefault(match.group(1), {})[index] = file
    cases = []
    for case_id, files in channels.items():
        images = tuple(files.get(c, images_dir / f"{case_id}_{c:04d}{ending}") for c in range(n_channels))
        _require_channels(images, case_id=case_id, path=path)
        label = labels_dir / f"{case_id}{ending}"
        if not label.is_file():
            raise BenchmarkInputError(f"{images[0]}: no matching label; expected {label}")
        cases.append(Case(case_id=case_id, images=images, label=label))
    expected = meta.get("numTraining")
    if isinstance(expected, int) and cases and expected != len(cases):
        # nnU-Net's verify_dataset_integrity makes the same check: it catches an incomplete copy.
        raise BenchmarkInputError(f"{path}: 'numTraining' is {expected} but {images_dir} holds {len(cases)} case(s); expected them to agree")
    return cases
