"""WSI, DSI and CNN-restart (SI paper 5.2.2, 5.2.3, 5.5.3), and how the planner treats them."""
from __future__ import annotations

from pathlib import Path

import torch

from benchmark.backbones import BackboneSize, build_backbone
from benchmark.data import SourcePoolDataset
from benchmark.methods import get_method
from benchmark.methods.csi import l1_plus_l2, mix_sources
from benchmark.methods.dsi import replace_non_targets_with_noise
from benchmark.plan import TaskData, build_plan, parse_fractions
from benchmark.profiles import SMOKE
from tasks import Case, Volume, get_task

import numpy as np

NARROW = BackboneSize(unet_features=(8, 16, 32, 64, 64, 8))


def test_dsi_non_target_sources_are_standard_normal_and_target_kept():
    """DSI replaces every non-target source by N(0, 1) noise (mean ≈ 0, std ≈ 1) and keeps the target."""
    pool = torch.rand(4, 5, 2, 32, 32) * 10 + 3
    out = replace_non_targets_with_noise(pool, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], pool[:, 0])
    noise = out[:, 1:]
    assert abs(noise.mean().item()) < 0.02 and abs(noise.std().item() - 1.0) < 0.02


def test_dsi_loss_is_si_loss_on_noise_mixtures():
    """DSI's loss is the CSI loss computed on the noise-substituted pool, with the same generator draws."""
    torch.manual_seed(0)
    cls = get_method("dsi")
    cfg = cls.make_config()
    backbone = build_backbone("unet2d", in_channels=2 * cfg.num_mixtures, out_channels=2, size=NARROW, roi=(32, 32))
    method = cls(backbone, cfg, in_channels=2)
    pool = torch.rand(2, cfg.pool_size, 2, 32, 32)
    loss = method({"sources": pool}, generator=torch.Generator().manual_seed(3))["loss"]
    g = torch.Generator().manual_seed(3)
    noisy = replace_non_targets_with_noise(pool, generator=g)
    mixtures, _, _ = mix_sources(noisy, sources_per_mixture=cfg.sources_per_mixture, num_mixtures=cfg.num_mixtures, generator=g)
    expected = l1_plus_l2(backbone(mixtures.reshape(2, -1, 32, 32)), pool[:, 0])
    assert torch.allclose(loss, expected)


def _volume(case_id: str, value: float) -> Volume:
    image = np.full((1, 16, 16, 8), value, dtype=np.float32)
    return Volume(case_id=case_id, image=image, label=np.zeros((16, 16, 8), dtype=np.int64))


def test_wsi_pools_come_from_one_patient_and_csi_from_distinct_patients():
    """WSI draws all N slices from one patient; CSI from N different patients (SI paper 5.2.1-5.2.2)."""
    volumes = [_volume(f"p{i}", float(i + 1)) for i in range(6)]
    wsi = SourcePoolDataset(volumes, roi=(16, 16), length=20, seed=0, pool_size=5, same_patient=get_method("wsi").same_patient)
    csi = SourcePoolDataset(volumes, roi=(16, 16), length=20, seed=0, pool_size=5, same_patient=get_method("csi").same_patient)
    for i in range(20):
        wsi_patients = {float(s[0, 0, 0]) for s in wsi[i]["sources"]}
        csi_patients = {float(s[0, 0, 0]) for s in csi[i]["sources"]}
        assert len(wsi_patients) == 1 and len(csi_patients) == 5


def _task_data(tmp_path: Path, n: int = 12) -> TaskData:
    cases = [Case(case_id=f"c{i:02d}", images=(tmp_path / f"i{i}",), label=tmp_path / f"l{i}") for i in range(n)]
    return TaskData(task=get_task("brats"), root=tmp_path, cases=cases, synthetic=True, fingerprint="x")


def test_restart_fine_tunes_twice_without_pretraining(tmp_path):
    """CNN-restart has no pretext task: no pretraining key, two supervised rounds per cell."""
    plan = build_plan(methods=["restart"], task_data=[_task_data(tmp_path)], fractions=parse_fractions("100%"), seeds=[0],
                      profile=SMOKE, cache_dir=tmp_path)
    restart = next(g for g in plan.groups if g.method == "restart")
    assert restart.pretrain_key is None and restart.spec["finetune_rounds"] == 2
    scratch = next(g for g in plan.groups if g.method == "scratch")
    assert scratch.spec["finetune_rounds"] == 1 and scratch.backbone == restart.backbone


def test_finetune_augmentation_is_part_of_the_cell_but_not_of_the_pretraining(tmp_path):
    """--finetune-aug mixup makes new cells (own config id) that reuse the same pretrained checkpoint."""
    td = _task_data(tmp_path)
    plain = build_plan(methods=["csi"], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=tmp_path)
    mixed = build_plan(methods=["csi"], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=tmp_path,
                       finetune_aug="mixup", mixup_alpha=0.2)
    a, b = (next(g for g in p.groups if g.method == "csi") for p in (plain, mixed))
    assert a.pretrain_key == b.pretrain_key
    assert a.cells[0].cell_id != b.cells[0].cell_id
    assert b.spec["finetune_aug"] == "mixup" and b.spec["mixup_alpha"] == 0.2 and a.spec["finetune_aug"] == "none"


def test_label_aware_pretraining_sees_only_the_labels_of_its_fraction(tmp_path):
    """LADP is pretrained once per fraction, on exactly that fraction's labelled cases (no label leak)."""
    plan = build_plan(methods=["ladp", "ddp"], task_data=[_task_data(tmp_path)], fractions=parse_fractions("100%,25%"), seeds=[0],
                      profile=SMOKE, cache_dir=tmp_path)
    ladp = [g for g in plan.groups if g.method == "ladp"]
    assert len(ladp) == 2 and all(len(g.cells) == 1 for g in ladp)
    for group in ladp:
        assert group.label_aware and group.spec["label_aware"]
        assert group.spec["pretrain_ids"] == group.cells[0].labeled_ids
        assert not set(group.spec["pretrain_ids"]) & set(group.spec["test_ids"])
    assert ladp[0].pretrain_key != ladp[1].pretrain_key
    ddp = [g for g in plan.groups if g.method == "ddp"]
    assert len(ddp) == 1 and len(ddp[0].cells) == 2 and ddp[0].spec["pretrain_ids"] == ddp[0].spec["train_ids"]
    assert not ddp[0].label_aware
