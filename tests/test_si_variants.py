"""WSI, DSI and CNN-restart (SI paper 5.2.2, 5.2.3, 5.5.3); how the planner treats them: tests/test_plan_job_store.py."""
from __future__ import annotations

import numpy as np
import torch

from benchmark.backbones import BackboneSize, build_backbone
from benchmark.data import SourcePoolDataset
from benchmark.methods import get_method
from benchmark.blocks.losses import source_identification_loss
from benchmark.blocks.mixing import mix_sources
from benchmark.blocks.noise import replace_non_targets_with_noise
from tasks import Volume

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
    expected = source_identification_loss(backbone(mixtures.reshape(2, -1, 32, 32)), pool[:, 0])
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


# ---- source pools: WSI without replacement, counted non-overlapping fallbacks -----------------------
def _slice_coded_volume(case_id: str, depth: int = 12) -> Volume:
    """Every axial slice z is filled with z + 1, so a pool slice tells which slice it came from."""
    image = np.broadcast_to(np.arange(1, depth + 1, dtype=np.float32), (1, 16, 16, depth)).copy()
    return Volume(case_id=case_id, image=image, label=np.zeros((16, 16, depth), dtype=np.int64))


def test_wsi_pool_slices_are_distinct_so_the_target_never_reappears():
    """SI paper 5.2.2: WSI mixes N slices of one patient; drawn without replacement, the target slice is never
    also a non-target source of its pool (with replacement it was in 2-10 % of pools)."""
    volumes = [_slice_coded_volume(f"p{i}") for i in range(2)]
    data = SourcePoolDataset(volumes, roi=(16, 16), length=200, seed=0, pool_size=5, same_patient=True)
    for i in range(200):
        z = [float(s[0, 0, 0]) for s in data[i]["sources"]]
        assert len(set(z)) == 5, z
    assert data.non_overlapping_fallbacks == 0


def test_same_patient_target_draw_unchanged_so_dsi_is_bit_identical():
    """The target (pool[:, 0], the only real slice DSI uses) is drawn exactly as before: the patient, then
    ``random_crop`` of that patient's volume with the same seeded rng."""
    from benchmark.data import random_crop

    rng0 = np.random.default_rng(0)
    volumes = [Volume(case_id=f"p{i}", image=rng0.random((2, 20, 20, 9)).astype(np.float32), label=None) for i in range(3)]
    data = SourcePoolDataset(volumes, roi=(16, 16), length=30, seed=4, pool_size=5, same_patient=True)
    for i in range(30):
        rng = np.random.default_rng((4, i))
        patient = int(rng.integers(len(volumes)))
        expected = torch.from_numpy(random_crop(volumes[patient], (16, 16), rng)[0])
        assert torch.equal(data[i]["sources"][0], expected)


def test_non_overlapping_fallbacks_are_counted_and_logged(caplog):
    """When no overlapping non-target is found after the redraws the pool keeps a non-overlapping slice:
    counted in ``non_overlapping_fallbacks`` and logged (CSI and WSI alike)."""
    def disjoint(case_id: str, row: int) -> Volume:  # foreground only in one row of every slice
        image = np.zeros((1, 16, 16, 6), dtype=np.float32)
        image[0, row] = 1.0
        return Volume(case_id=case_id, image=image, label=None)

    csi = SourcePoolDataset([disjoint(f"p{i}", i) for i in range(5)], roi=(16, 16), length=3, seed=0, pool_size=5, same_patient=False)
    with caplog.at_level("WARNING", logger="benchmark.data"):
        for i in range(3):
            csi[i]
    assert csi.non_overlapping_fallbacks == 3 * 4  # every non-target of every pool
    assert "non-overlapping" in caplog.text
    overlapping = SourcePoolDataset([disjoint(f"p{i}", 0) for i in range(5)], roi=(16, 16), length=3, seed=0, pool_size=5, same_patient=False)
    for i in range(3):
        overlapping[i]
    assert overlapping.non_overlapping_fallbacks == 0
