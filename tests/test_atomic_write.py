"""The one atomic writer (``benchmark.records.atomic_path`` / ``write_atomic``): a file is never seen half-written,
a failed write leaves the old content and no temp file, the temp keeps the suffixes, and the store, the report and
the NIfTI writer all go through it."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from benchmark import records
from benchmark.records import atomic_path, write_atomic


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_atomic_text_and_bytes_create_parents(tmp_path):
    text = tmp_path / "a" / "b" / "table.csv"
    write_atomic(text, "x,y\n1,é\n")
    assert text.read_text(encoding="utf-8") == "x,y\n1,é\n"
    blob = tmp_path / "c" / "blob.bin"
    write_atomic(blob, b"\x00\x01\xff")
    assert blob.read_bytes() == b"\x00\x01\xff"
    write_atomic(str(blob), b"new")  # a str path works too, and replaces the file
    assert blob.read_bytes() == b"new"
    assert _listing(text.parent) == ["table.csv"] and _listing(blob.parent) == ["blob.bin"]


def test_the_old_file_is_never_seen_half_written(tmp_path):
    path = tmp_path / "results.csv"
    write_atomic(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half of the new")
            assert path.read_text() == "old\n"  # while the new one is being written, readers see the old one whole
            raise RuntimeError("interrupted midway")
    assert path.read_text() == "old\n"
    assert _listing(tmp_path) == ["results.csv"]  # no temp file left


def test_a_failed_rename_removes_the_temp(tmp_path, monkeypatch):
    path = tmp_path / "cells.csv"
    write_atomic(path, "old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert _listing(tmp_path) == ["cells.csv"]


def test_a_writer_that_never_creates_the_temp_still_raises_cleanly(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.txt"):
            raise ValueError("before writing")
    assert _listing(tmp_path) == []


def test_temp_is_hidden_in_the_same_folder_and_keeps_the_suffixes(tmp_path):
    path = tmp_path / "sub" / "case_flair.nii.gz"
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and path.parent.is_dir()
        assert tmp.name.startswith(".") and tmp.name.endswith(".nii.gz")
        assert not tmp.exists()  # the writer creates it (plain permissions)
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(tmp))
    assert _listing(path.parent) == ["case_flair.nii.gz"]
    with open(path, "rb") as handle:
        assert handle.read(2) == b"\x1f\x8b"  # gzip: nibabel picked the format from the kept suffix


def test_two_temps_for_one_path_differ(tmp_path):
    with atomic_path(tmp_path / "a.csv") as first, atomic_path(tmp_path / "a.csv") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a.csv").read_text() == "1"  # the outer block renames last
    assert _listing(tmp_path) == ["a.csv"]


@pytest.fixture
def replaced(monkeypatch):
    """The (src, dst) of every ``os.replace`` the one writer does."""
    calls: list[tuple[Path, Path]] = []
    real = os.replace

    def spy(src, dst):
        calls.append((Path(src), Path(dst)))
        return real(src, dst)

    monkeypatch.setattr(records.os, "replace", spy)
    return calls


def test_the_call_sites_go_through_the_one_writer(tmp_path, replaced):
    from benchmark import store
    from reports import render
    from tasks.nifti import load_nifti, save_nifti

    assert store.write_atomic is write_atomic and render.write_atomic is write_atomic
    store.write_atomic(tmp_path / "store" / "t.csv", "a\n")
    render.write_atomic(tmp_path / "report" / "index.html", "<html></html>")
    save_nifti(np.arange(8, dtype=np.float32).reshape(2, 2, 2), tmp_path / "nii" / "img.nii.gz", affine=np.diag([2.0, 2.0, 3.0, 1.0]))
    assert [dst for _, dst in replaced] == [tmp_path / "store" / "t.csv", tmp_path / "report" / "index.html", tmp_path / "nii" / "img.nii.gz"]
    assert all(src.parent == dst.parent and src.name.startswith(".") for src, dst in replaced)
    data, affine = load_nifti(tmp_path / "nii" / "img.nii.gz")
    assert np.array_equal(data, np.arange(8, dtype=np.float32).reshape(2, 2, 2))
    assert np.allclose(np.diag(affine), [2.0, 2.0, 3.0, 1.0])
    assert _listing(tmp_path / "nii") == ["img.nii.gz"]


def test_the_results_store_writes_through_it(tmp_path, replaced):
    from benchmark.records import MetricInfo
    from benchmark.store import ResultStore

    store = ResultStore(tmp_path / "run", "r")
    store.add_metric_info("brats", [MetricInfo("dice_mean", primary=True)])
    store.write_json("config.json", {"a": 1})
    assert [dst.name for _, dst in replaced] == ["metrics.csv", "config.json"]
    assert store.folder.joinpath("config.json").read_text() == '{\n  "a": 1\n}'
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
