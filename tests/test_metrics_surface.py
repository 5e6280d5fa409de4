"""Surface-distance and lesion metrics (tasks/metrics.py) and per-task metric keys, on hand-made masks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tasks.hie  # noqa: F401  (registration)
import tasks.wmh  # noqa: F401
from tasks import get_task
from tasks.metrics import grid_diagonal_mm, hd95, lesion_recall, lesion_size_bucket, masd, nsd, pooled_dice

SPACING = (0.5, 1.0, 3.0)  # mm, anisotropic on purpose


def _masks(k: int = 1, shape=(8, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(1, k, *shape, dtype=torch.bool), torch.zeros(1, k, *shape, dtype=torch.bool)


@pytest.fixture
def one_truth_two_predicted():
    """Truth: voxel (1,1,1). Prediction: (3,1,1), 2 voxels away along x (1.0 mm), and (1,1,3), 2 along z (6.0 mm)."""
    pred, true = _masks()
    true[0, 0, 1, 1, 1] = True
    pred[0, 0, 3, 1, 1] = True
    pred[0, 0, 1, 1, 3] = True
    return pred, true


# ---- HD95 / MASD / NSD on known distances ----------------------------------------------------------
def test_hd95_anisotropic_hand_computed(one_truth_two_predicted):
    """pred -> truth distances {1, 6} mm, truth -> pred {1}: HD95 = max(q95{1, 6}, q95{1}) = 1 + 0.95·5 = 5.75 mm
    (linearly interpolated percentile); with isotropic 1 mm voxels both distances are 2 -> 2."""
    pred, true = one_truth_two_predicted
    assert hd95(pred, true, spacing=SPACING).item() == pytest.approx(5.75)
    assert hd95(true, pred, spacing=SPACING).item() == pytest.approx(5.75)  # symmetric
    assert hd95(pred, true, spacing=(1.0, 1.0, 1.0)).item() == pytest.approx(2.0)


# ---- MASD / NSD: DeepMind surface elements, as the BONBID-HIE evaluator ------------------------------
def _reference_surfels(mask_gt: np.ndarray, mask_pred: np.ndarray, spacing) -> dict[str, np.ndarray]:
    """DeepMind ``surface_distance.compute_surface_distances`` (which BONBID-HIE's evaluation.py copies), 3D:
    crop to the joint bounding box with one zero layer after it, 2x2x2 neighbour codes at the voxel corners,
    surfel areas from the marching-cubes normals of each code scaled by the spacing, distances from each
    surfel to the other mask's surfels by a Euclidean distance transform in mm."""
    from scipy import ndimage

    from monai.metrics.utils import _get_neighbour_code_to_normals_table  # DeepMind's 256-code normals table

    normals = _get_neighbour_code_to_normals_table()
    area = np.zeros(256)
    for code in range(256):
        for n in np.asarray(normals[code], dtype=float).reshape(-1, 3):
            area[code] += np.linalg.norm([n[0] * spacing[1] * spacing[2], n[1] * spacing[0] * spacing[2], n[2] * spacing[0] * spacing[1]])
    both = mask_gt | mask_pred
    lo = [int(np.flatnonzero(both.any(axis=tuple(a for a in range(3) if a != d))).min()) for d in range(3)]
    hi = [int(np.flatnonzero(both.any(axis=tuple(a for a in range(3) if a != d))).max()) for d in range(3)]
    kernel = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])
    out = {}
    for name, mask in (("gt", mask_gt), ("pred", mask_pred)):
        crop = np.zeros([h - l + 2 for l, h in zip(lo, hi)], np.uint8)
        crop[:-1, :-1, :-1] = mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
        code = ndimage.correlate(crop, kernel, mode="constant", cval=0)
        out[f"border_{name}"] = (code != 0) & (code != 255)
        out[f"area_{name}"] = area[code]
    dist_gt = ndimage.distance_transform_edt(~out["border_gt"], sampling=spacing)
    dist_pred = ndimage.distance_transform_edt(~out["border_pred"], sampling=spacing)
    return {"d_gt_to_pred": dist_pred[out["border_gt"]], "d_pred_to_gt": dist_gt[out["border_pred"]],
            "area_gt": out["area_gt"][out["border_gt"]], "area_pred": out["area_pred"][out["border_pred"]]}


def _reference_masd_nsd(gt: np.ndarray, pred: np.ndarray, spacing, tolerance: float = 2.0) -> tuple[float, float]:
    """BONBID-HIE ``compute_MASD`` and ``compute_surface_dice_at_tolerance(…, 2)`` on the surfels above."""
    r = _reference_surfels(gt, pred, spacing)
    to_pred = (r["d_gt_to_pred"] * r["area_gt"]).sum() / r["area_gt"].sum()
    to_gt = (r["d_pred_to_gt"] * r["area_pred"]).sum() / r["area_pred"].sum()
    nsd_value = ((r["area_gt"][r["d_gt_to_pred"] <= tolerance]).sum() + (r["area_pred"][r["d_pred_to_gt"] <= tolerance]).sum()) / (
        r["area_gt"].sum() + r["area_pred"].sum())
    return (to_pred + to_gt) / 2, nsd_value


def _blob(shape, centre, radii) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    return (((grid - np.array(centre)[:, None, None, None]) / np.array(radii)[:, None, None, None]) ** 2).sum(axis=0) <= 1.0


def test_surfel_reference_table_sanity():
    """The reference's surfel areas: one corner in (code 1) is a triangle of area √3/8 at 1 mm; a half-filled
    2x2x2 neighbourhood split across axis 0 (code 15) is a full face of area spacing[1]·spacing[2]."""
    one = _reference_surfels(np.pad(np.ones((1, 1, 1), bool), 2), np.pad(np.ones((1, 1, 1), bool), 2), (1.0, 1.0, 1.0))
    assert one["area_gt"].min() == pytest.approx(math.sqrt(3) / 8)
    face = np.zeros((4, 4, 4), bool)
    face[1, 1:3, 1:3] = True  # a 1x2x2 slab: its large faces are made of code-15 / code-240 surfels
    r = _reference_surfels(face, face, SPACING)
    assert r["area_gt"].max() == pytest.approx(SPACING[1] * SPACING[2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hie_masd_nsd_equal_the_surfel_reference_on_anisotropic_masks(seed):
    """BONBID-HIE's MASD and NSD (DeepMind surface elements) at 0.8 x 1 x 3 mm: ours equal a surfel reference
    written here, to 1e-6; boundary-voxel values (MONAI's default) would differ by ~0.06 NSD / ~0.4 mm MASD."""
    spacing = (0.8, 1.0, 3.0)
    rng = np.random.default_rng(seed)
    shape = (40, 36, 14)
    gt = _blob(shape, rng.uniform([14, 12, 5], [24, 22, 8]), rng.uniform([4, 4, 1.5], [9, 8, 3.5]))
    pred = _blob(shape, rng.uniform([14, 12, 5], [24, 22, 8]), rng.uniform([4, 4, 1.5], [9, 8, 3.5]))
    pred |= _blob(shape, rng.uniform([5, 5, 3], [35, 30, 10]), (2.5, 2.5, 1.2))  # a second, false-positive lesion
    want_masd, want_nsd = _reference_masd_nsd(gt, pred, spacing)
    t, p = torch.from_numpy(gt)[None, None], torch.from_numpy(pred)[None, None]
    assert masd(p, t, spacing=spacing).item() == pytest.approx(want_masd, abs=1e-6)
    assert nsd(p, t, spacing=spacing).item() == pytest.approx(want_nsd, abs=1e-6)
    assert masd(t, p, spacing=spacing).item() == pytest.approx(want_masd, abs=1e-6)  # symmetric
    assert nsd(t, p, spacing=spacing).item() == pytest.approx(want_nsd, abs=1e-6)


def test_masd_is_mean_of_the_two_directed_averages(one_truth_two_predicted):
    """MASD = (mean truth -> pred + mean pred -> truth) / 2 (BONBID-HIE ``compute_MASD``), each mean weighted
    by surfel area, not the pooled mean of all distances; NSD at 2 mm as the surfel reference."""
    pred, true = one_truth_two_predicted
    r = _reference_surfels(true[0, 0].numpy(), pred[0, 0].numpy(), SPACING)
    to_pred = (r["d_gt_to_pred"] * r["area_gt"]).sum() / r["area_gt"].sum()
    to_gt = (r["d_pred_to_gt"] * r["area_pred"]).sum() / r["area_pred"].sum()
    pooled = (np.concatenate([r["d_gt_to_pred"] * r["area_gt"], r["d_pred_to_gt"] * r["area_pred"]]).sum()
              / np.concatenate([r["area_gt"], r["area_pred"]]).sum())
    assert masd(pred, true, spacing=SPACING).item() == pytest.approx((to_pred + to_gt) / 2)
    assert masd(pred, true, spacing=SPACING).item() != pytest.approx(pooled)
    assert nsd(pred, true, spacing=SPACING).item() == pytest.approx(_reference_masd_nsd(true[0, 0].numpy(), pred[0, 0].numpy(), SPACING)[1])
    assert nsd(pred, true, spacing=SPACING, tolerance_mm=8.0).item() == pytest.approx(1.0)


def test_identical_masks_and_shifted_slab():
    """Identical masks: HD95 = MASD = 0, NSD = 1. A 2x2 block moved one slice along z (3 mm): HD95 (boundary
    voxels) = 3 mm; MASD / NSD as the surfel reference (the slabs share a face of voxel corners)."""
    pred, true = _masks()
    true[0, 0, 2:4, 2:4, 2] = True
    assert hd95(true, true, spacing=SPACING).item() == 0.0
    assert masd(true, true, spacing=SPACING).item() == 0.0
    assert nsd(true, true, spacing=SPACING).item() == 1.0
    pred[0, 0, 2:4, 2:4, 3] = True
    assert hd95(pred, true, spacing=SPACING).item() == pytest.approx(3.0)
    want_masd, want_nsd = _reference_masd_nsd(true[0, 0].numpy(), pred[0, 0].numpy(), SPACING)
    assert masd(pred, true, spacing=SPACING).item() == pytest.approx(want_masd)
    assert nsd(pred, true, spacing=SPACING).item() == pytest.approx(want_nsd)


def test_unbatched_masks_and_per_channel_results():
    """[K, *spatial] masks are one case; results are [1, K], one value per region channel."""
    pred, true = _masks(k=2)
    true[0, :, 4, 4, 4] = True
    pred[0, 0, 4, 4, 4] = True
    pred[0, 1, 4, 4, 5] = True  # 3 mm off
    assert hd95(pred[0], true[0], spacing=SPACING).tolist() == [[0.0, 3.0]]


def test_wrong_mask_rank_is_an_error():
    with pytest.raises(ValueError, match="spatial"):
        hd95(torch.zeros(8, 8, dtype=torch.bool), torch.zeros(8, 8, dtype=torch.bool), spacing=SPACING)


# ---- empty-mask rules -------------------------------------------------------------------------------
def test_hd95_empty_rules():
    """Both empty -> 0; exactly one empty -> NaN, undefined (Metrics Reloaded; either direction), or with
    empty="diagonal" the grid diagonal in mm (BraTS)."""
    pred, true = _masks()
    assert hd95(pred, true, spacing=SPACING).item() == 0.0
    diagonal = math.sqrt((8 * 0.5) ** 2 + (8 * 1.0) ** 2 + (8 * 3.0) ** 2)
    true[0, 0, 4, 4, 4] = True
    assert math.isnan(hd95(pred, true, spacing=SPACING).item()) and math.isnan(hd95(true, pred, spacing=SPACING).item())
    assert hd95(pred, true, spacing=SPACING, empty="diagonal").item() == pytest.approx(diagonal)
    assert hd95(true, pred, spacing=SPACING, empty="diagonal").item() == pytest.approx(diagonal)
    with pytest.raises(ValueError, match="empty="):
        hd95(pred, true, spacing=SPACING, empty="max")


def test_hd95_worst_case_is_brats_373_on_the_brats_grid():
    """On BraTS' 240 x 240 x 155 grid of 1 mm voxels the one-empty value is the BraTS evaluation's 373.1287 mm."""
    assert grid_diagonal_mm((240, 240, 155), (1.0, 1.0, 1.0)) == pytest.approx(373.1287, abs=1e-4)
    pred, true = _masks(shape=(240, 240, 155))
    pred[0, 0, 100, 100, 70] = True
    assert hd95(pred, true, spacing=(1.0, 1.0, 1.0), empty="diagonal").item() == pytest.approx(373.1287, abs=1e-4)


@pytest.mark.parametrize("case", ["both_empty", "truth_empty", "prediction_empty"])
def test_hie_challenge_empty_mask_rules(case):
    """BONBID-HIE evaluation.py: both empty -> Dice 1, MASD 0, NSD 1; one empty -> Dice 0, MASD NaN, NSD 0."""
    pred, true = _masks()
    if case == "truth_empty":
        pred[0, 0, 2:4, 2:4, 2:4] = True
    if case == "prediction_empty":
        true[0, 0, 2:4, 2:4, 2:4] = True
    image = np.zeros((2, 8, 8, 8), dtype=np.float32)  # all brain
    out = get_task("hie").metrics(pred, true, spacing=SPACING, image=image)
    if case == "both_empty":
        assert (out["dice_lesion"], out["masd"], out["nsd"], out["hd95_lesion"]) == (1.0, 0.0, 1.0, 0.0)
    else:
        assert out["dice_lesion"] == 0.0 and out["nsd"] == 0.0 and math.isnan(out["masd"])
        assert math.isnan(out["hd95_lesion"]) and math.isnan(out["hd95_mean"])  # undefined (Metrics Reloaded)
    assert out["empty_pred_lesion"] == (1.0 if case == "prediction_empty" else 0.0)  # only a missed lesion is an empty prediction


# ---- lesion-wise and size-grouped metrics ---------------------------------------------------------
def test_lesion_recall_uses_26_connectivity():
    """Truth: (1,1,1)+(2,2,2) touch at a corner -> ONE lesion (full connectivity, as the WMH script);
    plus (5,5,5) and (1,6,1): 3 lesions. Predicting (2,2,2) and (5,5,5) detects 2 of 3."""
    pred, true = np.zeros((8, 8, 8), bool), np.zeros((8, 8, 8), bool)
    for voxel in [(1, 1, 1), (2, 2, 2), (5, 5, 5), (1, 6, 1)]:
        true[voxel] = True
    pred[2, 2, 2] = pred[5, 5, 5] = True
    pred[7, 7, 7] = True  # a false positive does not change recall
    assert lesion_recall(pred, true) == pytest.approx(2 / 3)
    assert lesion_recall(np.zeros_like(pred), true) == 0.0
    assert lesion_recall(pred, np.zeros_like(true)) == 1.0  # no true lesion: 1.0 as in the WMH script
    assert lesion_recall(torch.from_numpy(true), torch.from_numpy(true)) == 1.0


@pytest.mark.parametrize("percent, bucket", [(0.0, "lt1"), (0.99, "lt1"), (1.0, "1to5"), (5.0, "1to5"), (5.01, "gt5"), (40.0, "gt5")])
def test_lesion_size_bucket_bounds(percent, bucket):
    assert lesion_size_bucket(percent) == bucket


@pytest.mark.parametrize("lesion_voxels, bucket", [(20, "lt1"), (120, "1to5"), (400, "gt5")])
def test_hie_dice_reported_only_in_its_size_bucket(lesion_voxels, bucket):
    """Brain = 4000 voxels above the −6 background (of 8000); lesions of 20 / 120 / 400 voxels are 0.5 / 3 / 10 %
    of the brain. The case's Dice appears under dice_size_<its bucket> only."""
    shape = (20, 20, 20)
    image = np.full((2, *shape), -6.0, dtype=np.float32)
    image[:, :, :, :10] = 0.3  # brain: half the volume
    pred, true = _masks(shape=shape)
    lesion = tuple(np.argwhere(image[0] > -6)[:lesion_voxels].T)  # lesion_voxels brain voxels
    true[0, 0][lesion] = True
    pred[0, 0][tuple(axis[: lesion_voxels // 2] for axis in lesion)] = True  # half of them predicted
    out = get_task("hie").metrics(pred, true, spacing=(1.0, 1.0, 1.0), image=image)
    dice = 2 * (lesion_voxels // 2) / (lesion_voxels + lesion_voxels // 2)
    assert out["dice_lesion"] == pytest.approx(dice)
    assert out[f"dice_size_{bucket}"] == pytest.approx(dice)
    assert [k for k in out if k.startswith("dice_size_")] == [f"dice_size_{bucket}"]
    assert {"masd", "nsd", "hd95_lesion", "dice_mean"} <= set(out)


def test_hie_metrics_need_the_image():
    pred, true = _masks()
    with pytest.raises(ValueError, match="image"):
        get_task("hie").metrics(pred, true, spacing=SPACING)


# ---- BraTS "All" and default keys ------------------------------------------------------------------
def test_brats_dice_all_pools_the_three_regions():
    """WT: 4 of 4 right; TC: 2 predicted, none true; ET: 2 true, none predicted.
    All = 2·4 / (6 + 6) = 2/3 (SI paper: WT+TC+ET concatenated), whereas the mean of Dice is 1/3."""
    pred, true = _masks(k=3)
    pred[0, 0, 0:2, 0:2, 0] = true[0, 0, 0:2, 0:2, 0] = True
    pred[0, 1, 4, 4, 0:2] = True
    true[0, 2, 6, 6, 0:2] = True
    assert pooled_dice(pred, true).item() == pytest.approx(2 / 3)
    out = get_task("brats").metrics(pred, true, spacing=SPACING)
    assert out["dice_all"] == pytest.approx(2 / 3) and out["dice_mean"] == pytest.approx(1 / 3)
    assert set(out) == {"dice_WT", "dice_TC", "dice_ET", "dice_mean", "dice_all", "hd95_WT", "hd95_TC", "hd95_ET", "hd95_mean",
                        "empty_pred_WT", "empty_pred_TC", "empty_pred_ET"}
    assert out["hd95_WT"] == 0.0 and math.isnan(out["hd95_TC"]) and math.isnan(out["hd95_ET"]) and math.isnan(out["hd95_mean"])
    assert (out["empty_pred_WT"], out["empty_pred_TC"], out["empty_pred_ET"]) == (0.0, 0.0, 1.0)  # TC: hallucinated, ET: missed


def test_default_metrics_add_hd95_per_region_and_mean():
    """Every task reports dice_<region>, dice_mean, hd95_<region>, hd95_mean; hd95 in mm of ``spacing``."""
    btcv = get_task("btcv")
    pred, true = _masks(k=13)
    true[0, :, 4, 4, 4] = True
    pred[0, :, 4, 4, 5] = True  # every organ one slice off: 3 mm
    out = btcv.metrics(pred, true, spacing=SPACING)
    assert set(out) == ({f"dice_{n}" for n in btcv.region_names} | {f"hd95_{n}" for n in btcv.region_names} | {"dice_mean", "hd95_mean"}
                        | {f"empty_pred_{n}" for n in btcv.region_names})
    assert out["hd95_liver"] == pytest.approx(3.0) and out["hd95_mean"] == pytest.approx(3.0)
    assert out == {**btcv.dice(pred, true), **{k: v for k, v in out.items() if k.startswith(("hd95", "empty_pred_"))}}
    assert not any(v for k, v in out.items() if k.startswith("empty_pred_"))  # every organ predicted


def test_wmh_metrics_keys_and_lesion_recall():
    """WMH: dice_wmh, hd95_wmh (+ means) and lesion_recall."""
    pred, true = _masks()
    true[0, 0, 1, 1, 1] = true[0, 0, 5, 5, 5] = True
    pred[0, 0, 5, 5, 5] = True
    out = get_task("wmh").metrics(pred, true, spacing=SPACING)
    assert set(out) == {"dice_wmh", "dice_mean", "hd95_wmh", "hd95_mean", "lesion_recall", "empty_pred_wmh"}
    assert out["lesion_recall"] == 0.5 and out["dice_wmh"] == pytest.approx(2 / 3)
