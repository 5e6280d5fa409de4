"""--pretrain-corpus: one DAE pretraining on several tasks' non-test cases, with each volume's modality as metadata.

The DAE paper (3.1, "Pre-training Dataset") pretrains once on a curated CT + MRI corpus (BraTS21's four MRI
sequences, LUNA16, TCIA Covid19, HN-SCC, TCIA Colon, LIDC) and fine-tunes that checkpoint on each task; its
cross-modal contrastive loss (eqs. 3-5) takes samples of one modality as positives ("as per the meta-data").
These tests build the data the way the pipeline does (built-in datasets, ``build_plan``, ``load_corpus``,
``benchmark.train.pretraining_dataset``) so a loss term that is always zero in a real run would show here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from benchmark.backbones import BackboneSize, build_backbone
from benchmark.cli import build_parser, build_request
from benchmark.data import load_corpus
from benchmark.job import Job
from benchmark.methods import get_method
from benchmark.plan import Fraction, MethodEntry, build_plan
from benchmark.profiles import get_profile
from benchmark.run import resolve_data

TINY_SWIN = BackboneSize(unet_features=(8, 8, 16, 16, 16, 8), swin_feature_size=12, swin_window=4, vit_dim=24, vit_depth=1, vit_heads=2,
                         vit_patch=8, vgg_width=0.125, resnet_depth=18, resnet_width=0.125)


def _request(tmp_path: Path, *extra: str):
    args = build_parser().parse_args(["--methods", "dae,csi", "--tasks", "brats,btcv", "--profile", "tiny", "--cache-dir", str(tmp_path / "cache"),
                                      "--output", str(tmp_path / "out"), *extra])
    return build_request(args, [])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus-cache")


def _plan(request, *, seeds=(0,), folds=1, workers=1, methods=None):
    task_data, corpus = resolve_data(request)
    plan = build_plan(methods=methods or list(request.methods), task_data=task_data, fractions=[Fraction("100%", percent=100.0)],
                      seeds=list(seeds), folds=folds, profile=request.profile, cache_dir=request.cache_dir, corpus=corpus, workers=workers)
    return plan, task_data, corpus


def test_auto_corpus_is_the_runs_tasks_and_none_or_one_task_pretrains_per_task(cache):
    assert [t.name for t in _request(cache).pretrain_corpus] == ["brats", "btcv"]
    assert _request(cache, "--pretrain-corpus", "none").pretrain_corpus is None
    args = build_parser().parse_args(["--methods", "dae", "--tasks", "btcv", "--cache-dir", str(cache)])
    assert build_request(args, []).pretrain_corpus is None
    with pytest.raises(Exception, match="--pretrain-corpus 'brats,nope'"):
        _request(cache, "--pretrain-corpus", "brats,nope")


@pytest.mark.parametrize("seeds,folds", [((0, 1), 1), ((0,), 3)])
def test_one_dae_pretraining_per_split_shared_by_every_task_and_no_test_case_of_any_task(cache, seeds, folds):
    """DAE's Jobs on brats and btcv share one checkpoint per (seed, fold); its corpus holds every task's
    non-test cases of that split and no test case of any task; CSI (not a corpus method) keeps its own."""
    plan, task_data, _ = _plan(_request(cache), seeds=seeds, folds=folds)
    by_task = {td.task.name: td for td in task_data}
    dae = [j for j in plan.jobs if j.method == "dae"]
    assert len(dae) == 2 * len(seeds) * folds
    for seed in seeds:
        for fold in range(folds):
            jobs = [j for j in dae if (j.seed, j.fold) == (seed, fold)]
            assert {j.task for j in jobs} == {"brats", "btcv"}
            assert len({j.pretrain.key for j in jobs}) == 1 and len({j.pretrain.path for j in jobs}) == 1
            spec = jobs[0].pretrain
            assert spec.modalities == ("t1", "t1ce", "t2", "flair", "ct")
            for job in jobs:  # the fine-tuning task's own split: train + validation in, test out
                part = next(p for p in spec.corpus if p.task_ref == job.task_ref)
                assert set(part.case_ids) == set(job.train_ids) | set(job.val_ids)
                assert not set(part.case_ids) & set(job.test_ids)
            assert sum(len(p.case_ids) for p in spec.corpus) < sum(len(td.cases) for td in by_task.values())
    assert len({j.pretrain.key for j in dae}) == len(seeds) * folds
    csi = [j for j in plan.jobs if j.method == "csi" and j.na_reason is None]
    assert all(not j.pretrain.corpus for j in csi) and len({j.pretrain.key for j in csi}) == len(csi)
    assert all(Job.from_json(j.to_json()) == j for j in plan.jobs)


def test_corpus_key_covers_the_corpus_and_per_task_plans_are_unchanged(cache):
    request = _request(cache)
    shared, _, _ = _plan(request)
    alone, _, _ = _plan(dataclasses.replace(request, pretrain_corpus=None))
    only_brats, _, _ = _plan(dataclasses.replace(request, pretrain_corpus=request.pretrain_corpus[:1]))
    key = lambda plan, method, task: next(j.pretrain.key for j in plan.jobs if j.method == method and j.task == task and j.pretrain)  # noqa: E731
    assert key(shared, "dae", "brats") != key(only_brats, "dae", "brats")  # another corpus, another checkpoint
    assert key(shared, "csi", "brats") == key(alone, "csi", "brats")  # methods that do not use the corpus keep their keys
    assert not next(j for j in alone.jobs if j.method == "dae" and j.task == "brats").pretrain.corpus


def test_dae_on_one_modality_or_a_batch_of_two_is_na_with_the_reason_not_a_silent_zero_loss(cache):
    """A single-modality corpus (BTCV's CT) or a global batch < 3 would make CMCL exactly 0 on every step."""
    request = _request(cache, "--pretrain-corpus", "none")
    dae = [MethodEntry("dae")]
    plan, _, _ = _plan(request, methods=dae)
    btcv = next(j for j in plan.jobs if j.method == "dae" and j.task == "btcv")
    assert "exactly 0" in btcv.na_reason and "--pretrain-corpus" in btcv.na_reason and "dae:cmcl=false" in btcv.na_reason
    assert next(j for j in plan.jobs if j.method == "dae" and j.task == "brats").na_reason is None  # four MRI sequences
    plan, _, _ = _plan(request, methods=[MethodEntry("dae", {"cmcl": False})])
    assert all(j.na_reason is None for j in plan.jobs if j.method == "dae")
    # the paper profile's batch is 2 per GPU: one worker can never hold a positive and a negative pair; two can
    paper = dataclasses.replace(_request(cache), profile=get_profile("paper"))
    one, _, _ = _plan(paper, methods=dae, workers=1)
    two, _, _ = _plan(paper, methods=dae, workers=2)
    assert all("global batch of < 3" in j.na_reason for j in one.jobs if j.method == "dae")
    assert all(j.na_reason is None for j in two.jobs if j.method == "dae")


def test_corpus_samples_carry_the_corpus_modality_and_mix_tasks(cache):
    """Every pipeline sample is one channel of one task's volume, tagged with that channel's modality in the
    corpus vocabulary: BTCV's CT is modality 4 beside BraTS's t1, t1ce, t2, flair (0-3)."""
    from benchmark.train import pretraining_dataset

    plan, _, _ = _plan(_request(cache))
    job = next(j for j in plan.jobs if j.method == "dae")
    volumes, modality_ids = load_corpus(job.pretrain.corpus, modalities=job.pretrain.modalities, volume_size=job.volume_size)
    n_brats = len(job.pretrain.corpus[0].case_ids)
    assert modality_ids == [(0, 1, 2, 3)] * n_brats + [(4,)] * (len(volumes) - n_brats)
    method = _dae(job)
    data = pretraining_dataset(method, volumes, roi=(32, 32, 64), length=64, seed=0, modality_ids=modality_ids)
    seen = [int(data[i]["modality"]) for i in range(64)]
    assert set(seen) == {0, 1, 2, 3, 4}
    assert all(data[i]["image"].shape == (1, 32, 32, 64) for i in range(4))


def _dae(job: Job):
    cls = get_method("dae")
    torch.manual_seed(0)
    backbone = build_backbone("swin_unetr", in_channels=1, out_channels=1, size=TINY_SWIN, roi=(32, 32, 64))
    return cls(backbone, job.method_config, in_channels=1)


def _cmcl_on_rank(rank: int, job_json: str, steps: int) -> list[float]:
    """One DDP worker of a DAE pretraining on the corpus, batches built as the pipeline builds them: the pipeline
    dataset, a DistributedSampler (what Ray Train's prepare_data_loader adds), batch 2 per worker."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from benchmark.train import pretraining_dataset

    job = Job.from_json(job_json)
    volumes, modality_ids = load_corpus(job.pretrain.corpus, modalities=job.pretrain.modalities, volume_size=job.volume_size)
    method = _dae(job)
    data = pretraining_dataset(method, volumes, roi=(32, 32, 64), length=steps * 2 * 2, seed=job.seed, modality_ids=modality_ids)
    loader = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, shuffle=False), drop_last=True)
    generator = torch.Generator().manual_seed(rank)
    out = []
    for batch in loader:
        with torch.no_grad():
            out.append(float(method(batch, generator=generator)["cmcl"]))
    return out


def test_cmcl_is_non_zero_on_a_mixed_modality_corpus_at_the_papers_global_batch(cache):
    """2 workers x batch 2 (the paper's per-GPU batch) through the distributed gather: the contrastive term is
    the same on both workers (one global batch) and non-zero, where one worker with batch 2 would never be."""
    from dist_utils import run_distributed

    plan, _, _ = _plan(_request(cache))
    job = next(j for j in plan.jobs if j.method == "dae")
    rank0, rank1 = run_distributed(_cmcl_on_rank, job.to_json(), 6)
    assert len(rank0) == 6
    assert rank0 == pytest.approx(rank1, abs=1e-5)
    assert sum(v > 0 for v in rank0) >= 3 and sum(rank0) / len(rank0) > 0.05


def test_worker_pretrains_once_on_the_corpus_and_the_other_task_reuses_it(cache):
    """run_job (what a Ray trial runs) on the planned DAE Jobs: btcv's pretrains on the corpus (tiny profile), brats's
    finds the same checkpoint in the cache; the checkpoint records the corpus it was trained on."""
    from benchmark.train import run_job

    request = _request(cache, "--tasks", "btcv", "--pretrain-corpus", "brats,btcv")
    assert [t.name for t in request.tasks] == ["btcv"] and [t.name for t in request.pretrain_corpus] == ["brats", "btcv"]
    plan, task_data, corpus = _plan(request, methods=[MethodEntry("dae")])
    assert [td.task.name for td in task_data] == ["btcv"] and [td.task.name for td in corpus] == ["brats", "btcv"]
    job = next(j for j in plan.jobs if j.method == "dae")
    small = dataclasses.replace(job, finetune_steps=1, validation_every=1, cells=job.cells[:1])
    [result] = run_job(small, evaluate_test=False)
    assert not result.pretrain_reused
    saved = torch.load(job.pretrain.path, map_location="cpu", weights_only=False)
    assert [p["task_ref"] for p in saved["job"]["pretrain"]["corpus"]] == ["brats", "btcv"]
    both, _, _ = _plan(_request(cache), methods=[MethodEntry("dae")])
    brats = next(j for j in both.jobs if j.method == "dae" and j.task == "brats")
    assert brats.pretrain.key == job.pretrain.key  # the corpus, not the fine-tuning task, names the checkpoint
    [again] = run_job(dataclasses.replace(brats, finetune_steps=1, validation_every=1, cells=brats.cells[:1]), evaluate_test=False)
    assert again.pretrain_reused


def test_report_names_the_pretraining_data_of_a_row(cache):
    """cells.csv's resolved config keeps the corpus (tasks and case counts, not the ids); the report shows it."""
    import json

    from benchmark.store import cell_record
    from reports.tables import pretraining_data

    plan, _, _ = _plan(_request(cache))
    dae = next(j for j in plan.jobs if j.method == "dae")
    csi = next(j for j in plan.jobs if j.method == "csi" and j.task == "brats")
    config = json.loads(cell_record(dae, dae.cells[0], status="done")["config"])
    sizes = [len(p.case_ids) for p in dae.pretrain.corpus]
    assert config["n_pretrain"] == sum(sizes)
    assert pretraining_data(config) == f"corpus brats ({sizes[0]}) + btcv ({sizes[1]})"
    assert pretraining_data(json.loads(cell_record(csi, csi.cells[0], status="done")["config"])).startswith("own task (")
