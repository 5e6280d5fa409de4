"""Task metrics and label conventions (tasks/base.py, tasks/brats.py, tasks/btcv.py) on hand-made masks."""
from __future__ import annotations

import pytest
import torch

from tasks import get_task


def _regions(k: int, size: int = 8) -> torch.Tensor:
    return torch.zeros(1, k, size, size, 2, dtype=torch.bool)


# ---- Dice ------------------------------------------------------------------------------------------
def test_dice_two_overlapping_squares():
    """Two 4x4 squares overlapping in 2x4 pixels: Dice = 2·8 / (16 + 16) = 0.5."""
    brats = get_task("brats")
    truth, pred = _regions(3), _regions(3)
    truth[0, :, 0:4, 0:4] = True
    pred[0, :, 2:6, 0:4] = True
    out = brats.dice(pred, truth)
    assert out == pytest.approx({"dice_WT": 0.5, "dice_TC": 0.5, "dice_ET": 0.5, "dice_mean": 0.5})


def test_dice_unequal_sizes_hand_computed():
    """|A| = 12, |B| = 4, |A∩B| = 2 -> Dice = 4 / 16 = 0.25; identical masks -> 1."""
    brats = get_task("brats")
    truth, pred = _regions(3), _regions(3)
    truth[0, 0, 0:3, 0:4, 0] = True  # 12 voxels
    pred[0, 0, 2:4, 0:2, 0] = True  # 4 voxels, 2 of them in truth
    truth[0, 1, 1:3, 1:3, :] = True
    pred[0, 1, 1:3, 1:3, :] = True
    truth[0, 2, 5, 5, 0] = True
    pred[0, 2, 5, 5, 0] = True
    out = brats.dice(pred, truth)
    assert out["dice_WT"] == pytest.approx(0.25)
    assert out["dice_TC"] == pytest.approx(1.0)
    assert out["dice_ET"] == pytest.approx(1.0)
    assert out["dice_mean"] == pytest.approx(0.75)


def test_dice_empty_truth_conventions():
    """Empty truth + empty prediction -> 1; empty truth + a predicted voxel -> 0; truth but no prediction -> 0."""
    brats = get_task("brats")
    truth, pred = _regions(3), _regions(3)
    pred[0, 1, 3, 3, 0] = True  # TC predicted where truth is empty
    truth[0, 2, 4, 4, 1] = True  # ET in truth, not predicted
    out = brats.dice(pred, truth)
    assert out["dice_WT"] == 1.0
    assert out["dice_TC"] == 0.0
    assert out["dice_ET"] == 0.0
    assert out["dice_mean"] == pytest.approx(1 / 3)


def test_dice_metric_names_per_task():
    """One dice_<region> per region plus dice_mean; BTCV has the 13 organs."""
    btcv = get_task("btcv")
    out = btcv.dice(_regions(13), _regions(13))
    assert len(out) == 14 and out["dice_mean"] == 1.0
    assert {"dice_spleen", "dice_liver", "dice_aorta", "dice_left_adrenal_gland"} <= set(out)
    assert set(get_task("brats").dice(_regions(3), _regions(3))) == {"dice_WT", "dice_TC", "dice_ET", "dice_mean"}


# ---- BraTS regions -----------------------------------------------------------------------------------
def test_brats_label_to_regions_wt_tc_et():
    """WT = {1, 2, 4}, TC = {1, 4}, ET = {4} (BraTS challenge convention)."""
    brats = get_task("brats")
    label = torch.tensor([0, 1, 2, 4]).view(1, 1, 4, 1, 1)
    regions = brats.label_to_regions(label)
    assert regions.shape == (1, 3, 4, 1, 1) and regions.dtype == torch.bool
    assert regions[0, :, :, 0, 0].tolist() == [
        [False, True, True, True],  # WT
        [False, True, False, True],  # TC
        [False, False, False, True],  # ET
    ]


def test_brats_regions_nested():
    """ET ⊆ TC ⊆ WT for any label map."""
    brats = get_task("brats")
    label = torch.tensor([0, 1, 2, 4])[torch.randint(0, 4, (2, 1, 6, 6, 3), generator=torch.Generator().manual_seed(0))]
    wt, tc, et = brats.label_to_regions(label).unbind(1)
    assert (et <= tc).all() and (tc <= wt).all()


def test_brats_logits_to_regions_sigmoid_threshold():
    """BraTS is multilabel: a region is predicted where its logit > 0 (sigmoid > 0.5)."""
    brats = get_task("brats")
    logits = torch.tensor([3.0, -1.0, 0.5]).view(1, 3, 1, 1, 1)
    assert brats.logits_to_regions(logits).flatten().tolist() == [True, False, True]
    assert brats.num_outputs == 3


def test_brats_label_to_index_maps_4_to_3():
    """Raw BraTS values 0, 1, 2, 4 -> class indices 0, 1, 2, 3."""
    brats = get_task("brats")
    label = torch.tensor([[4, 0], [2, 1]])
    assert brats.label_to_index(label).tolist() == [[3, 0], [2, 1]]


def test_brats_loss_target_is_region_stack():
    """BraTS trains on float WT/TC/ET channels."""
    brats = get_task("brats")
    target = brats.loss_target(torch.tensor([0, 1, 2, 4]).view(1, 1, 4, 1))
    assert target.dtype == torch.float32 and target.shape == (1, 3, 4, 1)
    assert target[0, :, :, 0].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]


# ---- BTCV ---------------------------------------------------------------------------------------------
def test_btcv_label_to_regions_one_channel_per_organ():
    """BTCV region k is label == k+1 (organs 1..13)."""
    btcv = get_task("btcv")
    label = torch.arange(14).view(1, 1, 14, 1, 1)
    regions = btcv.label_to_regions(label)
    assert regions.shape == (1, 13, 14, 1, 1)
    for k in range(13):
        assert regions[0, k, :, 0, 0].nonzero().flatten().tolist() == [k + 1]


def test_btcv_logits_to_regions_argmax():
    """BTCV: argmax over 14 classes, then the winning organ's region is set (background -> none)."""
    btcv = get_task("btcv")
    logits = torch.zeros(1, 14, 3, 1, 1)
    logits[0, 6, 0] = 5.0  # voxel 0 -> liver (6)
    logits[0, 0, 1] = 5.0  # voxel 1 -> background
    logits[0, 13, 2] = 5.0  # voxel 2 -> left adrenal gland (13)
    regions = btcv.logits_to_regions(logits)
    assert regions.shape == (1, 13, 3, 1, 1)
    assert regions[0, :, 0].flatten().nonzero().flatten().tolist() == [5]
    assert not regions[0, :, 1].any()
    assert regions[0, :, 2].flatten().nonzero().flatten().tolist() == [12]
    assert (regions.sum(dim=1) <= 1).all()


def test_btcv_label_to_index_identity_and_outputs():
    """BTCV labels are already contiguous class indices; 14 softmax outputs."""
    btcv = get_task("btcv")
    label = torch.arange(14).view(1, 1, 14)
    assert torch.equal(btcv.label_to_index(label), label)
    assert btcv.num_outputs == 14
    target = btcv.loss_target(label)
    assert target.shape == (1, 14, 14) and target.dtype == torch.float32
    assert torch.equal(target.argmax(dim=1), label[:, 0]) and torch.equal(target.sum(dim=1), torch.ones(1, 14))


def test_perfect_prediction_from_onehot_logits_scores_one():
    """Logits that are one-hot on the true class give Dice 1 for every present organ."""
    btcv = get_task("btcv")
    label = torch.randint(0, 14, (1, 1, 6, 6, 4), generator=torch.Generator().manual_seed(1))
    logits = torch.nn.functional.one_hot(label[:, 0], 14).permute(0, 4, 1, 2, 3).float()
    out = btcv.dice(btcv.logits_to_regions(logits), btcv.label_to_regions(label))
    assert all(v == pytest.approx(1.0) for v in out.values())


def test_btcv_organ_numbering_matches_challenge():
    """BTCV label k is organ k of the challenge (1 spleen ... 6 liver ... 13 left adrenal gland)."""
    assert get_task("btcv").region_names == (
        "spleen", "right_kidney", "left_kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
        "inferior_vena_cava", "portal_splenic_veins", "pancreas", "right_adrenal_gland", "left_adrenal_gland",
    )
    brats = get_task("brats")
    assert brats.channels == ("t1", "t1ce", "t2", "flair") and brats.label_values == (0, 1, 2, 4)
