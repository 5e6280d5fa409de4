"""A case's volume as the suite reads it: decoded and normalised by its task, resampled to the profile's grid or
given its paper's in-plane pre-processing (``load_volumes``), and the per-volume indices the samplers draw from
(body and labelled slices, foreground voxels by class). Below ``benchmark.prepared``, which stores exactly these values
once per case, and ``benchmark.data``, which samples from them."""
from __future__ import annotations

import dataclasses

import numpy as np

from tasks.base import Case, Task, Volume


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
        return [inplane_resize(v, size) for v in volumes]
    if mode == "crop_pad":
        return [_crop_pad_inplane(v, size) for v in volumes]
    raise ValueError(f"task {task.name}: unknown in-plane pre-processing {mode!r}; expected 'resize' or 'crop_pad'")


def _resize(v: Volume, size: tuple[int, int, int]) -> Volume:
    """Resample image (trilinear) and label (nearest) to ``size`` voxels (MONAI Resize).

    The label's nearest neighbour is torch's "nearest-exact": it samples at the voxel centres, as the image's linear
    mode does (torch's plain "nearest" samples half a voxel off them at non-integer factors, so the label drifted
    from its image; at integer upscaling factors both agree)."""
    if tuple(v.image.shape[1:]) == size:
        return v
    from monai.transforms import Resize

    image = np.asarray(Resize(spatial_size=size, mode="trilinear")(v.image), dtype=np.float32)
    label = None if v.label is None else np.asarray(Resize(spatial_size=size, mode="nearest-exact")(v.label[None].astype(np.float32)))[0].round().astype(np.int64)
    # Same field of view on fewer/more voxels: each voxel's size scales by old / new count.
    spacing = tuple(s * old / new for s, old, new in zip(v.spacing, v.image.shape[1:], size))
    return dataclasses.replace(v, image=image, label=label, spacing=spacing)


def inplane_resize(v: Volume, size: tuple[int, int]) -> Volume:
    """The paper's in-plane resampling (``Task.inplane`` "resize"): every axial slice to ``size`` (``_resize``), the
    case's own grid kept as ``Volume.native`` when it changed (the metrics are computed there)."""
    resampled = _resize(v, (*size, v.image.shape[3]))
    return v if resampled is v else dataclasses.replace(resampled, native=v)


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
