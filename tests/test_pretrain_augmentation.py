"""Pretraining augmentation (issue 21 item 5): each paper's policy on its methods' pretraining samples (LADP II.D flips,
CSM IV.A flips, SI 5.5.3 rotation / scaling / flipping / elastic, none for DAE 3.2 and for CoPer's own views), the
same draws for every method of a paper at every sample index, recorded in the Job and in the pretraining cache key.
(Resuming an augmented pretraining with the same numbers: tests/test_checkpoints.py, whose CSI Job pretrains with
the SI policy.)"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.data import CropDataset, SourcePoolDataset, augmentation_seed
from benchmark.methods import get_method, list_methods
from benchmark.protocol import DEFAULT_PROTOCOL
from benchmark.spatial_augmentation import SpatialAugmentation
from benchmark.train import pretraining_dataset
from tasks import Volume

PAPER_POLICY = {"source_identification": "si", "label_aware_denoising": "ladp", "cross_series_masking": "csm",
                "disruptive_autoencoders": "none", "coper_perceptual_metric": "none"}


class _Stub(nn.Module):
    """Stand-in backbone: ``pretraining_dataset`` reads only a method's config and data spec."""

    encoder_prefixes = ("encoder.",)

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(1, 1)


def _method(name: str, *, in_channels: int = 2, roi=None):
    """The method with a stand-in backbone, or (``roi`` given: methods that read their backbone's tokens) its real
    default backbone at smoke size."""
    from benchmark.backbones import SMOKE_SIZE, build_backbone

    cls = get_method(name)
    cfg = cls.make_config()
    backbone = _Stub()
    if roi is not None:
        channels = cls.backbone_channels(cfg, in_channels=in_channels)
        backbone = build_backbone(cls.backbone_for(cfg), in_channels=channels[0], out_channels=channels[1], size=SMOKE_SIZE, roi=roi)
    return cls(backbone, cfg, in_channels=in_channels)


def test_every_method_of_a_paper_declares_its_papers_pretraining_augmentation():
    """One policy per paper, the one its text states, for every registered method of the five papers that pretrains
    (a new baseline of a paper must declare its paper's; a plugin of no paper here is its own affair)."""
    by_paper: dict[str, set[str]] = defaultdict(set)
    for name in list_methods():
        cls = get_method(name)
        cfg = cls.make_config()
        if cls.pretrains_with(cfg) and cls.paper in PAPER_POLICY:
            by_paper[cls.paper].add(cls.pretrain_augmentation(cfg))
    assert dict(by_paper) == {paper: {policy} for paper, policy in PAPER_POLICY.items()}


# ---- the same draws for every method of a paper ---------------------------------------------------------------
def _one_slice_volumes(n: int = 3, side: int = 12) -> list[Volume]:
    """Volumes of ONE axial slice, as large as the 2D crop: every method's crop of volume v is the whole slice, whatever
    its own draws (LADP's lesion-centred crops, DDP's uniform ones)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        label = np.zeros((side, side, 1), dtype=np.int64)
        label[2:5, 1:6, 0] = 1  # off-centre on both axes: every flip moves it
        out.append(Volume(case_id=f"c{i}", image=rng.random((2, side, side, 1), dtype=np.float32), label=label))
    return out


def _flip_axes(original: np.ndarray, out: np.ndarray) -> tuple[int, ...] | None:
    """The in-plane axes (1: X, 2: Y of [C, X, Y]) whose flip turns ``original`` into ``out``; None if none does."""
    for axes in ((), (1,), (2,), (1, 2)):
        if np.array_equal(np.flip(original, axis=axes) if axes else original, out):
            return axes
    return None


def test_ladp_and_ddp_get_the_same_flips_although_their_crop_draws_differ():
    """LADP draws a lesion-centred crop decision (and reads labels), DDP draws none: with crops that cannot differ, the
    augmented samples are identical, so the flips come from (seed, index) alone. They are flips of the slice (LADP's
    label flipped with its image), most samples flip, and another seed flips others."""
    volumes = _one_slice_volumes()

    def flips(name, seed):
        data = pretraining_dataset(_method(name), volumes, roi=(12, 12), length=40, seed=seed)
        plain = pretraining_dataset(_method(name), volumes, roi=(12, 12), length=40, seed=seed, augmentation="none")
        samples = [data[i] for i in range(40)]
        return data, samples, [_flip_axes(plain[i]["image"].numpy(), samples[i]["image"].numpy()) for i in range(40)]

    (ladp_data, ladp, ladp_flips), (ddp_data, ddp, ddp_flips) = flips("ladp", 5), flips("ddp", 5)
    assert ladp_data.foreground_prob > 0 and ddp_data.foreground_prob == 0 and "label" in ladp[0] and "label" not in ddp[0]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(ladp, ddp))
    assert ladp_flips == ddp_flips and None not in ddp_flips
    assert 20 <= sum(a != () for a in ddp_flips) <= 40  # 3 of 4 samples flip at least one axis (p = 0.5 per axis)
    for i in range(40):
        assert _flip_axes(volumes[0].label[None, :, :, 0], ladp[i]["label"].numpy()) == ladp_flips[i]
    assert flips("ddp", 6)[2] != ddp_flips


def test_csm_and_mae3d_pretrain_on_identical_flipped_batches():
    """CSM IV.A's pipeline for both of its methods: the same crops, the same flips (sample for sample), which did flip."""
    rng = np.random.default_rng(1)
    volumes = [Volume(case_id=f"c{i}", image=rng.random((4, 10, 9, 8), dtype=np.float32), label=None) for i in range(3)]
    csm, mae3d = _method("csm", in_channels=4, roi=(16, 16, 16)), _method("mae3d", in_channels=4, roi=(16, 16, 16))
    csm, mae3d, plain = (pretraining_dataset(m, volumes, roi=(8, 8, 8), length=30, seed=0, augmentation=aug)
                         for m, aug in ((csm, None), (mae3d, None), (csm, "none")))
    for i in range(30):
        assert torch.equal(csm[i]["image"], mae3d[i]["image"])
    assert sum(not torch.equal(csm[i]["image"], plain[i]["image"]) for i in range(30)) >= 20  # 7 of 8 flip some axis


def test_csi_wsi_dsi_pools_get_the_same_augmentation_at_each_position():
    """Every slice of every patient identical: CSI (N patients), WSI and DSI (one patient) draw different slices of
    equal content, so their pools are equal exactly when each position's augmentation draws are (SI 5.5.3, each
    slice augmented on its own); the augmentation did change the slices, differently per position."""
    image = np.zeros((1, 16, 16, 8), dtype=np.float32)
    image[0, 3:13, 4:12] = np.linspace(1, 2, 10 * 8, dtype=np.float32).reshape(10, 8, 1)
    volumes = [Volume(case_id=f"p{i}", image=image, label=np.zeros((16, 16, 8), dtype=np.int64)) for i in range(6)]
    pools = {name: pretraining_dataset(_method(name), volumes, roi=(16, 16), length=6, seed=2) for name in ("csi", "wsi", "dsi")}
    plain = pretraining_dataset(_method("csi"), volumes, roi=(16, 16), length=6, seed=2, augmentation="none")
    assert all(isinstance(p, SourcePoolDataset) and p.augmentation.policy == "si" for p in pools.values())
    changed = 0
    for i in range(6):
        csi = pools["csi"][i]["sources"]
        assert torch.equal(csi, pools["wsi"][i]["sources"]) and torch.equal(csi, pools["dsi"][i]["sources"])
        changed += sum(not torch.equal(csi[k], plain[i]["sources"][k]) for k in range(csi.shape[0]))
        assert len({csi[k].numpy().tobytes() for k in range(csi.shape[0])}) > 1  # positions draw independently
    assert changed >= 10


def test_augmentation_seed_depends_on_seed_index_and_slot_only():
    assert augmentation_seed(0, 3) == augmentation_seed(0, 3)
    assert len({augmentation_seed(0, 3), augmentation_seed(1, 3), augmentation_seed(0, 4), augmentation_seed(0, 3, 1, 0)}) == 4
    # not a draw of the sample's own generator (seeded (seed, index))
    assert augmentation_seed(0, 3) != int(np.random.default_rng((0, 3)).integers(2**31 - 1))


def test_dae_and_coper_pretraining_samples_are_not_augmented():
    """DAE 3.2 names only the random crop (the authors' code: RandSpatialCropd); the CoPer methods draw their own views."""
    rng = np.random.default_rng(2)
    volumes = [Volume(case_id=f"c{i}", image=rng.random((2, 8, 8, 8), dtype=np.float32), label=None) for i in range(2)]
    for name, roi in (("dae", (32, 32, 32)), ("mae", (32, 32, 32)), ("swav", (64, 64))):
        data = pretraining_dataset(_method(name, roi=roi), volumes, roi=(8, 8) if name == "swav" else (8, 8, 8), length=4, seed=0)
        assert data.augmentation is None


# ---- planning: recorded, keyed ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brats_data(tmp_path_factory):
    from benchmark.datasources import resolve_task_data
    from tasks import get_task

    return resolve_task_data(get_task("brats"), data_root=None, cache_dir=tmp_path_factory.mktemp("cache"))


def _jobs(td, tmp_path, methods, profile=None):
    from benchmark.cli import parse_fractions
    from benchmark.plan import MethodEntry, build_plan
    from benchmark.profiles import SMOKE

    plan = build_plan(methods=[MethodEntry(m) for m in methods], task_data=[td], fractions=parse_fractions("25%"), seeds=[0],
                      profile=profile or SMOKE, cache_dir=tmp_path / "cache")
    return {j.method: j for j in plan.runnable()}


def test_policy_is_planned_recorded_and_in_the_cache_key(brats_data, tmp_path, monkeypatch):
    """The Job holds each method's policy (JSON round trip; the cell record's config); the pretraining key changes with
    the policy and with whether its elastic part runs, and holds nothing for none."""
    from benchmark.job import Job
    from benchmark.store import cell_record

    jobs = _jobs(brats_data, tmp_path, ["csi", "csm", "inpainting"])
    assert jobs["csi"].pretrain.augmentation == "si" and jobs["csm"].pretrain.augmentation == "csm"
    assert jobs["inpainting"].pretrain.augmentation == "si"
    assert Job.from_json(jobs["csi"].to_json()).pretrain == jobs["csi"].pretrain
    config = json.loads(cell_record(jobs["csi"], jobs["csi"].cells[0], status="done")["config"])
    assert config["pretrain"]["augmentation"] == "si"
    older = json.loads(jobs["csi"].to_json())
    del older["pretrain"]["augmentation"]  # a Job planned before pretraining augmentation existed
    assert Job.from_dict(older).pretrain.augmentation == "none"

    csi_cls = get_method("csi")
    monkeypatch.setattr(csi_cls, "pretrain_aug", "none")
    unaugmented = _jobs(brats_data, tmp_path, ["csi"])["csi"]
    assert unaugmented.pretrain.augmentation == "none" and unaugmented.pretrain.key != jobs["csi"].pretrain.key
    monkeypatch.undo()

    from benchmark.profiles import SMOKE

    elastic = dataclasses.replace(SMOKE, protocol=dataclasses.replace(SMOKE.protocol, pretrain_aug_elastic_dims=(2,)))
    deformed = _jobs(brats_data, tmp_path, ["csi", "csm"], profile=elastic)
    assert deformed["csi"].pretrain.key != jobs["csi"].pretrain.key  # the SI policy's elastic part is keyed
    assert deformed["csm"].pretrain.key == jobs["csm"].pretrain.key  # flips have no elastic part: same pretraining


def test_elastic_part_follows_the_protocol():
    """The pretraining samples' elastic part runs where ``Protocol.pretrain_aug_elastic_dims`` holds their dimensionality:
    the paper profile's 2D and 3D, the smoke profile's none (it costs most of the SI pools' augmentation)."""
    from benchmark.profiles import PAPER, SMOKE

    volumes = _one_slice_volumes(side=16)
    for protocol, expect in ((PAPER.protocol, True), (SMOKE.protocol, False),
                             (dataclasses.replace(DEFAULT_PROTOCOL, pretrain_aug_elastic_dims=(3,)), False)):
        data = pretraining_dataset(_method("inpainting"), volumes, roi=(16, 16), length=2, seed=0, protocol=protocol)
        assert isinstance(data.augmentation, SpatialAugmentation)
        assert any("Elastic" in type(t).__name__ for t in data.augmentation.transforms) == expect
