"""Contract over every registered task (like tests/test_registry_contract.py over the methods): each task of
``list_tasks()`` (installed plugins included) and of the reference prefixes (``nnunet:synthetic``,
``synthesis:brats:flair+t1->t2``) writes its synthetic set, finds and checks it through its own reader, loads it as
``Volume``s of the documented form, and its kind's ``metric_info`` lists every metric the kind's evaluation writes for it.

The checks live in ``benchmark.testing`` (a plugin author runs the same ones: ``check_task(MyTask)``). Small synthetic
sets (five cases of 24 x 24 x 12: HIE's five lesion loads), so the whole file runs in seconds.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmark import testing as contract
from benchmark.kinds import kind_of
from benchmark.records import MetricInfo
from tasks import get_task, list_tasks
from tasks.base import list_task_prefixes

REFS = [*list_tasks(), "nnunet:synthetic", "synthesis:brats:flair+t1->t2"]


def test_the_references_cover_every_prefix():
    """One reference per registered prefix, so a new prefix gets its own contract run."""
    prefixes = {p.prefix for p in list_task_prefixes()}
    covered = {p for p in prefixes for ref in REFS if ref.startswith(p)}
    assert covered == prefixes


@pytest.fixture(scope="module", params=REFS)
def written(request, tmp_path_factory):
    """(task, cases, volumes): the task's synthetic set written, found, checked and loaded by its own reader."""
    return contract.written_task(get_task(request.param), tmp_path_factory.mktemp("tasks") / "data")


def test_identity(written):
    contract.check_task_identity(written)


def test_synthetic_set_read_back(written):
    contract.check_synthetic_set_read_back(written)


def test_metric_info_complete(written):
    contract.check_metric_info_complete(written)


def test_metric_info_lists_every_written_metric(written):
    contract.check_metric_info_lists_every_written_metric(written)


# ---- the checks catch what they are for (each kind's contract hooks, ``TaskKind.target_problem`` / ``contract_metric_rows``) ----
def _written(name, tmp_path):
    return contract.written_task(get_task(name), tmp_path / "data")


def test_a_label_value_outside_the_task_or_a_class_case_with_a_map_is_named(tmp_path):
    task, cases, volumes = _written("brats", tmp_path / "seg")
    bad = dataclasses.replace(volumes[0], label=np.where(volumes[0].label > 0, 7, 0).astype(np.int64))
    with pytest.raises(AssertionError, match=r"label values \[7\] outside"):
        contract.check_synthetic_set_read_back((task, cases, [bad, *volumes[1:]]))
    task, cases, volumes = _written("mri_cls", tmp_path / "cls")
    bad = dataclasses.replace(volumes[0], label=np.zeros(volumes[0].image.shape[1:], dtype=np.int64))
    with pytest.raises(AssertionError, match="has a label map"):
        contract.check_synthetic_set_read_back((task, cases, [bad, *volumes[1:]]))


def test_a_metric_written_per_set_but_listed_per_case_breaks_the_contract(tmp_path, monkeypatch):
    written = _written("mri_cls", tmp_path)
    kind = kind_of(written[0])
    listed = kind.metric_info(written[0])
    monkeypatch.setattr(type(kind), "metric_info", lambda self, task: [dataclasses.replace(m, scope="case") for m in listed])
    with pytest.raises(AssertionError, match=r"against metric_info's scope: \['accuracy', 'auc'\]"):
        contract.check_metric_info_lists_every_written_metric(written)


def test_prediction_rows_listed_as_metrics_break_the_contract(tmp_path, monkeypatch):
    written = _written("mri_cls", tmp_path)
    kind = kind_of(written[0])
    listed = kind.metric_info(written[0])
    monkeypatch.setattr(type(kind), "metric_info", lambda self, task: [*listed, MetricInfo("correct")])
    with pytest.raises(AssertionError, match=r"prediction rows listed as metrics: \['correct'\]"):
        contract.check_metric_info_lists_every_written_metric(written)
