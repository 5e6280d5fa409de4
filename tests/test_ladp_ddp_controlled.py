"""LADP vs DDP with only the noise different (``ddp:cases=labelled``), and the LADP paper's fine-tuning loss
(eq. 7) and flip test-time augmentation on HIE (LADP paper II.C-D)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import benchmark.methods.ddp  # noqa: F401  (registration)
import benchmark.methods.ladp  # noqa: F401
from benchmark.cli import parse_fractions, parse_method_entry
from benchmark.data import load_volumes
from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from benchmark.methods.ddp import DDPConfig, DecoderDenoising
from benchmark.methods.ladp import LabelAwareDenoising, LADPConfig
from benchmark.datasources import TaskData
from benchmark.plan import MethodEntry, build_plan
from benchmark.profiles import SMOKE
from benchmark.protocol import DEFAULT_PROTOCOL
from benchmark.train import pretraining_dataset
from tasks import Case, get_task
from tasks.hie import LADPLoss
from benchmark.records import FinetuneSettings
from benchmark.inference import TTA_FLIPS, predict_volume
from benchmark.kinds import kind_of

# Fine-tuning loss and TTA left at the suite's defaults, to compare plans of pretraining settings only.
PLAIN = FinetuneSettings(spatial_aug="none", loss="default", tta="none")


def _entries(*texts):
    return [MethodEntry(*parse_method_entry(t)) for t in texts]


@pytest.fixture(scope="module")
def hie(tmp_path_factory):
    """The built-in synthetic HIE data set (15 cases), written and read as a run does."""
    cache = tmp_path_factory.mktemp("cache")
    return resolve_task_data(get_task("hie"), data_root=None, cache_dir=cache), cache


def _plan(hie, *methods, fractions="100%,25%,10%", finetune=PLAIN, seeds=(0,), folds=1):
    td, cache = hie
    return build_plan(methods=_entries(*methods), task_data=[td], fractions=parse_fractions(fractions), seeds=list(seeds), profile=SMOKE,
                      cache_dir=cache / "ckpt", finetune=finetune, folds=folds)


def _fake_task_data(name: str, tmp_path, n: int = 12) -> TaskData:
    """Planning only: case ids and paths, no files."""
    cases = [Case(case_id=f"c{i:02d}", images=(tmp_path / f"img{i}.nii.gz",), label=tmp_path / f"lab{i}.nii.gz") for i in range(n)]
    return TaskData(task=get_task(name), root=tmp_path, cases=cases, synthetic=True, fingerprint="x")


class _Stub(nn.Module):
    """Stand-in backbone for building a method (only its config and data spec are read here)."""

    encoder_prefixes = ("encoder.",)

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(1, 1)


# ---- config -------------------------------------------------------------------------------------------
def test_ddp_cases_setting_and_label_awareness():
    """cases=labelled defaults to LADP's crop sampling (reads labels: label-aware); foreground_prob=0 reads none;
    lesion sampling on every case would read labels beyond a fraction's and is refused."""
    assert (DDPConfig().cases, DDPConfig().foreground_prob) == ("all", 0.0)
    labelled = DecoderDenoising.make_config({"cases": "labelled"})
    assert labelled.foreground_prob == LADPConfig().foreground_prob == 0.33
    assert DecoderDenoising.is_label_aware(labelled) and DecoderDenoising.pretrains_on_labelled_cases(labelled)
    blind = DDPConfig(cases="labelled", foreground_prob=0.0)
    assert not DecoderDenoising.is_label_aware(blind) and DecoderDenoising.pretrains_on_labelled_cases(blind)
    assert not DecoderDenoising.is_label_aware(DDPConfig()) and not DecoderDenoising.pretrains_on_labelled_cases(DDPConfig())
    assert LabelAwareDenoising.is_label_aware(LADPConfig(foreground_prob=0.0))  # LADP's noise reads labels whatever the crops
    with pytest.raises(ValueError, match="cases=labelled"):
        DDPConfig(foreground_prob=0.33)
    with pytest.raises(ValueError, match="cases must be one of"):
        DDPConfig(cases="labeled")
    with pytest.raises(ValueError, match="foreground_prob"):
        LADPConfig(foreground_prob=1.5)


# ---- planning -------------------------------------------------------------------------------------------
def test_ddp_cases_labelled_pretrains_on_exactly_ladps_cases_per_fraction(hie):
    """With ddp:cases=labelled the planned DDP Jobs pretrain, per fraction, on exactly the case ids LADP's Jobs pretrain
    on (one pretraining per fraction), and are label-aware; plain DDP keeps one pretraining on every non-test case."""
    plan = _plan(hie, "ladp", "ddp:cases=labelled", "ddp", "ddp:cases=labelled:foreground_prob=0", seeds=(0, 1), folds=2)
    jobs = [j for j in plan.runnable() if j.method in ("ladp", "ddp")]

    def by_cell(variant):
        out = {}
        for job in jobs:
            if (job.method, job.method_overrides) == variant:
                assert len(job.cells) == 1  # one pretraining per fraction
                out[(job.seed, job.fold, job.cells[0].fraction)] = job
        return out

    ladp = by_cell(("ladp", {}))
    assert len(ladp) == 2 * 2 * 3
    for variant, aware in ((("ddp", {"cases": "labelled"}), True), (("ddp", {"cases": "labelled", "foreground_prob": 0}), False)):
        ddp = by_cell(variant)
        assert ddp.keys() == ladp.keys()
        for key, job in ddp.items():
            assert job.pretrain.case_ids == ladp[key].pretrain.case_ids == job.cells[0].labeled_ids
            assert job.label_aware is aware and job.method_config.foreground_prob == (0.33 if aware else 0.0)
            assert job.pretrain.key != ladp[key].pretrain.key
    sizes = {key[2]: len(job.pretrain.case_ids) for key, job in ladp.items()}
    assert sizes["10%"] < sizes["25%"] < sizes["100%"]  # nested: a different pretraining each
    plain = [j for j in jobs if j.method == "ddp" and not j.method_overrides]
    assert len(plain) == 4 and all(len(j.cells) == 3 and not j.label_aware for j in plain)
    assert all(set(j.pretrain.case_ids) == {*j.train_ids, *j.val_ids} for j in plain)


def test_label_lesion_sampling_on_every_case_is_refused_at_planning(hie):
    with pytest.raises(BenchmarkInputError, match="cases=labelled"):
        _plan(hie, "ddp:foreground_prob=0.33")


# ---- crop sampling -------------------------------------------------------------------------------------
def _lesion_rate(dataset, n: int) -> float:
    return float(np.mean([bool(dataset[i]["label"].any()) for i in range(n)]))


def test_crop_sampler_draws_lesion_crops_at_the_same_rate_for_ladp_and_ddp_cases_labelled(hie):
    """The real CropDataset that pretraining builds (``pretraining_dataset``) draws lesion crops at the same rate
    for LADP and ddp:cases=labelled, the rate lesion oversampling predicts: with the smoke profile's whole-slice
    2D crops a crop holds lesion iff its slice does, so P = mean over volumes of fg·[lesion] + (1 − fg·[lesion])·u,
    u the volume's share of lesion slices. Uniform crops (fg = 0) give mean u, far lower."""
    td, _ = hie
    plan = _plan(hie, "ladp", "ddp:cases=labelled", fractions="100%")
    ladp_job, ddp_job = (next(j for j in plan.runnable() if j.method == m) for m in ("ladp", "ddp"))
    assert ladp_job.pretrain.case_ids == ddp_job.pretrain.case_ids
    cases = {c.case_id: c for c in td.cases}
    volumes = load_volumes(td.task, [cases[i] for i in ladp_job.pretrain.case_ids], volume_size=SMOKE.volume_size)
    roi = ladp_job.roi
    assert roi == volumes[0].image.shape[1:3]  # whole slices

    n = 1200

    def dataset(method_cls, cfg, seed):
        method = method_cls(_Stub(), cfg, in_channels=2)
        return pretraining_dataset(method, volumes, roi=roi, length=n, seed=seed, protocol=DEFAULT_PROTOCOL)

    ladp = _lesion_rate(dataset(LabelAwareDenoising, ladp_job.method_config, seed=1), n)
    ddp = _lesion_rate(dataset(DecoderDenoising, ddp_job.method_config, seed=2), n)  # other draws: the rates, not the crops, agree
    shares = [float(v.label.reshape(-1, v.label.shape[-1]).any(axis=0).mean()) for v in volumes]
    fg = 0.33
    expected = float(np.mean([fg * (u > 0) + (1 - fg * (u > 0)) * u for u in shares]))
    uniform = float(np.mean(shares))
    tol = 4 * np.sqrt(expected * (1 - expected) / n)
    assert abs(ladp - expected) < tol and abs(ddp - expected) < tol and abs(ladp - ddp) < tol * np.sqrt(2)
    assert expected - uniform > 2 * tol  # the oversampling is measurable at this n
    # Same seed: the same crops, label for label.
    a = dataset(LabelAwareDenoising, ladp_job.method_config, seed=3)
    b = dataset(DecoderDenoising, ddp_job.method_config, seed=3)
    for i in range(50):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["label"], b[i]["label"])
    # Plain DDP reads no label: uniform crops without batch["label"].
    plain = pretraining_dataset(DecoderDenoising(_Stub(), DDPConfig(), in_channels=2), volumes, roi=roi, length=10, seed=1)
    assert "label" not in plain[0] and plain.foreground_prob == 0.0


# ---- eq. 7 -----------------------------------------------------------------------------------------------
def _eq7_by_hand(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_BCE + L_Dice + 3·L_Focal on the lesion probability p = softmax(logits)[:, 1] (Lin et al.'s focal loss, γ = 2;
    batch Dice with MONAI's 1e-5 smoothing), written with torch ops only."""
    p = torch.softmax(logits.double(), dim=1)[:, 1]
    y = y.double()
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    dice = 1 - (2 * (p * y).sum() + 1e-5) / (p.sum() + y.sum() + 1e-5)
    p_t = p * y + (1 - p) * (1 - y)
    focal = (-((1 - p_t) ** 2) * torch.log(p_t)).mean()
    return bce + dice + 3 * focal


@pytest.mark.parametrize("shape", [(3, 2, 16, 16), (2, 2, 8, 8, 6)])
def test_ladp_loss_equals_eq7_by_hand(shape):
    gen = torch.Generator().manual_seed(0)
    task = get_task("hie")
    logits = 3 * torch.randn(shape, generator=gen)
    label = (torch.rand((shape[0], 1, *shape[2:]), generator=gen) < 0.3).long()
    target = task.loss_target(label)  # one-hot [B, 2, ...]
    loss = task.make_loss("dicefocal")(logits, target)
    assert isinstance(task.make_loss("dicefocal"), LADPLoss)
    torch.testing.assert_close(loss.double(), _eq7_by_hand(logits, label[:, 0]), rtol=1e-5, atol=1e-6)
    # The terms are weighted as eq. 7: the focal part carries 3x, so dropping it changes the loss by 3·L_Focal.
    no_focal = LADPLoss(focal_weight=0.0)(logits, target)
    p = torch.softmax(logits.double(), 1)[:, 1]
    p_t = torch.where(label[:, 0] == 1, p, 1 - p)
    torch.testing.assert_close((loss - no_focal).double(), 3 * (-((1 - p_t) ** 2) * torch.log(p_t)).mean(), rtol=1e-5, atol=1e-6)


def test_hie_fine_tuning_loss_is_selected_by_the_setting():
    """auto gives HIE the paper's eq. 7, default the suite's Dice + CE; other tasks refuse dicefocal with a clear message."""
    from monai.losses import DiceCELoss

    task = get_task("hie")
    gen = torch.Generator().manual_seed(1)
    model = nn.Conv2d(2, 2, 1)
    batch = {"image": torch.randn(2, 2, 8, 8, generator=gen), "label": (torch.rand(2, 1, 8, 8, generator=gen) < 0.3).long()}
    with torch.no_grad():
        logits = model(batch["image"])
    for setting, expected in (("auto", _eq7_by_hand(logits, batch["label"][:, 0])), ("dicefocal", _eq7_by_hand(logits, batch["label"][:, 0])),
                              ("default", DiceCELoss(softmax=True, batch=True)(logits, task.loss_target(batch["label"])))):
        loss_fn = kind_of(task).loss_fn(task, model, finetune=FinetuneSettings(loss=setting), generator=torch.Generator())
        with torch.no_grad():
            torch.testing.assert_close(loss_fn(batch).double(), expected.double(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="brats"):
        kind_of(get_task("brats")).loss_fn(get_task("brats"), model, finetune=FinetuneSettings(loss="dicefocal"), generator=torch.Generator())


# ---- flip TTA ----------------------------------------------------------------------------------------------
class _Asymmetric(nn.Module):
    """Not flip-equivariant: an asymmetric 3x3 kernel plus a bias that grows along X and Y."""

    def __init__(self, dims: int, k: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        torch.manual_seed(0)
        self.conv = conv(2, k, 3, padding=1)

    def forward(self, x):
        ramp = torch.linspace(-1, 1, x.shape[2])[:, None] * 2 + torch.linspace(0, 1, x.shape[3])[None, :]
        return self.conv(x) + ramp.reshape(1, 1, *ramp.shape, *([1] * (x.ndim - 4)))


def _by_hand_flip_mean(model, image, *, dims, multilabel):
    """Mean probability over identity, X, Y and X+Y flips, the model applied to the whole image (2D: to each axial slice)."""
    total = 0
    for axes in ((), (0,), (1,), (0, 1)):
        x = image.flip([1 + a for a in axes]) if axes else image  # [C, X, Y, Z]
        with torch.no_grad():
            out = model(x.permute(3, 0, 1, 2)).permute(1, 2, 3, 0)[None] if dims == 2 else model(x[None])
        out = out.flip([2 + a for a in axes]) if axes else out
        total = total + (out.sigmoid() if multilabel else out.softmax(1))
    return total / 4


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("multilabel", [False, True])
def test_flip_tta_is_the_mean_of_the_flipped_predictions(dims, multilabel):
    image = torch.randn(2, 12, 10, 6, generator=torch.Generator().manual_seed(2))  # [C, X, Y, Z]
    roi = (12, 10) if dims == 2 else (12, 10, 6)  # one window: the sliding window adds nothing
    model = _Asymmetric(dims).eval()
    out = predict_volume(model, image, roi=roi, protocol=DEFAULT_PROTOCOL, tta="flip", multilabel=multilabel)
    probs = out.sigmoid() if multilabel else out.softmax(1)
    expected = _by_hand_flip_mean(model, image, dims=dims, multilabel=multilabel)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    plain = predict_volume(model, image, roi=roi, protocol=DEFAULT_PROTOCOL)
    assert (probs - (plain.sigmoid() if multilabel else plain.softmax(1))).abs().max() > 1e-2  # TTA changed the prediction
    assert TTA_FLIPS == ((), (0,), (1,), (0, 1))  # in-plane only: Z (the slice axis) is never flipped


@pytest.mark.parametrize("dims", [2, 3])
def test_flip_tta_leaves_a_flip_equivariant_model_unchanged(dims):
    """A pointwise (1x1) network commutes with flips: TTA's mean prediction is the plain one, also through sliding windows."""
    image = torch.randn(2, 20, 18, 6, generator=torch.Generator().manual_seed(3))
    roi = (8, 8) if dims == 2 else (8, 8, 4)
    torch.manual_seed(1)
    model = (nn.Conv2d if dims == 2 else nn.Conv3d)(2, 2, 1).eval()
    for multilabel in (False, True):
        act = (lambda t: t.sigmoid()) if multilabel else (lambda t: t.softmax(1))
        tta = predict_volume(model, image, roi=roi, protocol=DEFAULT_PROTOCOL, tta="flip", multilabel=multilabel)
        plain = predict_volume(model, image, roi=roi, protocol=DEFAULT_PROTOCOL)
        torch.testing.assert_close(act(tta), act(plain), rtol=1e-5, atol=1e-6)


def test_tta_and_loss_settings_resolve_per_task_and_key_the_cells(hie, tmp_path):
    """auto: HIE gets eq. 7 and flip TTA (the LADP paper's recipe, recorded in the Job and the cell id); a task without a
    paper recipe keeps the defaults and its cell ids; flip TTA on a classification task is refused."""
    auto = _plan(hie, "ddp", fractions="100%", finetune=FinetuneSettings(spatial_aug="none"))
    (job,) = [j for j in auto.runnable() if j.method == "ddp"]
    assert (job.finetune.loss, job.finetune.tta) == ("dicefocal", "flip")
    plain = _plan(hie, "ddp", fractions="100%")
    (plain_job,) = [j for j in plain.runnable() if j.method == "ddp"]
    assert job.cells[0].cell_id != plain_job.cells[0].cell_id and job.pretrain.key == plain_job.pretrain.key
    brats = _fake_task_data("brats", tmp_path)
    kw = dict(methods=_entries("ddp"), task_data=[brats], fractions=parse_fractions("100%"), seeds=[0], profile=SMOKE, cache_dir=tmp_path)
    a = build_plan(finetune=FinetuneSettings(spatial_aug="none"), **kw).jobs[0]
    b = build_plan(finetune=FinetuneSettings(spatial_aug="none", loss="default", tta="none"), **kw).jobs[0]
    assert (a.finetune.loss, a.finetune.tta) == ("default", "none") and a.cells[0].cell_id == b.cells[0].cell_id
    with pytest.raises(BenchmarkInputError, match="brats"):
        build_plan(finetune=FinetuneSettings(loss="dicefocal"), **kw)
    cls = _fake_task_data("mri_cls", tmp_path)
    cls = dataclasses.replace(cls, cases=[dataclasses.replace(c, target=i % 2) for i, c in enumerate(cls.cases)])
    with pytest.raises(BenchmarkInputError, match="test-time augmentation"):
        build_plan(**{**kw, "task_data": [cls], "methods": _entries("scratch")}, finetune=FinetuneSettings(tta="flip"))


def test_run_job_pretrains_ddp_on_labelled_cases_and_tests_with_flip_tta(tmp_path, monkeypatch):
    """End to end on tiny HIE data: ddp:cases=labelled pretrains on the cell's labelled cases with lesion crops (labels
    read), fine-tunes with eq. 7, selects on validation without TTA and predicts the test cases with flip TTA."""
    import benchmark.train as train
    import benchmark.kinds.segmentation as seg
    from benchmark.train import Hooks, run_job

    task = get_task("hie")
    task.write_synthetic(tmp_path / "hie", n_cases=8, shape=(32, 32, 6), seed=0)
    td = resolve_task_data(task, data_root=tmp_path / "hie", cache_dir=tmp_path / "cache")
    few = lambda recipe: dataclasses.replace(recipe, steps=2, batch_size=2)  # noqa: E731
    profile = dataclasses.replace(SMOKE, name="unit", volume_size=(32, 32, 6), rois={**SMOKE.rois, "vgg_unet": (32, 32)},
                                  finetune_recipes={k: few(v) for k, v in SMOKE.finetune_recipes.items()},
                                  smoke_pretrain={k: few(v) for k, v in SMOKE.smoke_pretrain.items()})
    plan = build_plan(methods=_entries("ddp:cases=labelled"), task_data=[td], fractions=parse_fractions("50%"), seeds=[0], profile=profile,
                      cache_dir=tmp_path / "cache", finetune=FinetuneSettings(spatial_aug="none"))
    (job,) = [j for j in plan.runnable() if j.method == "ddp"]
    seen = {"pretrain": [], "tta": [], "loss": []}
    real_dataset, real_predict, real_finetune = train.pretraining_dataset, seg.predict_volume, train.finetune

    def spy_dataset(method, volumes, **kw):
        data = real_dataset(method, volumes, **kw)
        seen["pretrain"].append(([v.case_id for v in volumes], data.with_label, data.foreground_prob))
        return data

    monkeypatch.setattr(train, "pretraining_dataset", spy_dataset)
    monkeypatch.setattr(seg, "predict_volume", lambda *a, **kw: seen["tta"].append(kw.get("tta", "none")) or real_predict(*a, **kw))
    monkeypatch.setattr(train, "finetune", lambda *a, **kw: seen["loss"].append(kw["settings"].loss) or real_finetune(*a, **kw))
    (result,) = run_job(job, Hooks(log=lambda _m: None))
    assert seen["pretrain"] == [(list(job.cells[0].labeled_ids), True, 0.33)]
    assert seen["loss"] == ["dicefocal"]
    n_test = len(job.test_ids)  # model selection first (no TTA), then each test case once (flip TTA)
    assert seen["tta"][-n_test:] == ["flip"] * n_test and set(seen["tta"][:-n_test]) == {"none"}
    assert {r.case_id for r in result.rows} == set(job.test_ids)


def test_one_draw_decides_a_foreground_crop_also_for_2d_crops_smaller_than_the_slice():
    """nnU-Net's oversampling: a share fg of the samples is centred on the lesion. For 2D crops the slice AND the
    in-plane centre follow that one decision (two independent draws gave only ~fg² lesion-centred crops)."""
    from benchmark.data import CropDataset
    from tasks.base import Volume

    image = np.ones((1, 64, 64, 20), dtype=np.float32)
    label = np.zeros((64, 64, 20), dtype=np.int64)
    label[30:34, 30:34, 7] = 1  # one small lesion in one of 20 slices: a random 16x16 crop rarely holds it
    data = CropDataset([Volume(case_id="a", image=image, label=label)], roi=(16, 16), length=2000, seed=0, with_label=True,
                       foreground_prob=0.33)
    rate = np.mean([bool(data[i]["label"].any()) for i in range(2000)])
    assert abs(rate - 0.33) < 0.04, rate  # fg² would be ~0.11
