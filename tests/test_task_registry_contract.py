"""Contract over every registered task (like tests/test_registry_contract.py over the methods): each task of
``list_tasks()`` (installed plugins included) and of the reference prefixes (``nnunet:synthetic``,
``synthesis:brats:flair+t1->t2``) writes its synthetic set, finds and checks it through its own reader, loads it as
``Volume``s of the documented form, and its kind's ``metric_info`` lists every metric the kind's evaluation writes for it.

The checks live in ``benchmark.testing`` (a plugin author runs the same ones: ``check_task(MyTask)``). Small synthetic
sets (five cases of 24 x 24 x 12: HIE's five lesion loads), so the whole file runs in seconds.
"""
from __future__ import annotations

import pytest

from benchmark import testing as contract
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
