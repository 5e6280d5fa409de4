"""The synthesis kind, pix2pix with the CoPer loss and its evaluation (CoPer paper III.C, IV.B, Table III), without Ray."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from benchmark.methods import get_method
from benchmark.perceptual.metric import CoPerLoss, random_extractor
from benchmark.cli import parse_fractions, parse_method_entry
from benchmark.plan import MethodEntry, apply_params, build_plan
from benchmark.profiles import SMOKE, TINY
from benchmark.synthesis.evaluation import slice_quality
from benchmark.synthesis.pix2pix import GanTrainer, LossWeights, Pix2Pix, build_discriminator, generator_loss
from benchmark.train import Hooks, run_job
from tasks import get_task
from tasks.base import Volume
from benchmark.kinds import kind_of

SHAPE = (64, 64, 8)  # 64: SwAV's local views must exceed the VGG's stride


# ---- tasks and refs ---------------------------------------------------------------------------------------
def test_brats_synthesis_is_flair_t1_to_t2_with_the_brats_split_rules():
    task, brats = get_task("brats_synthesis"), get_task("brats")
    assert task.sources == ("flair", "t1") and task.targets == ("t2",) and task.kind == "synthesis"
    assert [task.channels[i] for i in task.target_index] == ["t2"] and task.channels == brats.channels
    assert (task.test_fraction, task.validation, task.split_seed) == (brats.test_fraction, brats.validation, brats.split_seed)
    assert task.paper_lambda1 == 0.70 and get_task(task.ref).name == "brats_synthesis"


def test_generic_ref_and_its_errors():
    task = get_task("synthesis:wmh:t1->flair")
    assert task.targets == ("FLAIR",) or task.targets[0].lower() == "flair"
    assert task.paper_lambda1 == 0.55  # Fig. 8: MS FLAIR
    assert get_task(task.ref).name == task.name
    with pytest.raises(BenchmarkInputError, match=r"brats.*no series \['dwi'\].*t1"):
        get_task("synthesis:brats:t1+dwi->t2")
    with pytest.raises(BenchmarkInputError, match="expected synthesis:TASK"):
        get_task("synthesis:brats:t1")
    single = [n for n in ("btcv",) if len(get_task(n).channels) == 1]
    for name in single:
        with pytest.raises(BenchmarkInputError, match=f"{name}.*single series"):
            get_task(f"synthesis:{name}:ct->ct")


# ---- eq. 5 and the discriminator -----------------------------------------------------------------------------
def _batch(seed=0, b=2, s=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, s, s, generator=g), torch.randn(b, 1, s, s, generator=g), torch.randn(b, 1, s, s, generator=g)


@pytest.mark.parametrize("balance, adversarial, reconstruction", [("pix2pix", 1.0, 100.0), ("eq5", 10.0, 1.0)])
def test_generator_loss_weights_follow_both_readings_of_eq5(balance, adversarial, reconstruction):
    """pix2pix reading: L_adv + 100·(λ1·L1 + (1 − λ1)·L_CoPer); literal eq. 5: λ1·L1 + (1 − λ1)·L_CoPer + 10·L_adv;
    each term computed independently here, the weights resolved from the method's Config."""
    from benchmark.synthesis.pix2pix import LossWeights

    x, fake, real = _batch()
    ext = random_extractor("vgg16_unet", size="smoke", in_channels=1, seed=0)
    torch.manual_seed(0)
    disc = build_discriminator(source_channels=2, target_channels=1, channels=8).eval()
    cfg = get_method("l1+coper").make_config({"balance": balance, "lambda1": 0.7, "feature_norm": "none"})
    lambda1, adv_w, rec_w = get_method("l1+coper").loss_weights(cfg, get_task("brats_synthesis"))
    assert (lambda1, adv_w, rec_w) == (0.7, adversarial, reconstruction)
    coper_loss = CoPerLoss(ext, feature_norm=get_method("l1+coper").feature_norm_of(cfg))
    out = generator_loss(fake, real, x, discriminator=disc, coper=coper_loss, weights=LossWeights(lambda1, adv_w, rec_w))
    l1 = (fake - real).abs().mean()
    with torch.no_grad():
        fa, re = ext(fake), ext(real)
    coper = sum(((a - b) ** 2).mean() for a, b in zip(fa, re)) / len(fa)  # eq. 3-4 as printed, m = 1
    logits = disc(torch.cat([x, fake], 1))[-1]
    adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # non-saturating: D(X, G(X)) -> real
    torch.testing.assert_close(out["loss"], adversarial * adv + reconstruction * (0.7 * l1 + 0.3 * coper))
    torch.testing.assert_close(out["coper"], coper)


def test_pix2pix_balance_is_the_default_and_reproduces_pix2pix_for_l1():
    """Default: pix2pix's balance, so ``l1`` is exactly pix2pix's L_cGAN + 100·L1; eq. 5's literal reading weighs L1
    1000x less against the adversarial term (0.1 vs 100 per unit of L_adv)."""
    task = get_task("brats_synthesis")
    l1 = get_method("l1")
    assert l1.make_config().balance == "pix2pix" and l1.loss_weights(l1.make_config(), task) == (1.0, 1.0, 100.0)
    literal = l1.loss_weights(l1.make_config({"balance": "eq5"}), task)
    assert literal == (1.0, 10.0, 1.0) and (100.0 / 1.0) / (literal[2] / literal[1]) == 1000.0
    with pytest.raises(ValueError, match="balance"):
        l1.make_config({"balance": "lsgan"})


@pytest.mark.parametrize("method", ["l1", "l1+coper"])
def test_reconstruction_and_adversarial_weights_mean_the_same_under_both_balances(method):
    """(λ1, adversarial weight, reconstruction weight): each override moves its own weight, whichever reading sets the other."""
    task, cls = get_task("brats_synthesis"), get_method(method)
    lam = cls.lambda1(cls.make_config(), task)
    weights = lambda overrides: cls.loss_weights(cls.make_config(overrides), task)  # noqa: E731
    assert weights({"reconstruction_weight": 50}) == (lam, 1.0, 50.0)
    assert weights({"adversarial_weight": 3}) == (lam, 3.0, 100.0)
    assert weights({"balance": "eq5", "adversarial_weight": 5}) == (lam, 5.0, 1.0)
    assert weights({"balance": "eq5", "reconstruction_weight": 2}) == (lam, 10.0, 2.0)
    with pytest.raises(ValueError, match="adversarial_weight must be >= 0"):
        cls.make_config({"adversarial_weight": -1})


def test_lambda2_is_a_deprecated_alias_read_as_the_papers_lambda2_under_each_balance():
    """The paper's λ2 is pix2pix's reconstruction weight under ``pix2pix`` and eq. 5's adversarial weight under ``eq5``;
    the Config records the unambiguous field."""
    cls = get_method("l1+coper")
    with pytest.warns(FutureWarning, match="lambda2 is deprecated .*use reconstruction_weight=50"):
        cfg = cls.make_config({"lambda2": 50})
    assert (cfg.reconstruction_weight, cfg.adversarial_weight) == (50, None) and "lambda2" not in dataclasses.asdict(cfg)
    with pytest.warns(FutureWarning, match="use adversarial_weight=5"):
        cfg = cls.make_config({"balance": "eq5", "lambda2": 5})
    assert (cfg.reconstruction_weight, cfg.adversarial_weight) == (None, 5)
    with pytest.raises(ValueError, match="lambda2 .* and reconstruction_weight both given"):
        cls.make_config({"lambda2": 5, "reconstruction_weight": 5})


def test_l1_method_has_no_perceptual_term_and_coper_defaults_follow_the_paper():
    task = get_task("brats_synthesis")
    assert get_method("l1").lambda1(get_method("l1").make_config(), task) == 1.0
    coper = get_method("l1+coper")
    cfg = coper.make_config()
    assert coper.lambda1(cfg, task) == 0.70 and (cfg.loss_network, cfg.loss_backbone) == ("swav", "vgg16_unet")
    assert coper.lambda1(coper.make_config({"lambda1": 0.55, "loss_network": "rand"}), task) == 0.55
    assert coper.make_config({"loss_backbone": "vgg_unet"}).loss_backbone == "vgg_unet"  # TernausNet's VGG11 still runs


def test_discriminator_gets_gradients_only_from_its_own_step():
    torch.manual_seed(0)
    gen = torch.nn.Conv2d(2, 1, 3, padding=1)
    model = Pix2Pix(gen, coper=None, weights=LossWeights(1.0, 1.0, 100.0), discriminator_channels=8, discriminator_lr=1e-3,
                    source_channels=2, target_channels=1)
    trainer = GanTrainer(model, sources=(0, 1), targets=(2,))
    image = torch.randn(2, 3, 32, 32)
    batch = {"image": image, "scale": torch.tensor([[-1.0, 1.0]]).repeat(2, 3, 1), "mask": torch.ones(2, 1, 32, 32, dtype=torch.bool)}
    recorded = {}
    real_step = trainer.discriminator_step

    def step(x, real, fake):
        out = real_step(x, real, fake)
        recorded.update({n: p.grad.clone() for n, p in trainer.discriminator.named_parameters()})
        recorded["after"] = {n: p.detach().clone() for n, p in trainer.discriminator.named_parameters()}
        return out

    trainer.discriminator_step = step
    loss = trainer(batch)
    loss.backward()  # the generator's backward: no gradient may reach D
    for n, p in trainer.discriminator.named_parameters():
        torch.testing.assert_close(p.grad, recorded[n])  # unchanged since D's own step
        assert not p.requires_grad
        torch.testing.assert_close(p.detach(), recorded["after"][n])
    assert gen.weight.grad is not None and gen.weight.grad.abs().sum() > 0
    # D's own step: gradients of ½[BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)] only, G(x) detached.
    assert all(v.abs().sum() > 0 for k, v in recorded.items() if k != "after" and v.dim() > 1)


def test_coper_loss_network_is_frozen():
    ext = random_extractor("vgg16_unet", size="smoke", in_channels=1, seed=0)
    model = Pix2Pix(torch.nn.Conv2d(2, 1, 1), coper=CoPerLoss(ext, feature_norm="energy"), weights=LossWeights(0.7, 1.0, 100.0), discriminator_channels=8,
                    discriminator_lr=1e-3, source_channels=2, target_channels=1)
    assert all(not p.requires_grad for p in ext.parameters())
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"generator"}  # nothing of the loss network is trained or saved


# ---- metrics -----------------------------------------------------------------------------------------------
def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al. 2004, Gaussian window 11 (σ 1.5), valid region, K1 0.01, K2 0.03: written here with numpy."""
    from scipy.signal import convolve2d

    r = np.arange(11) - 5
    g = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    w = np.outer(g, g)
    f = lambda a: convolve2d(a, w, mode="valid")  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())


def test_psnr_and_ssim_per_slice_on_gray_levels_equal_independent_formulas():
    """Two slices of different error: PSNR (data range 255) and SSIM are computed per slice and then averaged."""
    rng = np.random.default_rng(0)
    real = np.round(rng.random((2, 32, 32)) * 255).astype(np.float32)
    fake = np.clip(real + np.array([3.0, 12.0])[:, None, None] * rng.standard_normal((2, 32, 32)), 0, 255).astype(np.float32)
    out = slice_quality(torch.from_numpy(fake)[:, None], torch.from_numpy(real)[:, None])
    per_slice = [10 * np.log10(255.0 ** 2 / float(((f - r) ** 2).mean())) for f, r in zip(fake, real)]
    assert out["psnr"] == pytest.approx(np.mean(per_slice), rel=1e-5)
    ssim = [_ssim_reference(f.astype(np.float64), r.astype(np.float64), 255.0) for f, r in zip(fake, real)]
    assert out["ssim"] == pytest.approx(np.mean(ssim), abs=1e-4)
    same = slice_quality(torch.from_numpy(real)[:, None], torch.from_numpy(real)[:, None])
    assert same["ssim"] == pytest.approx(1.0, abs=1e-5) and same["psnr"] == pytest.approx(10 * np.log10(255.0 ** 2 / 1e-10))  # floored MSE


@pytest.mark.parametrize("levels", [1, 4, 10])
def test_a_constant_error_of_k_gray_levels_gives_the_analytic_psnr(levels):
    """The paper's convention end to end (quality_rows on a z-scored case): a synthetic target that is ``levels`` 8-bit
    gray levels off the real one everywhere scores 20·log10(255 / levels) dB, whatever each slice's intensity range
    (each slice is its own 0-255 image)."""
    from benchmark.synthesis.evaluation import quality_rows
    from benchmark.synthesis.scaling import SliceScale

    rng = np.random.default_rng(1)
    image = rng.standard_normal((3, 16, 16, 4)) * np.array([1.0, 2.0, 5.0, 9.0]) + 30.0  # slices of very different ranges
    case = torch.from_numpy(image.astype(np.float32))
    scale = SliceScale.of(case, sources=(0, 1))
    assert bool(scale.mask.all())  # no background: the error covers every voxel
    real = scale.to_pix2pix(case[2:], channels=(2,))  # [1, X, Y, Z] in [-1, 1]
    gray = ((real + 1) / 2 * 255).round()
    assert float(gray.amin(dim=(1, 2)).max()) == 0.0 and float(gray.amax(dim=(1, 2)).min()) == 255.0  # each slice spans 0..255
    fake = torch.where(gray + levels <= 255, gray + levels, gray - levels) / 255 * 2 - 1
    out = quality_rows(fake, real, scale=scale, targets=(2,), evaluator=None, primary_only=False)
    assert out["psnr"] == pytest.approx(20 * np.log10(255.0 / levels), rel=1e-6)
    assert quality_rows(fake, real, scale=scale, targets=(2,), evaluator=None, primary_only=True) == {"psnr": out["psnr"]}


def test_the_quality_convention_is_recorded_in_metrics_csv_and_the_cell_config(tmp_path, synthesis_data):
    """metrics.csv says how PSNR / SSIM were computed (8-bit slices, data range 255, slice mean); the Job (hence every
    cell's resolved config) carries Protocol.synthesis_quality; an unknown scale is refused."""
    import pandas as pd

    from benchmark.store import ResultStore
    from benchmark.synthesis.scaling import to_levels

    task = get_task("brats_synthesis")
    infos = {i.name: i for i in kind_of(task).metric_info(task)}
    assert "0-255" in infos["psnr"].description and "data range 255" in infos["psnr"].description and "averaged" in infos["ssim"].description
    store = ResultStore(tmp_path / "out", run="r")
    store.add_metric_info(task.name, infos.values())
    table = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert table.set_index("metric").loc["psnr", "description"] == infos["psnr"].description
    tmp, td = synthesis_data
    job = next(j for j in _plan(tmp, td, ["l1"]).jobs if j.method == "l1")
    assert job.to_dict()["protocol"]["synthesis_quality"] == "slice_8bit"
    assert job.to_dict()["method_config"]["balance"] == "pix2pix"  # the loss reading, in the config too
    with pytest.raises(ValueError, match="slice_8bit"):
        to_levels(torch.zeros(1), "volume")


def test_pretraining_volumes_hold_the_target_series_only():
    task = get_task("brats_synthesis")
    image = np.stack([np.full((4, 4, 2), float(c)) for c in range(4)]).astype(np.float32)
    out = kind_of(task).pretraining_volumes(task, [Volume("a", image, None), Volume("b", image, None)])
    t2 = task.channels.index("t2")
    assert [v.image.shape[0] for v in out] == [1, 1] and all((v.image == t2).all() for v in out)


# ---- planning ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthesis_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth")
    task = get_task("brats_synthesis")
    task.write_synthetic(tmp / "data", n_cases=8, shape=SHAPE, seed=0)
    return tmp, resolve_task_data(task, data_root=tmp / "data", cache_dir=tmp / "cache")


def _profile():
    """The tiny profile (2 steps per stage) on small volumes."""
    return dataclasses.replace(TINY, volume_size=SHAPE)


def _plan(tmp, td, methods, cache_dir=None, backbone=None):
    return build_plan(methods=[MethodEntry(*parse_method_entry(m)) for m in methods], backbone=backbone, task_data=[td], fractions=parse_fractions("100%"), seeds=[0],
                      profile=_profile(), cache_dir=cache_dir or tmp / "cache")


def test_evaluation_networks_are_planned_with_the_job(synthesis_data):
    """The CoPer scoring network and the real-image segmenter are part of the Job (keyed, cached, JSON round trip),
    read from the planner's profile; the worker needs no profile or cache folder of its own."""
    from benchmark.job import Job

    tmp, td = synthesis_data
    job = next(j for j in _plan(tmp, td, ["l1"]).jobs if j.method == "l1")
    by = {n.role: n for n in job.networks}
    assert set(by) == {"coper_metric", "segmenter"}
    metric, segmenter = by["coper_metric"], by["segmenter"]
    assert (metric.stage, metric.method, metric.backbone, metric.channels) == ("pretrain", "swav", "vgg16_unet", (1, 1))
    assert metric.roi == tuple(_profile().rois["vgg16_unet"]) and metric.recipe == _profile().pretrain_recipe(get_method("swav"), "vgg16_unet")
    assert (segmenter.stage, segmenter.backbone, segmenter.task_ref) == ("finetune", "unet2d", "brats")
    assert segmenter.channels == (4, get_task("brats").num_outputs) and segmenter.recipe == _profile().finetune_recipes["unet2d"]
    assert Path(metric.path).parent == tmp / "cache" / "synthesis_eval" and metric.key in metric.path
    assert Job.from_json(job.to_json()) == job
    assert not hasattr(job, "profile") and not hasattr(job, "cache_dir")
    other_seed = build_plan(methods=[MethodEntry("l1")], task_data=[td], fractions=parse_fractions("100%"), seeds=[1], profile=_profile(),
                            cache_dir=tmp / "cache").jobs[0]
    assert {n.key for n in other_seed.networks}.isdisjoint({n.key for n in job.networks})  # per split and seed


def test_evaluation_networks_train_once_as_pretraining_and_report_nothing(synthesis_data, tmp_path, monkeypatch):
    """The worker trains the planned networks before the cells (their time is pretraining time), never reports their
    validation into the trial's metric stream, caches them at their planned paths, and a second Job only loads them."""
    import benchmark.train as train

    tmp, td = synthesis_data
    job = next(j for j in _plan(tmp, td, ["l1"], cache_dir=tmp_path / "cache").jobs if j.method == "l1")
    reported, trained = [], []
    real_pretrain, real_finetune = train.pretrain, train.finetune
    monkeypatch.setattr(train, "pretrain", lambda *a, **kw: trained.append("pretrain") or real_pretrain(*a, **kw))
    monkeypatch.setattr(train, "finetune", lambda *a, **kw: trained.append(kw["tag"]) or real_finetune(*a, **kw))
    (first,) = run_job(job, Hooks(log=lambda _m: None, report=reported.append))
    assert trained[:2] == ["pretrain", "evaluation network segmenter (brats, real images)"]  # l1 itself pretrains nothing
    assert first.pretrain_seconds > 0 and all(Path(n.path).exists() for n in job.networks)
    cell_validations = [step for step, metric, _ in first.curve if metric == "validation_score"]
    assert [m["step"] for m in reported] == cell_validations  # only the compared model's validation reached the runtime
    trained.clear()
    (second,) = run_job(job, Hooks(log=lambda _m: None))
    assert trained == [t for t in trained if t.startswith("finetune l1")] and second.pretrain_seconds == 0.0
    assert {r.metric for r in second.rows} >= {"coper", "lpips", "dice_synth_mean"}


def test_plan_baseline_is_l1_and_ssl_methods_are_na(synthesis_data):
    tmp, td = synthesis_data
    plan = _plan(tmp, td, ["swav", "l1+coper", "l1+coper:loss_network=rand:loss_backbone=resnet_unet"])
    by = {(j.method, j.backbone): j for j in plan.jobs}
    assert "scratch" not in {m for m, _ in by}
    assert {("l1", "vgg16_unet"), ("l1", "resnet_unet")} <= set(by)  # the baseline per loss-network backbone
    assert by[("swav", "resnet_unet")].na_reason and "generator losses" in by[("swav", "resnet_unet")].na_reason
    job = by[("l1+coper", "vgg16_unet")]
    assert job.pretrain is not None and job.pretrain_channels == (1, 1) and job.roi == tuple(SMOKE.rois["pix2pix"])  # the generator's crop
    assert by[("l1", "vgg16_unet")].pretrain is None


def test_coper_loss_network_and_backbone_are_config_fields_that_change_the_job(synthesis_data):
    """loss_backbone picks the Job's backbone (the loss network), loss_network whether and how it pretrains: a random
    network pretrains nothing, SwAV and SimSiam pretrain with their own recipe and configuration (different keys)."""
    tmp, td = synthesis_data
    variants = ["l1+coper", "l1+coper:loss_network=simsiam", "l1+coper:loss_network=rand", "l1+coper:loss_backbone=resnet_unet"]
    jobs = {tuple(sorted(j.method_overrides.items())): j for j in _plan(tmp, td, variants).jobs if j.method == "l1+coper"}
    swav, simsiam = jobs[()], jobs[(("loss_network", "simsiam"),)]
    rand, resnet = jobs[(("loss_network", "rand"),)], jobs[(("loss_backbone", "resnet_unet"),)]
    assert (swav.backbone, resnet.backbone, rand.backbone) == ("vgg16_unet", "resnet_unet", "vgg16_unet")
    assert rand.pretrain is None and swav.pretrain is not None and simsiam.pretrain is not None
    assert len({swav.pretrain.key, simsiam.pretrain.key, resnet.pretrain.key}) == 3
    assert get_method("l1+coper").pretraining_config(simsiam.method_config)["pretext"] == "simsiam"
    assert get_method("l1+coper").data_spec(swav.method_config) == get_method("swav").data_spec(get_method("swav").make_config())
    with pytest.raises(ValueError, match="loss_network"):
        get_method("l1+coper").make_config({"loss_network": "vgg"})


def test_feature_norm_and_the_loss_weights_reach_the_job_but_not_the_pretraining_key(synthesis_data):
    """feature_norm and the eq. 5 weights change fine-tuning only: one loss-network pretraining serves them all; the
    Job's config (recorded per cell) holds the resolved fields, the deprecated lambda2 as the field it means."""
    tmp, td = synthesis_data
    variants = ["l1+coper", "l1+coper:feature_norm=none", "l1+coper:lambda2=5"]
    with pytest.warns(FutureWarning, match="lambda2 is deprecated"):
        jobs = [j for j in _plan(tmp, td, variants).jobs if j.method == "l1+coper"]
    assert len({j.pretrain.key for j in jobs}) == 1
    configs = {(j.method_config.feature_norm, j.method_config.reconstruction_weight) for j in jobs}
    assert configs == {("energy", None), ("energy", 5), ("none", None)}


def test_coper_on_another_backbone_than_its_config_is_na(synthesis_data):
    tmp, td = synthesis_data
    (job,) = [j for j in _plan(tmp, td, ["l1+coper"], backbone="resnet_unet").jobs if j.method == "l1+coper"]
    assert job.na_reason and "l1+coper:loss_backbone=resnet_unet" in job.na_reason


def test_the_six_old_method_names_are_deprecated_aliases_of_variants(capsys):
    from benchmark.cli import build_parser, build_request

    args = build_parser().parse_args(["--methods", "l1+rand_resnet,l1+coper_simsiam_vgg:lambda1=0.4,l1+coper_swav_vgg", "--tasks", "brats_synthesis",
                                      "--hparam", "l1+coper_swav_vgg:reconstruction_weight=5"])
    request = build_request(args, [])
    got = [(m.name, m.overrides) for m in request.methods]
    assert got == [("l1+coper", {"loss_network": "rand", "loss_backbone": "resnet_unet", "reconstruction_weight": 5}),
                   ("l1+coper", {"loss_network": "simsiam", "lambda1": 0.4, "reconstruction_weight": 5}),
                   ("l1+coper", {"reconstruction_weight": 5})]
    err = capsys.readouterr().err
    assert "l1+rand_resnet is deprecated: use l1+coper:loss_network=rand:loss_backbone=resnet_unet" in err
    assert "l1+coper_swav_vgg" not in __import__("benchmark.methods", fromlist=["list_methods"]).list_methods()


def test_l1_and_coper_are_na_on_segmentation_tasks(tmp_path):
    from benchmark.plan import _unsupported
    from benchmark.records import FinetuneSettings

    brats = get_task("brats")
    assert "image synthesis" in (_unsupported(get_method("l1+coper"), brats, "vgg16_unet", FinetuneSettings()) or "")


def test_lambda1_search_reuses_the_pretraining(synthesis_data):
    tmp, td = synthesis_data
    job = next(j for j in _plan(tmp, td, ["l1+coper"]).jobs if j.method == "l1+coper")
    tuned = apply_params(job, {"lambda1": 0.4})
    assert tuned.method_config.lambda1 == 0.4 and tuned.pretrain.key == job.pretrain.key
    assert tuned.cells[0].cell_id != job.cells[0].cell_id


def test_coper_metric_network_is_planned_apart_from_the_loss_network(synthesis_data):
    """The CoPer column's network is never the one ``l1+coper`` trains against: its own seed and its own seeded half of
    the split's non-test cases, hence its own key (item 3 of issue 21)."""
    tmp, td = synthesis_data
    job = next(j for j in _plan(tmp, td, ["l1+coper"]).jobs if j.method == "l1+coper")
    metric = next(n for n in job.networks if n.role == "coper_metric")
    assert (job.backbone, metric.backbone, metric.method) == ("vgg16_unet", "vgg16_unet", "swav")  # the same kind of network ...
    assert metric.seed == job.seed + job.protocol.evaluation_network_seed_offset != job.seed  # ... another seed
    pool = set(job.train_ids) | set(job.val_ids)
    assert set(job.pretrain.case_ids) == pool and set(metric.case_ids) < pool  # ... another split of the target series
    assert len(metric.case_ids) == round(0.5 * len(pool)) and metric.key != job.pretrain.key


# ---- run_job on a planned synthesis Job (no Ray) ----------------------------------------------------------------
def test_run_job_pretrains_on_target_series_and_scores_every_metric(synthesis_data, monkeypatch):
    """The loss network and the CoPer scoring network both pretrain on z-scored target-series volumes, of different cases,
    and end with different weights; the scoring network reads the real test image on exactly that z-scored scale."""
    import benchmark.synthesis.evaluation as evaluation
    import benchmark.train as train
    from benchmark.data import load_volumes

    tmp, td = synthesis_data
    job = next(j for j in _plan(tmp, td, ["l1+coper"]).jobs if j.method == "l1+coper")
    seen, scored = [], []
    real_pretrain, real_distance = train.pretrain, evaluation.coper_distance
    monkeypatch.setattr(train, "pretrain", lambda method, volumes, **kw: seen.append(volumes) or real_pretrain(method, volumes, **kw))
    monkeypatch.setattr(evaluation, "coper_distance", lambda x0, x1, ext: scored.append((x0, x1)) or real_distance(x0, x1, ext))
    results = run_job(job, Hooks(log=lambda _m: None))
    loss_volumes, metric_volumes = seen[0], seen[1]  # the Job's pretraining runs before the evaluation networks
    for volumes in (loss_volumes, metric_volumes):
        assert volumes and all(v.image.shape[0] == 1 for v in volumes)  # one series ...
        assert {v.case_id.split(":")[1] for v in volumes} == {"t2"}  # ... the target
    metric = next(n for n in job.networks if n.role == "coper_metric")
    assert {v.case_id.split(":")[0] for v in metric_volumes} == set(metric.case_ids) != {v.case_id.split(":")[0] for v in loss_volumes}
    loss_state = torch.load(job.pretrain.path, weights_only=True)["backbone"]
    metric_state = torch.load(metric.path, weights_only=True)["backbone"]
    assert loss_state.keys() == metric_state.keys()
    assert any(not torch.equal(loss_state[k], metric_state[k]) for k in loss_state)

    rows = results[0].rows
    metrics = {r.metric for r in rows}
    assert {"psnr", "ssim", "coper", "lpips", "dice_synth_WT", "dice_synth_mean"} <= metrics
    assert {r.case_id for r in rows} == set(job.test_ids)
    assert all(np.isfinite(r.value) for r in rows) and all(0 <= r.value <= 1 for r in rows if r.metric.startswith(("ssim", "dice")))
    # The scoring input: the real test case's z-scored T2 slices with foreground, the scale the network trained on.
    t2 = get_task("brats_synthesis").channels.index("t2")
    (first,) = load_volumes(td.task, [next(c for c in td.cases if c.case_id == sorted(job.test_ids)[0])], volume_size=SHAPE)
    z = torch.from_numpy(np.asarray(first.image))
    fg = torch.nonzero((z[list(td.task.source_index)] != 0).any(dim=0).flatten(0, 1).any(dim=0)).flatten()
    want = z[t2][..., fg].permute(2, 0, 1)[:, None]
    got = next(x1 for _x0, x1 in scored if x1.shape == want.shape and torch.allclose(x1, want, atol=1e-5))
    assert float(got.std()) > 0.5  # z-scored (unit variance inside the body), not a [0, 1] or [-1, 1] rescaling
    mean_pretrained = np.mean([float(v.image[v.image != 0].std()) for v in metric_volumes])
    assert abs(float(want[want != 0].std()) - mean_pretrained) < 0.5  # the same scale as its pretraining volumes


def test_dice_on_synthetic_with_the_real_target_is_the_real_image_dice(synthesis_data):
    """Substituting the real T2, sent through the pix2pix domain and back, gives exactly the segmenter's Dice on the real case."""
    from benchmark.backbones import build_backbone
    from benchmark.data import load_volumes
    from benchmark.inference import predict_volume
    from benchmark.synthesis.evaluation import dice_on_synthetic
    from benchmark.synthesis.scaling import SliceScale

    tmp, td = synthesis_data
    task = td.task
    base = task.label_task
    (volume,) = load_volumes(task, [td.cases[0]], volume_size=SHAPE)
    torch.manual_seed(0)
    seg = build_backbone("unet2d", in_channels=4, out_channels=base.num_outputs, size=SMOKE.backbone_size, roi=(32, 32)).eval()
    image = torch.from_numpy(np.asarray(volume.image))
    scale = SliceScale.of(image, sources=task.source_index)
    real_t2 = scale.to_zscore(scale.to_pix2pix(image[list(task.target_index)], channels=task.target_index), channels=task.target_index)
    torch.testing.assert_close(real_t2, image[list(task.target_index)], atol=1e-5, rtol=0)
    got = dice_on_synthetic(seg, base, image, volume.label, real_t2, target_index=task.target_index, segmenter_roi=(32, 32),
                            device="cpu", protocol=SMOKE.protocol)
    logits = predict_volume(seg, image, roi=(32, 32), protocol=SMOKE.protocol)
    want = base.dice(base.logits_to_regions(logits), base.label_to_regions(torch.from_numpy(volume.label)[None, None]))
    assert got == pytest.approx({f"dice_synth_{k[5:]}": v for k, v in want.items()}, abs=1e-6)
    zeros = dice_on_synthetic(seg, base, image, volume.label, torch.zeros_like(real_t2), target_index=task.target_index,
                              segmenter_roi=(32, 32), device="cpu", protocol=SMOKE.protocol)
    assert zeros.keys() == got.keys()
