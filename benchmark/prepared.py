"""Preprocess once, read lazily: the prepared, memory-mapped copy of a task's volumes.

Decoding a BraTS subject's NIfTI files and giving it the paper pre-processing takes about 2 s and 0.15 GB; doing it
in every Job and every DDP worker, for every train, validation and test case, does not survive a real dataset. So,
as nnU-Net's preprocessed folder does, each case is decoded, reoriented, normalised and pre-processed
(``benchmark.volumes.load_volumes``: the same function, so the values are the same) ONCE per (file content,
pre-processing settings) and written as ``.npy`` arrays::

    <cache>/prepared/<task>-<settings hash>/<quoted case id>-<file fingerprint>/
        image.npy            float32 [C, X, Y, Z]
        label.npy            the label map in the smallest integer type that holds its values (absent: no label map)
        body_slices.npy         axial slices with any non-zero voxel   } the VolumeIndex (tasks.base): what the
        labelled_slices.npy     axial slices with any label            } samplers would otherwise scan the whole
        foreground.npy          [K, 3] labelled voxels (label > 0) by  } volume for, for every sample
                                label value, then in C order           }
        foreground_classes.npy  [M, 2] each label value present and    }
                                its first row in foreground.npy        }
        meta.json            case id, spacing, class, shapes, format version
        native_image.npy     the case on its own grid, when the paper's in-plane pre-processing resampled it
        native_label.npy     (``Volume.native``: HIE's metrics are computed there); its spacing in meta.json

Each case folder is written once, atomically (``benchmark.store.write_folder_once``), so concurrent Jobs, runs and
workers share it and never see half of it. The settings hash covers the task's reader and normalisation code,
the pre-processing code and its settings (``volume_size``, the task's in-plane pre-processing); the file
fingerprint covers the case's files (paths, sizes, modification times): a changed file or a changed reader gets a
new folder. Workers open the arrays memory-mapped (``np.load(mmap_mode="c")``): a crop or a sliding window reads
only the pages it touches, the page cache is shared by every process on the node, and a Job's own memory is that
of its batches, not of its dataset.

``prepare_cases`` fills the folders of many cases in parallel (a process pool) with progress lines;
``open_volumes`` opens them, preparing in the worker whatever is missing.

On a storage that is not a local path (``--storage s3://...``, ``benchmark.storage``) the driver prepares into its
local cache and ``publish_cases`` copies every case folder to ``<storage>/prepared/`` (``meta.json`` last, so a
folder with its ``meta.json`` is complete). A Job carries each of its cases' folder names (``case_locations``), so a
worker reads them without seeing the data folders: ``read_cases`` copies a case folder once into its node's own
cache (``benchmark.storage.node_cache_dir``) and memory-maps that copy.

A prepared copy is never trusted blindly: opening it reads ``meta.json`` and maps every array, which fails on a
truncated or missing file (numpy checks the file holds the header's shape); such a copy is reported with its path,
removed, and prepared (or copied) again.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import json
import multiprocessing
import shutil
import sys
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import numpy as np
import torch

import benchmark.volumes as preprocessing
import tasks.intensity
import tasks.nifti
from benchmark import storage
from benchmark.datasources import fingerprint
from benchmark.store import write_folder_once
from tasks import Case, Task, Volume, get_task
from tasks.base import VolumeIndex

# 2: foreground voxels ordered by label value, foreground_classes; 3: the native grid of a resampled case (native_image.npy,
# native_label.npy, native_spacing)
FORMAT_VERSION = 3
PROGRESS_EVERY_S = 10.0
_ARRAYS = ("image", "label", "body_slices", "labelled_slices", "foreground", "foreground_classes")


def settings_hash(task: Task, *, volume_size: tuple[int, int, int] | None) -> str:
    """Changes when anything that shapes a prepared array does: the reader and normalisation of the task (the
    modules of its class and of its bases in ``tasks``), the NIfTI and intensity helpers, the pre-processing
    functions and their settings, and this module's format."""
    modules = {cls.__module__ for cls in type(task).__mro__ if cls.__module__.split(".")[0] == "tasks"}
    sources = [inspect.getsource(sys.modules[name]) for name in sorted(modules)]
    sources += [inspect.getsource(m) for m in (tasks.nifti, tasks.intensity)]
    sources += [inspect.getsource(f) for f in (preprocessing.load_volumes, preprocessing._resize, preprocessing.inplane_resize,
                                               preprocessing._crop_pad_inplane)]
    settings = json.dumps({"ref": task.ref, "channels": list(task.channels), "inplane": task.inplane, "volume_size": volume_size,
                           "format": FORMAT_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256("\n".join([settings, *sources]).encode()).hexdigest()[:12]


def prepared_dir(cache_dir: Path) -> Path:
    """The folder of every task's prepared cases under a cache (a Job carries it as ``prepared_dir``)."""
    return Path(cache_dir) / "prepared"


def prepared_root(folder: str | Path, task: Task, *, volume_size: tuple[int, int, int] | None) -> Path:
    """Where ``task``'s cases live in the prepared ``folder`` (``prepared_dir``) once prepared with these settings."""
    return Path(folder) / f"{task.name}-{settings_hash(task, volume_size=volume_size)}"


def case_folder(root: Path, case: Case) -> Path:
    """The folder of ``case``: its id (quoted: any character is safe) and its files' fingerprint."""
    return Path(root) / f"{quote(case.case_id, safe='')}-{fingerprint([case])}"


def is_prepared(root: Path, case: Case) -> bool:
    return case_folder(root, case).is_dir()


def smallest_int_dtype(label: np.ndarray) -> np.dtype:
    """The smallest integer type that holds every value of ``label`` (uint8 for the usual 0..255 label maps)."""
    lo, hi = (int(label.min()), int(label.max())) if label.size else (0, 0)
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def write_case(folder: Path, volume: Volume) -> None:
    """Write one pre-processed volume and its index into ``folder`` (a temp folder ``write_folder_once`` renames)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "image.npy", np.ascontiguousarray(volume.image, dtype=np.float32))
    label_dtype = None
    if volume.label is not None:
        label_dtype = smallest_int_dtype(volume.label)
        np.save(folder / "label.npy", np.ascontiguousarray(volume.label.astype(label_dtype)))
    np.save(folder / "body_slices.npy", preprocessing.body_slices(volume))
    np.save(folder / "labelled_slices.npy", preprocessing.labelled_slices(volume))
    points, classes = preprocessing.foreground_by_class(volume)
    np.save(folder / "foreground.npy", points.astype(np.int32 if max(volume.image.shape) < 2**31 else np.int64))
    np.save(folder / "foreground_classes.npy", classes.astype(np.int64))
    meta = {"case_id": volume.case_id, "spacing": list(map(float, volume.spacing)), "target": volume.target, "shape": list(volume.image.shape),
            "label_dtype": None if label_dtype is None else label_dtype.name, "format": FORMAT_VERSION}
    if volume.native is not None:
        native = volume.native
        np.save(folder / "native_image.npy", np.ascontiguousarray(native.image, dtype=np.float32))
        if native.label is not None:
            np.save(folder / "native_label.npy", np.ascontiguousarray(native.label.astype(smallest_int_dtype(native.label))))
        meta["native_spacing"] = list(map(float, native.spacing))
    (folder / "meta.json").write_text(json.dumps(meta, sort_keys=True))


def prepare_case(task: Task, case: Case, root: Path, *, volume_size: tuple[int, int, int] | None) -> Path:
    """Decode and pre-process ``case`` into its folder unless it is there already; returns the folder."""
    folder = case_folder(root, case)
    if folder.is_dir():
        return folder
    return write_folder_once(folder, lambda tmp: write_case(tmp, preprocessing.load_volumes(task, [case], volume_size=volume_size)[0]))


def open_case(folder: Path) -> Volume:
    """The prepared volume in ``folder``, its arrays memory-mapped (copy-on-write: a reader may write to its own
    copy of a page, never to the file) and its index attached."""
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="c") if (folder / f"{name}.npy").exists() else None for name in _ARRAYS}
    index = VolumeIndex(image=arrays["image"], label=arrays["label"], body_slices=np.asarray(arrays["body_slices"]),
                        labelled_slices=np.asarray(arrays["labelled_slices"]), foreground=arrays["foreground"],
                        foreground_classes=np.asarray(arrays["foreground_classes"]))
    native = None
    if "native_spacing" in meta:
        label_path = folder / "native_label.npy"
        native = Volume(case_id=meta["case_id"], image=np.load(folder / "native_image.npy", mmap_mode="c"),
                        label=np.load(label_path, mmap_mode="c") if label_path.exists() else None, spacing=tuple(meta["native_spacing"]),
                        target=meta["target"])
    return Volume(case_id=meta["case_id"], image=arrays["image"], label=arrays["label"], spacing=tuple(meta["spacing"]),
                  target=meta["target"], index=index, native=native)


class CorruptPreparedCase(Exception):
    """A prepared case folder that does not open (a truncated or missing array, an unreadable ``meta.json``)."""


def open_checked(folder: Path) -> Volume:
    """``open_case``, raising ``CorruptPreparedCase`` (naming the folder) when the copy does not open."""
    try:
        return open_case(folder)
    except (OSError, ValueError, KeyError, EOFError) as exc:  # numpy: "mmap length is greater than file size", bad header
        raise CorruptPreparedCase(f"prepared case {folder} is unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None


def _warn(message: str) -> None:
    print(f"[medssl-bench] {message}", file=sys.stderr, flush=True)


def open_volumes(task: Task, cases: list[Case], root: Path, *, volume_size: tuple[int, int, int] | None,
                 log: Callable[[str], None] = _warn) -> list[Volume]:
    """``cases`` as prepared volumes (``benchmark.volumes.load_volumes``'s values, memory-mapped); a case not yet
    prepared (a case added since the driver prepared) is prepared here first, and a corrupt copy is reported,
    removed and prepared again."""
    volumes = []
    for case in cases:
        folder = prepare_case(task, case, root, volume_size=volume_size)
        try:
            volumes.append(open_checked(folder))
        except CorruptPreparedCase as exc:
            log(f"{exc}; preparing it again from {case.images[0]}")
            shutil.rmtree(folder, ignore_errors=True)
            volumes.append(open_checked(prepare_case(task, case, root, volume_size=volume_size)))
    return volumes


def read_volumes(task: Task, cases: list[Case], *, volume_size: tuple[int, int, int] | None, folder: str | Path | None) -> list[Volume]:
    """What the loops read: prepared, memory-mapped volumes from ``folder`` (``prepared_dir``), or, without one, the
    files decoded into memory (``benchmark.volumes.load_volumes``; the values are the same)."""
    if folder is None:
        return preprocessing.load_volumes(task, cases, volume_size=volume_size)
    local = storage.local_path(folder)
    if local is None:
        return [_open_remote(task, case, folder, volume_size=volume_size) for case in cases]
    return open_volumes(task, cases, prepared_root(local, task, volume_size=volume_size), volume_size=volume_size)


# ---- prepared cases on a storage URI ------------------------------------------------------------------------
def case_key(task_ref: str, case_id: str) -> str:
    """The key of a case in a Job's ``prepared_cases``: cases of several tasks meet in a pretraining corpus."""
    return f"{task_ref}|{case_id}"


def case_locations(task: Task, cases: list[Case], *, volume_size: tuple[int, int, int] | None) -> dict[str, str]:
    """case key -> its folder under a prepared folder (``<task>-<settings hash>/<case>-<fingerprint>``), as the
    driver computes it from the files; a worker reads it without seeing them."""
    root, out = prepared_root(Path("."), task, volume_size=volume_size), {}
    for case in cases:
        try:
            out[case_key(task.ref, case.case_id)] = f"{root.name}/{case_folder(root, case).name}"
        except OSError:  # a file that is not there: no location (a worker reading it reports it by its path)
            continue
    return out


def publish_cases(task: Task, cases: list[Case], local_root: Path, folder: str, *, volume_size: tuple[int, int, int] | None,
                  workers: int = 8, log: Callable[[str], None] = print) -> int:
    """Copy the locally prepared folders of ``cases`` (under ``local_root``) to the storage's prepared ``folder``, those
    not there yet (``meta.json`` last: a folder with it is complete), ``workers`` uploads at a time; returns how many."""
    remote_root = storage.join(folder, prepared_root(Path("."), task, volume_size=volume_size).name)
    todo = [c for c in cases if not storage.exists(storage.join(remote_root, case_folder(local_root, c).name, "meta.json"))]
    if not todo:
        return 0
    start = time.perf_counter()
    log(f"copying {len(todo)} prepared {task.name} case(s) to {remote_root}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(lambda c: storage.upload_folder(case_folder(local_root, c), storage.join(remote_root, case_folder(local_root, c).name),
                                                      last="meta.json"), todo))
    log(f"copied {len(todo)} {task.name} case(s) in {time.perf_counter() - start:.0f} s")
    return len(todo)


def read_cases(task: Task, case_ids: list[str], *, folder: str | None, locations: dict[str, str], volume_size: tuple[int, int, int] | None,
               find_cases: Callable[[], dict[str, Case]], log: Callable[[str], None] = _warn) -> list[Volume]:
    """The volumes of ``case_ids``, in order, as a worker reads them: each case from its prepared folder named in
    ``locations`` (``case_locations``; a remote folder is copied once to this node's cache), no data folder needed;
    a case without a location, or whose copy is missing or unreadable, from the data files (``find_cases()``:
    case id -> Case, called only then), prepared (and published) here."""
    if folder is None:
        cases = find_cases()
        return preprocessing.load_volumes(task, [cases[i] for i in case_ids], volume_size=volume_size)
    volumes, cases = [], None
    for case_id in case_ids:
        where = locations.get(case_key(task.ref, case_id))
        volume = _open_stored(storage.join(folder, *where.split("/")), log=log) if where else None
        if volume is None:
            cases = cases if cases is not None else find_cases()
            if case_id not in cases:
                raise FileNotFoundError(f"case {case_id!r} of task {task.name}: no prepared copy under {folder} and no such case in its data "
                                        "folder on this node (share the data folders, or prepare on the storage: --storage with --prepare)")
            volume = read_volumes(task, [cases[case_id]], volume_size=volume_size, folder=folder)[0]
        volumes.append(volume)
    return volumes


def _open_stored(location: str, *, log: Callable[[str], None]) -> Volume | None:
    """The prepared case at ``location`` (a folder on the storage), or None when it is not there or is unreadable (a
    local corrupt copy is removed, so it is prepared again)."""
    local = storage.local_path(location)
    if local is None:
        return _open_mirror(location, log=log)
    if not local.is_dir():
        return None
    try:
        return open_checked(local)
    except CorruptPreparedCase as exc:
        log(f"{exc}; preparing it again")
        shutil.rmtree(local, ignore_errors=True)
        return None


def _mirror_folder(location: str) -> Path:
    """Where this node keeps its copy of the remote case folder ``location``: named by its last two parts
    (task-settings hash / case-fingerprint: content-addressed, so one copy serves every run)."""
    task_root, case = location.partition("?")[0].rstrip("/").split("/")[-2:]
    return storage.node_cache_dir() / "prepared" / task_root / case


def _open_mirror(location: str, *, log: Callable[[str], None]) -> Volume | None:
    mirror = _mirror_folder(location)
    if mirror.is_dir():
        try:
            return open_checked(mirror)
        except CorruptPreparedCase as exc:
            log(f"{exc}; copying it again from {location}")
            shutil.rmtree(mirror, ignore_errors=True)
    if not storage.exists(storage.join(location, "meta.json")):  # absent, or its copy never completed
        return None
    write_folder_once(mirror, lambda tmp: storage.download_folder(location, tmp))
    try:
        return open_checked(mirror)
    except CorruptPreparedCase as exc:
        log(f"{exc} (copied from {location}); preparing it again")
        shutil.rmtree(mirror, ignore_errors=True)
        return None


def _open_remote(task: Task, case: Case, folder: str, *, volume_size: tuple[int, int, int] | None) -> Volume:
    """A case prepared on the remote ``folder``: copied from there, or prepared here and published there first."""
    location = storage.join(folder, *case_locations(task, [case], volume_size=volume_size)[case_key(task.ref, case.case_id)].split("/"))
    volume = _open_mirror(location, log=_warn)
    if volume is not None:
        return volume
    mirror = _mirror_folder(location)
    shutil.rmtree(mirror, ignore_errors=True)
    local_root = mirror.parent
    prepare_case(task, case, local_root, volume_size=volume_size)
    storage.upload_folder(case_folder(local_root, case), location, last="meta.json")
    return open_checked(case_folder(local_root, case))


def _prepare_one(args) -> str:
    task_ref, case, root, volume_size = args  # a pool process rebuilds the task from its reference
    return str(prepare_case(get_task(task_ref), case, root, volume_size=volume_size))


def prepare_cases(task: Task, cases: list[Case], root: Path, *, volume_size: tuple[int, int, int] | None, workers: int,
                  log: Callable[[str], None] = print) -> int:
    """Prepare every case of ``cases`` not prepared yet, ``workers`` at a time (a process pool; 1: here), with a
    progress line every few cases; returns how many were prepared. A corrupt file stops it with the reader's
    error (which names the file); the cases prepared before it stay."""
    todo = [c for c in cases if not is_prepared(root, c)]
    if not todo:
        return 0
    workers = max(1, min(workers, len(todo)))
    start, done, last = time.perf_counter(), 0, [time.perf_counter()]
    log(f"preparing {task.name}: {len(todo)} case(s) to decode and pre-process once into {root} ({workers} process(es))")

    def progress() -> None:  # a line every PROGRESS_EVERY_S seconds and at the end
        now = time.perf_counter()
        if now - last[0] >= PROGRESS_EVERY_S or done == len(todo):
            last[0] = now
            eta = (now - start) / done * (len(todo) - done)
            log(f"preparing {task.name}: {done}/{len(todo)} cases, {now - start:.0f} s" + (f", about {eta:.0f} s left" if done < len(todo) else ""))

    if workers == 1:
        for case in todo:
            prepare_case(task, case, root, volume_size=volume_size)
            done += 1
            progress()
        return done
    # fork: the pool processes start without importing the suite again (they only read files and write arrays); each
    # runs torch single-threaded, as DataLoader workers do: an OpenMP pool the parent already used hangs in a fork
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(_prepare_one, (task.ref, case, root, volume_size)) for case in todo]
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
                done += 1
                progress()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return done
