"""Where each task's data comes from: a user's folder (``--data-root``) or the built-in synthetic set.

The synthetic set is written once into the cache in the task's real layout (atomically: a
temp folder renamed into place) and then read through the same reader as real data.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import tasks.synthetic
from benchmark.errors import BenchmarkInputError
from benchmark.store import write_folder_once
from tasks import Case, Task
from tasks.unlabeled import check_unlabeled_cases, find_unlabeled_cases

SYNTHETIC_SEED = 2024


@dataclass
class TaskData:
    """A task with its resolved data folder and cases (real or synthetic), as ``resolve_task_data`` finds them."""

    task: Task
    root: Path
    cases: list[Case]
    synthetic: bool
    fingerprint: str
    extra_root: Path | None = None  # --pretrain-extra: unlabeled cases for pretraining only
    extra_cases: list[Case] = field(default_factory=list)


def _generator_version(task: Task) -> str:
    """Changes whenever the synthetic generator or the task's writer changes, invalidating old copies.

    A task may name further modules its writer depends on (``synthetic_modules``, e.g. the
    classification tasks' generators); tasks without them keep their old cache names.
    """
    source = inspect.getsource(tasks.synthetic) + inspect.getsource(type(task).write_synthetic)
    source += "".join(inspect.getsource(importlib.import_module(name)) for name in getattr(task, "synthetic_modules", ()))
    return hashlib.sha256(source.encode()).hexdigest()[:10]


def synthetic_root(task: Task, cache_dir: Path) -> Path:
    """Write (once) and return the folder of the task's synthetic dataset."""
    shape = task.synthetic_shape
    name = f"{task.name}-n{task.synthetic_cases}-{'x'.join(map(str, shape))}-{_generator_version(task)}"
    return write_folder_once(Path(cache_dir) / "synthetic" / name,
                             lambda tmp: task.write_synthetic(tmp, n_cases=task.synthetic_cases, shape=shape, seed=SYNTHETIC_SEED))


def fingerprint(cases) -> str:
    """Paths, sizes and modification times of every file, and the class of classification cases (read
    from a CSV, not a file of the case): changes if the data changes."""
    h = hashlib.sha256()
    for case in cases:
        for path in (*case.images, *([case.label] if case.label is not None else [])):
            st = Path(path).stat()
            h.update(f"{path}|{st.st_size}|{int(st.st_mtime)}".encode())
        if case.target is not None:
            h.update(f"target={case.target}".encode())
    return h.hexdigest()[:16]


def resolve_task_data(task: Task, *, data_root: Path | None, cache_dir: Path, recheck: bool = False) -> TaskData:
    """Find and check the task's cases up front (layout, shapes, label values) before any training.

    ``recheck`` reads every file even if an earlier check of the same files passed (--check-data).
    """
    synthetic = data_root is None
    if synthetic:
        root = synthetic_root(task, cache_dir)
    else:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise BenchmarkInputError(f"--data-root {root}: folder does not exist; expected {task.description}")
        if not any(root.iterdir()):
            raise BenchmarkInputError(f"--data-root {root}: folder is empty; expected {task.description}")
    cases = task.find_cases(root)
    if not cases:
        raise BenchmarkInputError(f"{root}: no {task.name} cases found; expected {task.description}")
    data_fingerprint = fingerprint(cases)
    # Reading every file is the only way to catch a truncated .nii.gz or NaNs up front; a marker
    # keyed by the files' paths, sizes and times skips the re-read when nothing has changed.
    marker = Path(cache_dir) / "validated" / f"{task.name}-{data_fingerprint}"
    if recheck or not marker.exists():
        task.check_cases(cases, root=root)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return TaskData(task=task, root=root, cases=cases, synthetic=synthetic, fingerprint=data_fingerprint)


def attach_unlabeled(td: TaskData, extra_root: Path, *, cache_dir: Path, recheck: bool = False) -> TaskData:
    """Add ``--pretrain-extra`` cases (tasks/unlabeled.py) to ``td``, checked up front like the task's own."""
    extra = find_unlabeled_cases(td.task, extra_root)
    extra_fingerprint = fingerprint(extra)
    marker = Path(cache_dir) / "validated" / f"{td.task.name}-unlabeled-{extra_fingerprint}"
    if recheck or not marker.exists():
        check_unlabeled_cases(extra)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    td.extra_root, td.extra_cases = Path(extra_root).expanduser(), extra
    td.fingerprint = f"{td.fingerprint}+{extra_fingerprint}"  # pretraining cache keys change with the extra data
    return td
