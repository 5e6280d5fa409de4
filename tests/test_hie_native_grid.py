"""HIE scored on its native grid (issue 21 item 7): the paper profile trains and predicts on 256 x 256 upscaled slices
(LADP II.B), the challenge scores the native grid at the native spacing. A resampled case keeps its native grid
(``Volume.native``, also in the prepared copy); the evaluation resamples the predicted probabilities back
(``benchmark.inference.to_grid``) and computes every metric there."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tasks.hie  # noqa: F401  (registration)
from benchmark.volumes import inplane_resize, load_volumes
from benchmark.inference import to_grid
from benchmark.kinds import SEGMENTATION
from benchmark.protocol import DEFAULT_PROTOCOL
from tasks import Volume, get_task

HIE = get_task("hie")


class LabelEcho(nn.Module):
    """A 'network' whose lesion logit is +10 where image channel 0 is 1 and -10 elsewhere: it predicts, on whatever
    grid it is run, exactly the mask written into channel 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, X, Y] -> [B, 2, X, Y]
        lesion = 20.0 * x[:, :1] - 10.0
        return torch.cat([-lesion, lesion], dim=1)


def _rows(volume: Volume, roi) -> dict[str, float]:
    rows = SEGMENTATION.evaluate(LabelEcho(), HIE, [volume], roi=roi, device="cpu", protocol=DEFAULT_PROTOCOL, log=lambda _m: None)
    return {r.metric: r.value for r in rows}


def _predicting(volume: Volume, mask: np.ndarray) -> Volume:
    """``volume`` whose (upscaled) image makes ``LabelEcho`` predict ``mask`` [X, Y, Z] on the volume's grid."""
    image = np.array(volume.image)
    image[0] = mask
    return Volume(case_id=volume.case_id, image=image, label=volume.label, spacing=volume.spacing, native=volume.native)


def _self_scores(native: Volume) -> dict[str, float]:
    true = HIE.label_to_regions(torch.from_numpy(np.asarray(native.label, dtype=np.int64))[None, None])
    return HIE.metrics(true, true, spacing=native.spacing, image=native.image)


@pytest.fixture(scope="module")
def hie_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("hie")
    HIE.write_synthetic(root, n_cases=4, shape=HIE.synthetic_shape, seed=0)
    return next(c for c in HIE.find_cases(root) if c.case_id.startswith("MGHNICU_003"))  # a 1-5 % lesion load


def test_paper_inplane_resize_keeps_the_native_grid_also_when_prepared(hie_case, tmp_path):
    """load_volumes (paper profile: no volume_size) upscales HIE slices to 256 x 256 and keeps the case as read in
    ``native``; the prepared copy holds it too (memory-mapped); an unresampled case has none."""
    from benchmark.prepared import open_case, write_case

    read = HIE.load(hie_case)
    volume = load_volumes(HIE, [hie_case], volume_size=None)[0]
    assert volume.image.shape[1:3] == (256, 256) and volume.native is not None
    assert np.array_equal(volume.native.image, read.image) and np.array_equal(volume.native.label, read.label)
    assert volume.native.spacing == read.spacing and volume.spacing[0] == pytest.approx(read.spacing[0] * 64 / 256)
    write_case(tmp_path / "case", volume)
    opened = open_case(tmp_path / "case")
    assert np.array_equal(opened.native.image, read.image) and np.array_equal(opened.native.label, read.label)
    assert opened.native.spacing == pytest.approx(read.spacing)
    smoke = load_volumes(HIE, [hie_case], volume_size=(64, 64, 32))[0]  # the smoke grid is the synthetic one: nothing resampled
    assert smoke.native is None and inplane_resize(read, (64, 64)) is read


def test_prediction_equal_to_the_upscaled_label_scores_as_the_native_label_itself(hie_case):
    """A prediction equal to the label on the 256 x 256 grid, resampled back, gives exactly the metrics of the native
    label against itself (Dice 1, MASD 0, NSD 1, HD95 0, and the native lesion-size group)."""
    volume = load_volumes(HIE, [hie_case], volume_size=None)[0]
    rows = _rows(_predicting(volume, volume.label), roi=(256, 256))
    assert rows == pytest.approx(_self_scores(volume.native))
    assert rows["dice_lesion"] == 1.0 and rows["masd"] == 0.0 and rows["nsd"] == 1.0 and rows["dice_size_1to5"] == 1.0


@pytest.mark.parametrize("side", [60, 100, 240])
def test_round_trip_at_non_integer_factors_is_near_exact(side):
    """x 4.27, x 2.56, x 1.07: the label upscaled centre-aligned (nearest-exact) and a prediction equal to it resampled
    back give the native label but for at most 1 % of its voxels (convex lesion corners near factor 1, where the
    filter weighs the corner's two outside neighbours against it), with Dice and NSD above 0.99 and MASD below
    0.05 mm. (torch's plain nearest, sampling half a voxel off the image's grid, lost 8 voxels at x 2.56.)"""
    rng = np.random.default_rng(0)
    label = np.zeros((side, side, 6), dtype=np.int64)
    for _ in range(4):
        x, y = rng.integers(5, side - 15, size=2)
        label[x : x + 11, y : y + 7, 1:5] = 1
    native = Volume(case_id="c", image=np.zeros((2, side, side, 6), dtype=np.float32), label=label, spacing=(0.9, 0.9, 4.0))
    volume = inplane_resize(native, (256, 256))
    logits = torch.from_numpy(np.stack([1 - volume.label, volume.label])[None] * 20.0 - 10.0).float()  # [1, 2, 256, 256, 6]
    back = to_grid(logits, native.image.shape[1:]).argmax(dim=1)[0].numpy()
    assert (back != label).sum() <= 0.01 * label.sum()
    rows = _rows(_predicting(volume, volume.label), roi=(256, 256))
    assert rows["dice_lesion"] > 0.99 and rows["nsd"] > 0.99 and rows["masd"] < 0.05


def test_a_known_shift_gives_the_known_distances_at_native_spacing():
    """A one-voxel lesion predicted d = 2 native voxels away along X (8 voxels of the x4 upscaled grid), native spacing
    (1.2, 0.9, 3.0) mm. DeepMind's surfels of one voxel are its 8 corners, of equal area; the truth's corners at x = 5
    and 6 are 2.4 and 1.2 mm from the prediction's nearest ones (x = 7), and the prediction's likewise: MASD =
    (d - 1/2)·s_x = 1.8 mm, NSD at 2 mm = 1/2 (half of each surface within tolerance), HD95 (boundary voxels) d·s_x =
    2.4 mm. Scored on the upscaled grid (the old way) the same prediction is a 4 x 4 block at 0.3 mm in-plane
    spacing whose NSD is 0.59: the native grid is what is scored."""
    label = np.zeros((16, 16, 4), dtype=np.int64)
    label[5, 7, 2] = 1
    native = Volume(case_id="c", image=np.zeros((2, 16, 16, 4), dtype=np.float32), label=label, spacing=(1.2, 0.9, 3.0))
    volume = inplane_resize(native, (64, 64))
    assert volume.spacing == pytest.approx((0.3, 0.225, 3.0))
    shifted = np.roll(volume.label, 8, axis=0)
    rows = _rows(_predicting(volume, shifted), roi=(64, 64))
    assert rows["masd"] == pytest.approx(1.8) and rows["nsd"] == pytest.approx(0.5)
    assert rows["hd95_lesion"] == pytest.approx(2.4) and rows["dice_lesion"] == 0.0
    upscaled = _rows(_predicting(Volume(case_id="c", image=volume.image, label=volume.label, spacing=volume.spacing), shifted), roi=(64, 64))
    assert upscaled["nsd"] == pytest.approx(0.593, abs=1e-3)


def test_to_grid_resamples_probabilities_not_labels():
    """One native voxel upscaled x 4 in-plane (4 x 4 sub-voxels): its probability is the sub-voxels' probabilities
    weighted by the anti-aliasing triangle filter (1 - d / 4 at distance d from its centre: 0.625, 0.875, 0.875,
    0.625 per axis, normalised), so a lesion on 10 of the 16 sub-voxels wins it and one on 6 does not, whichever
    single sub-voxel a nearest-neighbour resampling would have kept. The classes' probabilities sum to one, sigmoid
    outputs (multilabel) give the same decisions, and the same grid is returned as is."""
    weights = torch.tensor([0.625, 0.875, 0.875, 0.625]) / 3.0
    for n_lesion, wins in ((10, True), (6, False)):
        mask = (torch.arange(16).reshape(4, 4) < n_lesion).float()[..., None]  # [4, 4, 1] sub-voxels
        lesion = 20.0 * mask - 10.0
        logits = torch.stack([-lesion, lesion])[None]  # [1, 2, 4, 4, 1]
        native = to_grid(logits, (1, 1, 1))
        expected = float((weights[:, None] * weights[None, :] * torch.sigmoid(2 * lesion[..., 0])).sum())
        assert native.shape == (1, 2, 1, 1, 1) and float(native.exp()[0, 1]) == pytest.approx(expected, abs=1e-5)
        assert (expected > 0.5) == wins and bool(native.argmax(dim=1).item()) == wins
        torch.testing.assert_close(native.exp().sum(dim=1), torch.ones(1, 1, 1, 1))
        assert bool(to_grid(logits[:, 1:], (1, 1, 1), multilabel=True).item() > 0) == wins
    assert to_grid(logits, (4, 4, 1)) is logits
