"""Contract over every registered task (like tests/test_registry_contract.py over the methods): each task of
``list_tasks()`` and of the reference prefixes (``nnunet:synthetic``, ``synthesis:brats:flair+t1->t2``) writes its
synthetic set, finds and checks it through its own reader, loads it as ``Volume``s of the documented form, and its
kind's ``metric_info`` lists every metric the kind's evaluation writes for it.

Small synthetic sets (five cases of 24 x 24 x 12: HIE's five lesion loads), so the whole file runs in seconds.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.kinds import KINDS, kind_of
from tasks import get_task, list_tasks
from tasks.base import Volume, list_task_prefixes

REFS = [*list_tasks(), "nnunet:synthetic", "synthesis:brats:flair+t1->t2"]
N_CASES = 5
SHAPE = (24, 24, 12)
SCOPES = {"case", "set"}
PREDICTION_ROWS = ("prob_", "correct", "target")  # classification: case-level predictions, not leaderboard metrics


def test_the_references_cover_every_prefix():
    """One reference per registered prefix, so a new prefix gets its own contract run."""
    prefixes = {p.prefix for p in list_task_prefixes()}
    covered = {p for p in prefixes for ref in REFS if ref.startswith(p)}
    assert covered == prefixes


@pytest.fixture(scope="module", params=REFS)
def written(request, tmp_path_factory):
    """(task, cases, volumes): the task's synthetic set written, found, checked and loaded by its own reader."""
    ref = request.param
    task = get_task(ref)
    root = tmp_path_factory.mktemp("tasks") / "data"
    task.write_synthetic(root, n_cases=N_CASES, shape=SHAPE, seed=0)
    cases = task.find_cases(root)
    task.check_cases(cases, root=root)
    return task, cases, [task.load(case) for case in cases]


def test_identity(written):
    task, _, _ = written
    assert task.kind in KINDS
    assert kind_of(task).name == task.kind
    assert get_task(task.ref).name == task.name
    assert len(task.channels) >= 1
    assert len(task.modalities) == len(task.channels)
    assert all(isinstance(m, str) and m for m in task.modalities)


def test_synthetic_set_read_back(written):
    task, cases, volumes = written
    assert len(cases) == N_CASES
    assert len({c.case_id for c in cases}) == len(cases)
    for v in volumes:
        assert isinstance(v, Volume)
        assert v.image.dtype == np.float32
        assert v.image.ndim == 4 and v.image.shape[0] == len(task.channels)
        assert np.isfinite(v.image).all()
        assert len(v.spacing) == 3 and all(s > 0 and np.isfinite(s) for s in v.spacing)
        if task.kind == "classification":
            assert v.label is None
            assert v.target is not None and 0 <= int(v.target) < task.num_outputs
        else:
            label_task = task if task.kind == "segmentation" else task.label_task
            assert v.label is not None and v.label.dtype == np.int64
            assert v.label.shape == v.image.shape[1:]
            assert set(np.unique(v.label).tolist()) <= set(label_task.label_values)


def test_metric_info_complete(written):
    task, _, _ = written
    info = kind_of(task).metric_info(task)
    names = [m.name for m in info]
    assert names, "a task records at least one metric"
    assert len(set(names)) == len(names), f"duplicate metric names {names}"
    assert sum(m.primary for m in info) == 1, f"exactly one primary metric expected: {info}"
    assert all(m.scope in SCOPES for m in info)
    assert all(isinstance(m.higher_is_better, bool) for m in info)


def _written_metrics(task, volumes) -> tuple[set[str], set[str]]:
    """(leaderboard metric names, case-level prediction row names) the task's kind writes on ``volumes``."""
    if task.kind == "segmentation":  # a perfect prediction: each case's own label
        names: set[str] = set()
        for v in volumes:
            label = torch.from_numpy(v.label)[None, None]
            regions = task.label_to_regions(label)
            names |= set(task.metrics(regions, regions, spacing=v.spacing, image=v.image, label=label))
        return names, set()
    if task.kind == "classification":
        targets = np.array([int(v.target) for v in volumes])
        probs = np.eye(task.num_outputs)[targets]
        case = {name for t, p in zip(targets, probs) for name in task.case_metrics(p, int(t))}
        return set(task.set_metrics(probs, targets)), case
    if task.kind == "synthesis":  # the image-quality metrics (no evaluator networks), and Dice on the synthetic images
        from benchmark.protocol import DEFAULT_PROTOCOL
        from benchmark.synthesis.evaluation import dice_on_synthetic, quality_rows
        from benchmark.synthesis.scaling import SliceScale

        names = set()
        for v in volumes:
            scale = SliceScale.of(torch.from_numpy(v.image), sources=task.source_index)
            target = scale.to_pix2pix(torch.from_numpy(v.image[list(task.target_index)]), channels=task.target_index)  # [-1, 1]
            names |= set(quality_rows((target + 0.1).clamp(-1, 1), target, scale=scale, targets=task.target_index, evaluator=None,
                                      primary_only=False))
            real = torch.from_numpy(v.image[list(task.target_index)])
            if task.label_task is not None:
                torch.manual_seed(0)
                segmenter = torch.nn.Conv3d(len(task.channels), task.label_task.num_outputs, 1)
                names |= set(dice_on_synthetic(segmenter, task.label_task, v.image, v.label, real, target_index=task.target_index,
                                               segmenter_roi=v.image.shape[1:], device="cpu", protocol=DEFAULT_PROTOCOL))
        return names, set()
    raise AssertionError(f"{task.name}: kind {task.kind!r} has no metric check here; add one")


def test_metric_info_lists_every_written_metric(written):
    task, _, volumes = written
    info = {m.name: m for m in kind_of(task).metric_info(task)}
    metrics, predictions = _written_metrics(task, volumes)
    assert metrics, f"{task.name}: its kind writes no metric"
    assert metrics <= set(info), f"{task.name}: written but not in metric_info: {sorted(metrics - set(info))}"
    assert any(info[name].primary for name in metrics), f"{task.name}: the primary metric is never written"
    # Case-level prediction rows (classification) are intentionally not leaderboard metrics (benchmark/kinds/classification.py).
    assert not predictions & set(info)
    assert all(name.startswith(PREDICTION_ROWS) for name in predictions)
    if task.kind == "classification":
        assert all(info[name].scope == "set" for name in metrics)
