"""The papers' fine-tuning augmentation (benchmark/spatial_augmentation.py), checked against the papers' text:

SI 5.5.3 (rotation, scaling, flipping, elastic deformation, nnU-Net's defaults), LADP II.D (horizontal and
vertical flips), CSM IV.A (random flips), DAE 3.2 (flips on all axes, Gaussian noise, contrast scaling, zoom).
Every method of a comparison gets the same draws; ``none`` is exactly today's crops.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from benchmark.data import CropDataset, load_volumes
from benchmark.errors import BenchmarkInputError
from benchmark.spatial_augmentation import POLICIES, SpatialAugmentation, policy_transforms, resolve_policy
from tasks import Volume, get_task
from benchmark.records import FinetuneSettings
from benchmark.kinds import kind_of

SHAPES = {2: (12, 10), 3: (12, 10, 6)}  # small, distinct sides: a flip of one axis is never another's


def _pattern(spatial_dims: int, seed: int = 0, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """A 2-channel image and a label of random values: any resampling other than flips changes them."""
    rng = np.random.default_rng(seed)
    shape = shape or SHAPES[spatial_dims]
    label = rng.choice([0, 1, 2, 4], size=(1, *shape)).astype(np.int64)
    image = np.concatenate([label, 10 + label]).astype(np.float32) + rng.random((2, *shape), dtype=np.float32) * 0.1
    return image, label


def _flip_of(original: np.ndarray, out: np.ndarray, spatial_dims: int) -> tuple[int, ...] | None:
    """The spatial axes whose flip turns ``original`` [C, *spatial] into ``out``; None if no flip combination does."""
    for r in range(spatial_dims + 1):
        for axes in itertools.combinations(range(spatial_dims), r):
            flipped = np.flip(original, axis=tuple(1 + a for a in axes)) if axes else original
            if np.array_equal(flipped, out):
                return axes
    return None


def _flip_stats(policy: str, spatial_dims: int, n: int, shape=None):
    """Over ``n`` seeds: the share of samples that are a pure flip of the input, and per axis the share of those flipped."""
    aug = SpatialAugmentation(policy, spatial_dims=spatial_dims)
    image, label = _pattern(spatial_dims, shape=shape)
    flips = []
    for seed in range(n):
        _, out = aug(image, label, seed=seed)
        flips.append(_flip_of(label, out, spatial_dims))
    pure = [f for f in flips if f is not None]
    return len(pure) / n, [sum(a in f for f in pure) / max(1, len(pure)) for a in range(spatial_dims)]


# ---- each policy does what its paper says --------------------------------------------------------------------
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ladp_flips_horizontally_and_vertically_only(spatial_dims):
    """LADP II.D: "randomly flipped horizontally and vertically": X and Y flip (p = 0.5 each), Z never; nothing else."""
    pure, per_axis = _flip_stats("ladp", spatial_dims, 400)
    assert pure == 1.0  # flips only: every sample is a flip of the input, image and label alike
    assert per_axis[0] == pytest.approx(0.5, abs=0.08) and per_axis[1] == pytest.approx(0.5, abs=0.08)
    if spatial_dims == 3:
        assert per_axis[2] == 0.0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_csm_flips_every_axis_with_probability_half(spatial_dims):
    """CSM IV.A: "we randomly flip": each spatial axis independently with p = 0.5 (as the classification datasets did)."""
    pure, per_axis = _flip_stats("csm", spatial_dims, 400)
    assert pure == 1.0
    assert per_axis == pytest.approx([0.5] * spatial_dims, abs=0.08)


SQUARE = {2: (12, 12), 3: (12, 12, 6)}  # the dae policy rotates by 90 degrees in-plane: X == Y


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dae_parts_fire_at_the_authors_probabilities(spatial_dims):
    """DAE 3.2 with the authors' BTCV code (research-contributions DAE/BTCV_Finetune: data_utils.py + main.py defaults):
    a flip per axis p = 0.2, a 90-degree rotation p = 0.2 with k uniform in {1, 2, 3}, intensity scaling and shifting
    p = 0.1 each; the paper's zoom and noise (MONAI defaults) p = 0.1 each (read from each MONAI transform's draw)."""
    aug = SpatialAugmentation("dae", spatial_dims=spatial_dims)
    image, label = _pattern(spatial_dims, shape=SQUARE[spatial_dims])
    fired, ks = [], []
    for seed in range(800):
        aug(image, label, seed=seed)
        fired.append([t._do_transform for t in aug.transforms])
        rotate = next(t for t in aug.transforms if type(t).__name__ == "RandRotate90d")
        if rotate._do_transform:
            ks.append(rotate._rand_k)
    names = [type(t).__name__ for t in aug.transforms]
    assert names == ["RandFlipd"] * spatial_dims + ["RandRotate90d", "RandZoomd", "RandGaussianNoised", "RandScaleIntensityd",
                                                    "RandShiftIntensityd"]
    rates = np.mean(fired, axis=0)
    expected = [0.2] * spatial_dims + [0.2, 0.1, 0.1, 0.1, 0.1]
    assert rates == pytest.approx(expected, abs=0.045)  # ~3 standard errors at p = 0.2, n = 800
    assert sorted(set(ks)) == [1, 2, 3] and np.bincount(ks)[1:] / len(ks) == pytest.approx([1 / 3] * 3, abs=0.1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dae_rotation_is_a_quarter_turn_in_plane_and_the_shift_an_image_offset(spatial_dims):
    """When only the 90-degree rotation fires, image and label are np.rot90 of the input in the X-Y plane (k quarter
    turns, Z untouched); when only the intensity shift fires, the label is unchanged and the image moved by one
    offset in [-0.1, 0.1] everywhere (MONAI RandShiftIntensityd, offsets 0.1)."""
    aug = SpatialAugmentation("dae", spatial_dims=spatial_dims)
    image, label = _pattern(spatial_dims, shape=SQUARE[spatial_dims])
    rotated = shifted = 0
    for seed in range(600):
        new_image, new_label = aug(image, label, seed=seed)
        on = {type(t).__name__ for t in aug.transforms if t._do_transform}
        if on == {"RandRotate90d"}:
            k = next(t for t in aug.transforms if type(t).__name__ == "RandRotate90d")._rand_k
            assert np.array_equal(new_label, np.rot90(label, k=k, axes=(1, 2)))
            np.testing.assert_allclose(new_image, np.rot90(image, k=k, axes=(1, 2)))
            rotated += 1
        if on == {"RandShiftIntensityd"}:
            offset = new_image - image
            assert np.array_equal(new_label, label) and np.ptp(offset) < 1e-5 and abs(offset.flat[0]) <= 0.1 + 1e-6
            shifted += 1
    assert rotated >= 10 and shifted >= 5
    with pytest.raises(ValueError, match="square"):
        aug(*_pattern(spatial_dims), seed=0)  # 12 x 10: a quarter turn would change the sample's shape


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_si_parts_fire_at_nnunet_probabilities(spatial_dims):
    """SI 5.5.3 with nnU-Net's defaults: rotation, scaling and elastic deformation each with p = 0.2, mirroring with
    p = 0.5 per axis (read from each MONAI transform's draw). In 2D (rotations up to 180 degrees: never a no-op) a
    sample is then a pure mirroring of its input with p = 0.8^3 = 0.512."""
    aug = SpatialAugmentation("si", spatial_dims=spatial_dims)
    image, label = _pattern(spatial_dims)
    fired = []
    for seed in range(600):
        aug(image, label, seed=seed)
        fired.append([t._do_transform for t in aug.transforms])
    names = [type(t).__name__ for t in aug.transforms]
    rates = dict(zip([f"{n}{i}" if n == "RandFlipd" else n for i, n in enumerate(names)], np.mean(fired, axis=0)))
    elastic = "Rand2DElasticd" if spatial_dims == 2 else "Rand3DElasticd"
    for name in ("RandRotated", "RandZoomd", elastic):
        assert rates.pop(name) == pytest.approx(0.2, abs=0.05), name  # 3 standard errors
    assert list(rates.values()) == pytest.approx([0.5] * spatial_dims, abs=0.065)  # the flips, one per axis
    if spatial_dims == 2:
        pure, per_axis = _flip_stats("si", 2, 400)
        assert pure == pytest.approx(0.512, abs=0.08)
    assert not any("Elastic" in type(t).__name__ for t in policy_transforms("si", spatial_dims=spatial_dims, elastic=False))


def _blob(spatial_dims: int, seed: int) -> np.ndarray:
    """A binary label of two boxes off the centre (so rotations and flips move it)."""
    rng = np.random.default_rng(seed)
    shape = (64, 64) if spatial_dims == 2 else (32, 32, 24)  # square in-plane: the dae policy turns by 90 degrees
    label = np.zeros((1, *shape), dtype=np.int64)
    for _ in range(2):
        lo = [int(rng.integers(2, s // 2)) for s in shape]
        label[(0, *[slice(a, a + s // 3) for a, s in zip(lo, shape)])] = 1
    return label


@pytest.mark.parametrize("policy", ["si", "dae"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_image_and_label_get_the_same_geometric_transform(policy, spatial_dims):
    """A label-shaped image stays aligned with its label through rotation / scaling / elastic / zoom / flips
    (image linear, label nearest): high overlap on every draw, while some draws move the label (so a transform ran)
    and a label transformed by another draw overlaps far less."""
    aug = SpatialAugmentation(policy, spatial_dims=spatial_dims)
    dice = lambda mask, lab: 2 * (mask & lab).sum() / max(1, mask.sum() + lab.sum())  # noqa: E731
    moved, other_draw = 0, []
    for seed in range(30):
        label = _blob(spatial_dims, seed)
        image = np.concatenate([label, 3 * label]).astype(np.float32)
        new_image, new_label = aug(image, label, seed=seed)
        assert new_label.dtype == np.int64 and set(np.unique(new_label)) <= {0, 1}
        for channel, scale in ((0, 1.0), (1, 3.0)):
            mask = new_image[channel] > 0.5 * scale  # intensity noise / scaling (dae) is far below this
            assert dice(mask, new_label[0] == 1) > 0.9, (seed, channel)
        if _flip_of(label, new_label, spatial_dims) is None:
            moved += 1
            other_draw.append(dice(new_image[0] > 0.5, aug(image, label, seed=seed + 1000)[1][0] == 1))
    assert moved >= 3  # rotation / zoom / elastic happened on some draws
    assert np.mean(other_draw) < 0.8


def test_intensity_transforms_never_touch_the_label():
    """DAE's Gaussian noise and contrast scaling change the image only: among draws whose label came back
    unchanged (no geometric transform), some have a changed image."""
    aug = SpatialAugmentation("dae", spatial_dims=3)
    image, label = _pattern(3, shape=SQUARE[3])
    intensity_only = 0
    for seed in range(300):
        new_image, new_label = aug(image, label, seed=seed)
        if np.array_equal(new_label, label):
            intensity_only += not np.array_equal(new_image, image)
    assert intensity_only >= 5
    keys = {type(t).__name__: tuple(t.keys) for t in policy_transforms("dae", spatial_dims=3)}
    assert keys["RandGaussianNoised"] == keys["RandScaleIntensityd"] == keys["RandShiftIntensityd"] == ("image",)


@pytest.mark.parametrize("policy", ["si", "dae"])
def test_labels_keep_their_value_set(policy):
    """Nearest interpolation: a BraTS-valued label {0, 1, 2, 4} never gains an in-between value."""
    aug = SpatialAugmentation(policy, spatial_dims=3)
    image, label = _pattern(3, seed=1, shape=SQUARE[3])
    for seed in range(60):
        _, out = aug(image, label, seed=seed)
        assert out.dtype == np.int64 and set(np.unique(out).tolist()) <= {0, 1, 2, 4}


def test_draws_depend_on_the_seed_only_not_on_global_state():
    """Same seed, same output whatever numpy's and torch's global generators hold; another seed, another output."""
    aug = SpatialAugmentation("si", spatial_dims=2)
    image, label = _pattern(2)
    np.random.seed(1), torch.manual_seed(1)
    a = aug(image, label, seed=7)
    np.random.seed(2), torch.manual_seed(2)
    b = aug(image, label, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    outs = {aug(image, label, seed=s)[1].tobytes() for s in range(10)}
    assert len(outs) > 3


# ---- none is today's sampling; the datasets ----------------------------------------------------------------
def _volumes(n=3, shape=(20, 18, 8)):
    rng = np.random.default_rng(0)
    return [Volume(case_id=f"c{i}", image=rng.random((2, *shape), dtype=np.float32),
                   label=rng.choice([0, 1, 2], size=shape).astype(np.int64)) for i in range(n)]


@pytest.mark.parametrize("roi", [(8, 8), (8, 8, 4)])
def test_none_is_bit_identical_to_the_unaugmented_crops(roi):
    """Policy none (directly, or through the segmentation kind) gives exactly the crops of a CropDataset without augmentation."""
    from benchmark.protocol import DEFAULT_PROTOCOL
    from benchmark.kinds import SEGMENTATION

    volumes = _volumes()
    plain = CropDataset(volumes, roi=roi, length=30, seed=3, with_label=True, foreground_prob=0.33)
    none = CropDataset(volumes, roi=roi, length=30, seed=3, with_label=True, foreground_prob=0.33,
                       augmentation=SpatialAugmentation("none", spatial_dims=len(roi)))
    kind = SEGMENTATION.training_set(get_task("brats"), volumes, roi=roi, length=30, seed=3, protocol=DEFAULT_PROTOCOL,
                                     finetune=FinetuneSettings(spatial_aug="none"))
    for i in range(30):
        for other in (none, kind):
            assert torch.equal(plain[i]["image"], other[i]["image"]) and torch.equal(plain[i]["label"], other[i]["label"])


def test_augmented_crops_are_the_same_crops_transformed():
    """The augmentation seed is the sample generator's last draw: an augmented dataset's flips-only sample is a flip
    of the very crop the unaugmented dataset gives at that index."""
    volumes = _volumes()
    plain = CropDataset(volumes, roi=(8, 8, 4), length=40, seed=5, with_label=True)
    flipped = CropDataset(volumes, roi=(8, 8, 4), length=40, seed=5, with_label=True, augmentation=SpatialAugmentation("csm", spatial_dims=3))
    for i in range(40):
        axes = _flip_of(plain[i]["label"].numpy(), flipped[i]["label"].numpy(), 3)
        assert axes is not None
        expected = np.flip(plain[i]["image"].numpy(), axis=tuple(1 + a for a in axes)) if axes else plain[i]["image"].numpy()
        assert np.array_equal(expected, flipped[i]["image"].numpy())


def test_classification_volumes_flip_under_csm_and_stay_put_under_none():
    """Classification (CSM's tasks): csm flips whole cases (p = 0.5 per axis); none returns the case as is."""
    from benchmark.protocol import DEFAULT_PROTOCOL
    from benchmark.kinds import CLASSIFICATION

    volumes = [Volume(case_id="a", image=np.random.default_rng(0).random((2, 6, 5, 4), dtype=np.float32), label=None, target=1)]
    task = get_task("prostate158")
    for policy, expect_flips in (("none", False), ("csm", True)):
        data = CLASSIFICATION.training_set(task, volumes, roi=(6, 5, 4), length=200, seed=0, protocol=DEFAULT_PROTOCOL,
                                           finetune=FinetuneSettings(spatial_aug=policy))
        axes = [_flip_of(volumes[0].image, data[i]["image"].numpy(), 3) for i in range(200)]
        assert all(a is not None for a in axes)
        shares = [sum(k in a for a in axes) / 200 for k in range(3)]
        assert shares == (pytest.approx([0.5] * 3, abs=0.1) if expect_flips else [0.0] * 3)


# ---- resolution, recording, the smoke profile ----------------------------------------------------------------
def test_each_task_defaults_to_its_papers_policy():
    expected = {"brats": "si", "wmh": "si", "btcv": "dae", "feta": "dae", "hie": "ladp", "msd_brain": "csm", "prostate158": "csm",
                "mri_cls": "csm"}
    for name, policy in expected.items():
        assert resolve_policy("auto", get_task(name)) == policy
        assert resolve_policy("none", get_task(name)) == "none" and resolve_policy("ladp", get_task(name)) == "ladp"
    with pytest.raises(BenchmarkInputError, match="elastic"):
        resolve_policy("elastic", get_task("brats"))
    assert set(POLICIES) == {"none", "si", "ladp", "csm", "dae"}


def test_smoke_leaves_out_3d_elastic_only():
    """The smoke profile keeps the elastic part on 2D slices (cheap) and drops it on 3D crops; paper keeps both."""
    from benchmark.profiles import PAPER, SMOKE
    from benchmark.kinds import SEGMENTATION

    task, settings = get_task("brats"), FinetuneSettings()
    has_elastic = lambda profile, dims: any("Elastic" in type(t).__name__ for t in SEGMENTATION.spatial_augmentation(  # noqa: E731
        task, finetune=settings, spatial_dims=dims, protocol=profile.protocol).transforms)
    assert has_elastic(SMOKE, 2) and not has_elastic(SMOKE, 3)
    assert has_elastic(PAPER, 2) and has_elastic(PAPER, 3)


def test_spatial_aug_profile_is_the_run_profiles_choice_and_auto_still_the_papers(tmp_path):
    """``--spatial-aug profile`` (the default): smoke fine-tunes BTCV without augmentation (its DAE policy's flips put a
    left organ's label on either side) and BraTS with the SI policy; tiny and paper give every task its paper's policy;
    an explicit ``auto`` gives the paper's policy under smoke too. The Job holds the resolved name."""
    from benchmark.cli import parse_fractions
    from benchmark.datasources import resolve_task_data
    from benchmark.plan import MethodEntry, build_plan
    from benchmark.profiles import PAPER, SMOKE, TINY

    data = [resolve_task_data(get_task(name), data_root=None, cache_dir=tmp_path / "cache") for name in ("brats", "btcv")]

    def policies(profile, spatial_aug):
        plan = build_plan(methods=[MethodEntry("scratch")], task_data=data, fractions=parse_fractions("100%"), seeds=[0], profile=profile,
                          cache_dir=tmp_path / "cache", backbone="unet2d", finetune=FinetuneSettings(spatial_aug=spatial_aug))
        return {job.task: job.finetune.spatial_aug for job in plan.jobs}

    assert policies(SMOKE, "profile") == {"brats": "si", "btcv": "none"}
    assert policies(SMOKE, "auto") == {"brats": "si", "btcv": "dae"}
    assert policies(TINY, "profile") == policies(PAPER, "profile") == {"brats": "si", "btcv": "dae"}
    assert policies(SMOKE, "ladp") == {"brats": "ladp", "btcv": "ladp"}


# ---- every method of a comparison: same draws ------------------------------------------------------------------
@pytest.fixture(scope="module")
def brats_data(tmp_path_factory):
    from benchmark.datasources import resolve_task_data

    return resolve_task_data(get_task("brats"), data_root=None, cache_dir=tmp_path_factory.mktemp("cache"))


def _plan(td, tmp_path, *, methods, seeds=(0,), spatial_aug="auto"):
    from benchmark.cli import parse_fractions
    from benchmark.plan import MethodEntry, build_plan
    from benchmark.profiles import SMOKE

    return build_plan(methods=[MethodEntry(m) for m in methods], task_data=[td], fractions=parse_fractions("25%"), seeds=list(seeds),
                      profile=SMOKE, cache_dir=tmp_path / "cache", finetune=FinetuneSettings(spatial_aug=spatial_aug))


def _finetune_batch(job, td, n=8):
    """The first ``n`` fine-tuning samples of the Job's cell, built as ``benchmark.train.run_job`` / ``finetune`` build them."""
    task = td.task
    cases = {c.case_id: c for c in td.cases}
    cell = job.cells[0]
    volumes = kind_of(task).prepare(load_volumes(task, [cases[i] for i in cell.labeled_ids], volume_size=job.volume_size), roi=job.roi)
    data = kind_of(task).training_set(task, volumes, roi=job.roi, length=n, seed=job.seed, protocol=job.protocol, finetune=job.finetune)
    return [data[i] for i in range(n)]


def test_every_method_of_a_comparison_gets_the_same_augmented_batches(brats_data, tmp_path):
    """CSI and its scratch baseline (planned together on the built-in BraTS) get identical augmented fine-tuning
    batches; the SI policy did change them; another seed gives other ones."""
    plan = _plan(brats_data, tmp_path, methods=["csi", "scratch"], seeds=(0, 1))
    jobs = {(j.method, j.seed): j for j in plan.runnable()}
    csi, scratch = jobs[("csi", 0)], jobs[("scratch", 0)]
    assert csi.finetune.spatial_aug == scratch.finetune.spatial_aug == "si" and csi.roi == scratch.roi
    a, b = _finetune_batch(csi, brats_data), _finetune_batch(scratch, brats_data)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    plain_job = {j.method: j for j in _plan(brats_data, tmp_path, methods=["csi"], spatial_aug="none").runnable()}["csi"]
    plain = _finetune_batch(plain_job, brats_data)
    assert any(not torch.equal(x["image"], p["image"]) for x, p in zip(a, plain))
    other_seed = _finetune_batch(jobs[("csi", 1)], brats_data)
    assert any(not torch.equal(x["image"], o["image"]) for x, o in zip(a, other_seed))


def test_policy_is_recorded_and_in_the_cell_id_only_when_applied(brats_data, tmp_path):
    """The Job holds the resolved policy (auto -> si on BraTS; JSON round trip); cells without augmentation keep the ids
    they had before augmentation existed; auto and an explicit si are one cell; si and none are two."""
    from benchmark.job import Job
    from benchmark.store import content_hash

    def ids(policy):
        return {c.cell_id for j in _plan(brats_data, tmp_path, methods=["csi"], spatial_aug=policy).jobs for c in j.cells}

    assert ids("auto") == ids("si") and ids("none").isdisjoint(ids("si"))
    job = next(j for j in _plan(brats_data, tmp_path, methods=["csi"]).jobs if j.method == "csi")
    assert Job.from_json(job.to_json()).finetune == job.finetune and job.finetune.spatial_aug == "si"
    # The id of an unaugmented cell is the hash of exactly what it was before (config + the older downstream keys).
    none_job = next(j for j in _plan(brats_data, tmp_path, methods=["csi"], spatial_aug="none").jobs if j.method == "csi")
    import dataclasses

    old_hash = content_hash({**dataclasses.asdict(none_job.method_config), "finetune_aug": "none"}, 8)
    assert none_job.cells[0].cell_id.endswith(old_hash)


def test_cli_flag(tmp_path):
    from benchmark.cli import build_parser, build_request

    base = ["--methods", "csi", "--tasks", "brats", "--cache-dir", str(tmp_path)]
    assert build_request(build_parser().parse_args(base), []).finetune.spatial_aug == "profile"
    assert build_request(build_parser().parse_args([*base, "--spatial-aug", "auto"]), []).finetune.spatial_aug == "auto"
    assert build_request(build_parser().parse_args([*base, "--spatial-aug", "none"]), []).finetune.spatial_aug == "none"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--spatial-aug", "elastic"])
