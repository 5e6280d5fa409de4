"""Storage by URI (``benchmark.storage``) against a local S3 endpoint (moto, started here): atomic writes, torch files,
folders; the pretraining cache, the stages' checkpoints and the prepared cases of a Job on ``s3://`` (the worker reads
its cases from the storage alone: the data folder is gone); a truncated prepared array is detected and copied or
prepared again; the run layer's key lease lets one holder in at a time and passes a dead holder's lease on."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from benchmark import storage
from s3_server import s3_endpoint


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_endpoint() as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        os.environ["MEDSSL_NODE_CACHE"] = str(tmp_path_factory.mktemp("node-cache"))
        storage._filesystem.cache_clear()
        try:
            yield "s3://medssl-test"
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
            os.environ.pop("MEDSSL_NODE_CACHE", None)
            storage._filesystem.cache_clear()


def test_uris_and_paths_join_the_same_way(tmp_path):
    assert storage.join("s3://b/p/", "x", "y.pt") == "s3://b/p/x/y.pt"
    assert storage.join("s3://b/p?endpoint_override=h:1", "x.pt") == "s3://b/p/x.pt?endpoint_override=h:1"
    assert storage.sibling("s3://b/p/x.pt", "z.pt") == "s3://b/p/z.pt"
    assert storage.join(tmp_path, "a") == str(tmp_path.resolve() / "a") and storage.local_path(f"file://{tmp_path}") == tmp_path.resolve()
    assert storage.is_uri("gs://b/x") and not storage.is_uri("/abs/path") and not storage.is_uri("relative/path")


def test_files_folders_and_torch_objects_round_trip_on_s3(s3, tmp_path):
    root = storage.join(s3, "unit")
    storage.write_bytes(storage.join(root, "a", "b.bin"), b"hello")
    assert storage.read_bytes(storage.join(root, "a", "b.bin")) == b"hello" and storage.size(storage.join(root, "a", "b.bin")) == 5
    assert not storage.exists(storage.join(root, "missing")) and storage.size(storage.join(root, "missing")) is None
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "missing"))
    storage.save_torch({"w": torch.arange(4.0)}, storage.join(root, "w.pt"))
    assert torch.equal(storage.load_torch(storage.join(root, "w.pt"), weights_only=True)["w"], torch.arange(4.0))
    storage.delete(storage.join(root, "w.pt"))
    storage.delete(storage.join(root, "w.pt"))  # twice: nothing there is fine
    assert not storage.exists(storage.join(root, "w.pt"))
    local = tmp_path / "folder"
    local.mkdir()
    for name in ("meta.json", "x.npy", "y.npy"):
        (local / name).write_bytes(name.encode())
    storage.upload_folder(local, storage.join(root, "folder"), last="meta.json")
    assert storage.list_files(storage.join(root, "folder")) == ["meta.json", "x.npy", "y.npy"]
    storage.download_folder(storage.join(root, "folder"), tmp_path / "back")
    assert {p.name: p.read_bytes() for p in (tmp_path / "back").iterdir()} == {p.name: p.read_bytes() for p in local.iterdir()}


@pytest.fixture(scope="module")
def s3_job(s3, tmp_path_factory):
    """A tiny csi Job of the built-in brats data planned onto the S3 storage, its cases prepared and published there."""
    from benchmark.datasources import resolve_task_data
    from benchmark.plan import Fraction, MethodEntry, build_plan
    from benchmark.prepared import prepare_cases, prepared_dir, prepared_root, publish_cases
    from benchmark.profiles import get_profile
    from tasks import get_task

    tmp = tmp_path_factory.mktemp("s3-job")
    profile = get_profile("tiny")
    data = tmp / "data"
    shutil.copytree(resolve_task_data(get_task("brats"), data_root=None, cache_dir=tmp / "cache").root, data)  # a data folder to remove later
    td = resolve_task_data(get_task("brats"), data_root=data, cache_dir=tmp / "cache")
    volume_size = tuple(profile.volume_size) if profile.volume_size else None
    root = prepared_root(prepared_dir(tmp / "cache"), td.task, volume_size=volume_size)
    prepare_cases(td.task, td.cases, root, volume_size=volume_size, workers=1, log=lambda _m: None)
    assert publish_cases(td.task, td.cases, root, storage.join(s3, "run", "prepared"), volume_size=volume_size, log=lambda _m: None) == len(td.cases)
    plan = build_plan(methods=[MethodEntry("csi")], task_data=[td], fractions=[Fraction("100%", percent=100.0)], seeds=[0], profile=profile,
                      cache_dir=tmp / "cache", storage=storage.join(s3, "run"))
    job = next(j for j in plan.jobs if j.method == "csi")
    return job, td, data


def test_a_job_on_s3_reads_its_cases_from_the_storage_alone_and_caches_there(s3_job, s3):
    from benchmark.train import Hooks, run_job

    job, td, data = s3_job
    assert job.prepared_dir == storage.join(s3, "run", "prepared") and job.pretrain.path.startswith(s3)
    assert set(job.prepared_cases) == {f"{td.task.ref}|{i}" for i in (*job.train_ids, *job.val_ids, *job.test_ids)}
    shutil.rmtree(data)  # the worker sees no data folder: every case comes from the storage
    lines = []
    first = run_job(job, Hooks(log=lines.append))
    assert storage.exists(job.pretrain.path) and not first[0].pretrain_reused
    assert storage.list_files(job.checkpoint_dir) == []  # the stages' checkpoints served and were removed
    again = run_job(job, Hooks(log=lines.append))
    assert again[0].pretrain_reused and [r.value for r in again[0].rows] == [r.value for r in first[0].rows]


def test_a_truncated_prepared_array_is_detected_and_copied_again(s3_job, capsys):
    from benchmark.prepared import _mirror_folder, read_cases
    from tasks import get_task

    job, td, _ = s3_job
    task = get_task(job.task_ref)
    case_id = job.train_ids[0]
    location = storage.join(job.prepared_dir, *job.prepared_cases[f"{task.ref}|{case_id}"].split("/"))
    (reference,) = read_cases(task, [case_id], folder=job.prepared_dir, locations=job.prepared_cases, volume_size=job.volume_size,
                              find_cases=dict)
    image = _mirror_folder(location) / "image.npy"
    image.write_bytes(image.read_bytes()[:-100])  # the node's copy, truncated (a full disk, a killed copy)
    (volume,) = read_cases(task, [case_id], folder=job.prepared_dir, locations=job.prepared_cases, volume_size=job.volume_size,
                           find_cases=dict)
    err = capsys.readouterr().err
    assert "is unreadable" in err and str(image.parent) in err
    np.testing.assert_array_equal(np.asarray(volume.image), np.asarray(reference.image))
    storage.write_bytes(storage.join(location, "meta.json"), b"{not json")  # the storage's copy broken too, no data folder
    shutil.rmtree(_mirror_folder(location))
    with pytest.raises(FileNotFoundError, match=case_id):
        read_cases(task, [case_id], folder=job.prepared_dir, locations=job.prepared_cases, volume_size=job.volume_size, find_cases=dict)


def test_a_key_lease_admits_one_holder_and_passes_on_when_its_holder_dies(monkeypatch):
    """The driver's lease book (``ray_unit.LeaseBook``, an actor under Ray): a second holder waits; the same holder
    (a retried Job) gets its lease back at once; a lease nobody renews lapses and the next asker takes it."""
    from benchmark import ray_unit

    clock = [100.0]
    monkeypatch.setattr(ray_unit.time, "monotonic", lambda: clock[0])
    book = ray_unit.LeaseBook()
    assert book.acquire("s3://b/pretrained/k.pt", "job-a", 60.0)
    assert not book.acquire("s3://b/pretrained/k.pt", "job-b", 60.0) and book.acquire("s3://b/pretrained/k.pt", "job-a", 60.0)
    assert book.acquire("s3://b/pretrained/other.pt", "job-b", 60.0)  # another key: no wait
    clock[0] += 50
    book.renew("s3://b/pretrained/k.pt", "job-a", 60.0)
    clock[0] += 50
    assert not book.acquire("s3://b/pretrained/k.pt", "job-b", 60.0)  # renewed: still job-a's
    clock[0] += 61  # job-a died (kill -9): nobody renews
    assert book.acquire("s3://b/pretrained/k.pt", "job-b", 60.0)
    book.release("s3://b/pretrained/k.pt", "job-a")  # a late release of the dead holder changes nothing
    assert not book.acquire("s3://b/pretrained/k.pt", "job-c", 60.0)
    book.release("s3://b/pretrained/k.pt", "job-b")
    assert book.acquire("s3://b/pretrained/k.pt", "job-c", 60.0)


def test_a_pool_of_slot_leases_admits_as_many_holders_as_it_has_slots(monkeypatch):
    """``LeaseBook.acquire_any``: the DDP search trials of all experiments share the cluster's Train-run slots; a
    third asker of two slots waits until a holder releases (or dies), the same holder keeps its slot."""
    from benchmark import ray_unit

    clock = [0.0]
    monkeypatch.setattr(ray_unit.time, "monotonic", lambda: clock[0])
    book, slots = ray_unit.LeaseBook(), ["train-slot-0", "train-slot-1"]
    assert book.acquire_any(slots, "trial-a", 60.0) == "train-slot-0" and book.acquire_any(slots, "trial-b", 60.0) == "train-slot-1"
    assert book.acquire_any(slots, "trial-c", 60.0) is None and book.acquire_any(slots, "trial-b", 60.0) == "train-slot-1"
    book.release("train-slot-0", "trial-a")
    clock[0] = 30.0
    assert book.acquire_any(slots, "trial-c", 60.0) == "train-slot-0"
    clock[0] = 61.0  # trial-b died holding its slot (nobody renews it): it lapses, trial-c's does not
    assert book.acquire_any(slots, "trial-d", 60.0) == "train-slot-1"
