"""Missing-series fine-tuning / evaluation (CSM paper Table VII) and how ablations are labelled in the report."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.data import drop_series
from benchmark.errors import BenchmarkInputError
from benchmark.store import CELL_COLUMNS, RESULT_COLUMNS
from reports.leaderboard import leaderboard_tables
from tasks.base import Volume


def _volumes(n: int, channels: int = 4) -> list[Volume]:
    image = np.ones((channels, 4, 4, 4), dtype=np.float32)
    return [Volume(case_id=f"case{i:03d}", image=image.copy(), label=np.zeros((4, 4, 4), dtype=np.int64)) for i in range(n)]


def _zeroed(v: Volume) -> int:
    return int((np.abs(v.image).reshape(v.image.shape[0], -1).max(axis=1) == 0).sum())


def test_share_of_cases_lose_one_or_two_series_never_all():
    """About ``fraction`` of the cases lose 1 or 2 whole series (zeros); the others are untouched."""
    volumes = _volumes(400)
    out = drop_series(volumes, 0.5)
    zeroed = [_zeroed(v) for v in out]
    assert 0.42 < np.mean([z > 0 for z in zeroed]) < 0.58
    assert set(zeroed) == {0, 1, 2}
    for v in out:  # a series is either wholly zero or wholly intact
        per_series = v.image.reshape(4, -1)
        assert all(row.min() == row.max() for row in per_series)
    assert all(np.array_equal(v.image, np.ones_like(v.image)) for v in volumes)  # inputs not modified


def test_two_series_keep_at_least_one():
    """With 2 series at most one is dropped (prostate has 3, breast/brain 4; never an empty input)."""
    assert max(_zeroed(v) for v in drop_series(_volumes(200, channels=2), 1.0)) == 1
    assert all(_zeroed(v) == 0 for v in drop_series(_volumes(20, channels=1), 1.0))


def test_same_case_same_missing_series_whatever_the_order_and_run():
    """Which series a case misses depends on its id only: every method sees the same incomplete data."""
    volumes = _volumes(50)
    a = {v.case_id: v.image for v in drop_series(volumes, 0.5)}
    b = {v.case_id: v.image for v in drop_series(list(reversed(volumes)), 0.5)}
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_zero_share_is_identity_and_bad_share_rejected():
    volumes = _volumes(5)
    assert drop_series(volumes, 0.0) is volumes
    with pytest.raises(BenchmarkInputError, match="missing-series"):
        drop_series(volumes, 1.5)


def test_plan_records_missing_series_and_keeps_complete_cell_ids(tmp_path):
    """A missing-series run gets its own cell ids and Job settings; complete data keeps the ids it always had."""
    from test_plan_job_store import _group, _plan

    from benchmark.records import FinetuneSettings

    complete = _group(_plan(tmp_path, methods=("csm",), task="brats"), "csm")
    missing = _group(_plan(tmp_path, methods=("csm",), task="brats", finetune=FinetuneSettings(missing_series=0.5)), "csm")
    assert complete.finetune.missing_series == 0.0 and missing.finetune.missing_series == 0.5
    assert {c.cell_id for c in complete.cells}.isdisjoint(c.cell_id for c in missing.cells)
    assert complete.pretrain.key == missing.pretrain.key  # pretraining is on complete data: shared
    with pytest.raises(BenchmarkInputError):
        _plan(tmp_path, methods=("csm",), task="brats", finetune=FinetuneSettings(missing_series=-0.1))


def test_report_labels_rows_by_overrides_and_missing_series():
    """Rows say what sets a configuration apart (--hparam overrides, missing series) instead of a hash."""
    cells, results = [], []
    for cid, overrides, missing, value in [("a", {}, 0.0, 0.8), ("b", {"cmcl": False}, 0.0, 0.7), ("c", {}, 0.5, 0.6)]:
        cells.append({**{c: "" for c in CELL_COLUMNS}, "cell_id": cid, "method": "dae", "backbone": "swin_unetr", "task": "brats",
                      "fraction": "100%", "n_labeled": 9, "seed": 0, "fold": 0, "status": "done", "label_aware": False,
                      "finetune_aug": "none", "missing_series": missing, "config_id": cid,
                      "config": json.dumps({"hparams_overrides": overrides})})
        results.append({c: "" for c in RESULT_COLUMNS} | {"cell_id": cid, "metric": "dice_mean", "value": value, "seed": 0})
    table = leaderboard_tables(pd.DataFrame(results), pd.DataFrame(cells))["brats"]
    assert table.loc["dae (swin_unetr)"].iloc[0] == "0.800"
    assert table.loc["dae (swin_unetr) cmcl=False"].iloc[0] == "0.700"
    assert table.loc["dae (swin_unetr) missing-series 0.5"].iloc[0] == "0.600"


# ---- per-paper in-plane pre-processing (paper profile, native resolution) ------------------------------
def test_crop_pad_inplane_keeps_foreground_and_every_slice():
    """SI paper 5.1: 200 x 200 x Z around the brain; a 240 x 180 volume is cropped in X and padded in Y."""
    from benchmark.volumes import _crop_pad_inplane

    image = np.zeros((2, 240, 180, 7), dtype=np.float32)
    image[:, 30:190, 20:170, :] = 1.0  # off-centre "brain", 160 x 150
    label = np.zeros((240, 180, 7), dtype=np.int64)
    label[100:110, 100:110, 3] = 2
    out = _crop_pad_inplane(Volume(case_id="a", image=image, label=label, spacing=(1.0, 1.0, 3.0)), (200, 200))
    assert out.image.shape == (2, 200, 200, 7) and out.label.shape == (200, 200, 7)
    assert out.image.sum() == image.sum() and (out.label == 2).sum() == 100  # nothing of the brain or lesion lost
    assert out.spacing == (1.0, 1.0, 3.0)


def test_load_volumes_applies_task_inplane_only_at_native_resolution(tmp_path):
    """HIE slices are upscaled to 256 x 256 (LADP II.B) in the paper profile; smoke resampling wins otherwise."""
    from benchmark.data import load_volumes
    from benchmark.datasources import synthetic_root
    from tasks import get_task

    task = get_task("hie")
    cases = task.find_cases(synthetic_root(task, tmp_path))[:1]
    native = load_volumes(task, cases, volume_size=None)[0]
    raw = task.load(cases[0])
    assert native.image.shape[1:] == (256, 256, raw.image.shape[3])
    assert native.spacing[0] == pytest.approx(raw.spacing[0] * raw.image.shape[1] / 256)
    assert load_volumes(task, cases, volume_size=(32, 32, 16))[0].image.shape[1:] == (32, 32, 16)
    assert get_task("btcv").inplane is None and get_task("brats").inplane == ("crop_pad", (200, 200))
