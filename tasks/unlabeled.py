"""Extra unlabeled cases for pretraining only (``--pretrain-extra [TASK=]PATH``).

The SI paper's protocol pretrains on the task's training cases; its semi-supervised setting
can also use cases that have no labels at all (e.g. a challenge's validation release). Those
come in no fixed layout, so one generic layout is read for every task:

    PATH/<case>/<channel>.nii.gz     one file per channel of the task, named as the task's channels
                                     (case-insensitive; e.g. t1.nii.gz, t1ce.nii.gz, t2.nii.gz, flair.nii.gz
                                     for brats, ct.nii.gz for btcv)

They are normalised like the task's own cases, never fine-tuned on or tested, and their ids
are prefixed with ``unlabeled:`` so they cannot collide with the task's case ids.
"""
from __future__ import annotations

from pathlib import Path

from benchmark.errors import BenchmarkInputError
from tasks.base import Case, Task
from tasks.nifti import load_nifti, nifti_shape

PREFIX = "unlabeled:"


def _channel_file(folder: Path, channel: str) -> Path | None:
    wanted = {f"{channel.lower()}.nii.gz", f"{channel.lower()}.nii"}
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() in wanted), None)


def layout_help(task: Task) -> str:
    return f"PATH/<case>/{{{','.join(task.channels)}}}.nii.gz (one file per channel of task {task.name!r})"


def find_unlabeled_cases(task: Task, root: Path) -> list[Case]:
    """Cases of the generic layout (module docstring); a case folder missing a channel is an error naming it."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchmarkInputError(f"--pretrain-extra {root}: folder does not exist; expected {layout_help(task)}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise BenchmarkInputError(f"--pretrain-extra {root}: no case folders; expected {layout_help(task)}")
    cases = []
    for folder in folders:
        images = []
        for channel in task.channels:
            path = _channel_file(folder, channel)
            if path is None:
                raise BenchmarkInputError(f"{folder}: unlabeled case {folder.name!r} has no {channel!r} image; "
                                          f"expected {folder / f'{channel}.nii.gz'}")
            images.append(path)
        cases.append(Case(case_id=f"{PREFIX}{folder.name}", images=tuple(images), label=None))
    return cases


def check_unlabeled_cases(cases: list[Case]) -> None:
    """Every file reads (NIfTI or MetaImage) with finite intensities, and a case's channels share one voxel grid."""
    for case in cases:
        shapes = {path: nifti_shape(path)[:3] for path in case.images}
        first = case.images[0]
        for path, shape in shapes.items():
            if shape != shapes[first]:
                raise BenchmarkInputError(f"{path}: shape {shape} differs from {first} {shapes[first]}; expected one voxel grid per case")
        for path in case.images:
            Task._check_finite(path, load_nifti(path)[0])
