"""Training loops (benchmark/train.py): schedules, transfer, sliding-window prediction and one tiny run_job."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.backbones import SMOKE_SIZE, build_backbone
from benchmark.datasources import resolve_task_data
from benchmark.methods import Recipe, get_method
from benchmark.cli import parse_fractions
from benchmark.plan import MethodEntry, build_plan
from benchmark.profiles import SMOKE
from benchmark.protocol import DEFAULT_PROTOCOL
from benchmark.train import Hooks, lr_factor, make_optimizer, run_job, transfer_model
from benchmark.records import FinetuneSettings
from benchmark.inference import predict_volume
from tasks import get_task


# ---- learning-rate schedule ----------------------------------------------------------------------------
def _recipe(schedule="cosine", warmup=0):
    return Recipe(steps=100, batch_size=1, lr=1.0, schedule=schedule, warmup_steps=warmup)


def test_lr_cosine_known_values():
    """Cosine: 1 at the start, 0.5 half-way, 0 at the end, monotone in between."""
    r = _recipe("cosine")
    assert lr_factor(0, total=100, recipe=r) == pytest.approx(1.0)
    assert lr_factor(50, total=100, recipe=r) == pytest.approx(0.5)
    assert lr_factor(25, total=100, recipe=r) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(100, total=100, recipe=r) == pytest.approx(0.0, abs=1e-12)
    values = [lr_factor(s, total=100, recipe=r) for s in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lr_poly_known_values():
    """Poly (nnU-Net): (1 − t/T)^0.9."""
    r = _recipe("poly")
    assert lr_factor(0, total=100, recipe=r) == pytest.approx(1.0)
    assert lr_factor(50, total=100, recipe=r) == pytest.approx(0.5**0.9)
    assert lr_factor(90, total=100, recipe=r) == pytest.approx(0.1**0.9)


def test_lr_linear_warmup_then_cosine():
    """Warm-up rises linearly to 1 over warmup_steps, then cosine decays over the remaining steps."""
    r = _recipe("cosine", warmup=10)
    assert lr_factor(0, total=110, recipe=r) == pytest.approx(0.1)
    assert lr_factor(4, total=110, recipe=r) == pytest.approx(0.5)
    assert lr_factor(9, total=110, recipe=r) == pytest.approx(1.0)
    assert lr_factor(10, total=110, recipe=r) == pytest.approx(1.0)
    assert lr_factor(60, total=110, recipe=r) == pytest.approx(0.5)


def test_lr_final_lr_floor_and_warmup_in_epochs():
    """final_lr: cosine / poly decay to final_lr / lr instead of 0; warmup_epochs: epochs x (total / epochs) steps.
    Unset (every other recipe), the factors are exactly the old ones."""
    r = Recipe(steps=None, epochs=10, batch_size=1, lr=0.6, final_lr=0.0006, warmup_epochs=2)
    assert r.warmup_steps_for(100) == 20
    assert lr_factor(0, total=100, recipe=r) == pytest.approx(1 / 20)
    assert lr_factor(19, total=100, recipe=r) == pytest.approx(1.0)
    assert lr_factor(20, total=100, recipe=r) == pytest.approx(1.0)
    assert lr_factor(100, total=100, recipe=r) == pytest.approx(0.001)
    assert lr_factor(60, total=100, recipe=r) == pytest.approx(0.001 + 0.999 * 0.5)
    poly = Recipe(steps=100, batch_size=1, lr=1.0, schedule="poly", final_lr=0.1)
    assert lr_factor(50, total=100, recipe=poly) == pytest.approx(0.1 + 0.9 * 0.5**0.9)
    for schedule in ("cosine", "poly", "constant"):
        plain = _recipe(schedule, warmup=10)
        assert plain.warmup_steps_for(110) == 10
        for step in (0, 9, 10, 37, 109):
            t = (step - 10) / 100
            old = (step + 1) / 10 if step < 10 else {"cosine": 0.5 * (1.0 + math.cos(math.pi * t)), "poly": (1.0 - t) ** 0.9, "constant": 1.0}[schedule]
            assert lr_factor(step, total=110, recipe=plain) == old  # bit-identical to the old schedule
    with pytest.raises(ValueError):
        Recipe(steps=10, batch_size=1, lr=1.0, warmup_epochs=1)  # no epochs to count in
    with pytest.raises(ValueError):
        Recipe(steps=10, batch_size=1, lr=1.0, final_lr=2.0)


def test_lr_constant_and_unknown():
    """Constant stays 1; an unknown schedule name is an error."""
    assert lr_factor(77, total=100, recipe=_recipe("constant")) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, total=100, recipe=_recipe("step"))


def test_make_optimizer_follows_recipe():
    """The optimizer type, lr, momentum and weight decay come from the recipe."""
    params = [nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(params, Recipe(steps=1, batch_size=1, lr=0.01, optimizer="sgd", momentum=0.99, weight_decay=3e-5))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["lr"] == 0.01 and sgd.defaults["momentum"] == 0.99 and sgd.defaults["weight_decay"] == 3e-5
    assert isinstance(make_optimizer(params, Recipe(steps=1, batch_size=1, lr=1e-3, optimizer="adamw")), torch.optim.AdamW)
    from timm.optim import Lars

    lars = make_optimizer(params, Recipe(steps=1, batch_size=1, lr=0.6, optimizer="lars", momentum=0.9, weight_decay=1e-6))
    assert isinstance(lars, Lars) and lars.defaults["trust_coeff"] == 0.001 and not lars.defaults["trust_clip"]
    with pytest.raises(ValueError):
        make_optimizer(params, Recipe(steps=1, batch_size=1, lr=1e-3, optimizer="lamb"))


def test_recipe_steps_for_epochs():
    """Epoch recipes convert to steps with the data size, or with fixed nnU-Net epoch lengths."""
    assert Recipe(steps=None, epochs=3, batch_size=4, lr=1.0).steps_for(10) == 9
    assert Recipe(steps=None, epochs=3, batch_size=4, lr=1.0, iterations_per_epoch=250).steps_for(10) == 750
    assert Recipe(steps=7, batch_size=4, lr=1.0).steps_for(10) == 7


# ---- transfer -----------------------------------------------------------------------------------------
BRATS = get_task("brats")


def _pretrained(name: str, channels, roi):
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=channels[0], out_channels=channels[1], size=SMOKE_SIZE, roi=roi)
    with torch.no_grad():
        for p in model.parameters():  # make every pretrained tensor distinctive (even zero-initialised biases)
            p.add_(torch.randn_like(p))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_transfer_csi_keeps_all_but_input_and_output():
    """CSI ("all"): every weight is the pretrained one except the replaced input and output layers."""
    csi = get_method("csi")
    channels = csi.backbone_channels(csi.make_config(), in_channels=4)
    assert channels == (8, 4)
    state = _pretrained("unet2d", channels, (32, 32))
    torch.manual_seed(1)
    model = transfer_model(csi, "unet2d", state=state, pretrain_channels=channels, task=BRATS, size=SMOKE_SIZE, roi=(32, 32))
    new = model.state_dict()
    assert set(new) == set(state)
    assert new["net.conv_0.conv_0.conv.weight"].shape[1] == 4  # 4 BraTS modalities in
    assert new["net.final_conv.weight"].shape[0] == 3  # WT, TC, ET out
    replaced = {k for k in new if k.startswith(("net.conv_0.conv_0.conv.", "net.final_conv."))}
    assert replaced == {"net.conv_0.conv_0.conv.weight", "net.conv_0.conv_0.conv.bias", "net.final_conv.weight", "net.final_conv.bias"}
    for key in set(new) - replaced:
        assert torch.equal(new[key], state[key]), key
    for key in replaced:
        assert new[key].shape != state[key].shape or not torch.equal(new[key], state[key]), key
    assert model(torch.randn(1, 4, 32, 32)).shape == (1, 3, 32, 32)


def test_transfer_csi_replaces_input_even_when_channels_match():
    """CSI replaces the input layer on transfer even if the channel count happens to match (section 5.4)."""
    csi = get_method("csi")  # pretrained with 4 input channels, the same number as BraTS has
    state = _pretrained("unet2d", (4, 2), (32, 32))
    model = transfer_model(csi, "unet2d", state=state, pretrain_channels=(4, 2), task=BRATS, size=SMOKE_SIZE, roi=(32, 32))
    assert not torch.equal(model.state_dict()["net.conv_0.conv_0.conv.weight"], state["net.conv_0.conv_0.conv.weight"])
    assert torch.equal(model.state_dict()["net.down_1.convs.conv_0.conv.weight"], state["net.down_1.convs.conv_0.conv.weight"])


def test_transfer_csm_encoder_only():
    """CSM ("encoder"): encoder weights equal the pretrained ones; the decoder is freshly initialised."""
    csm = get_method("csm")
    roi = (16, 16, 16)
    state = _pretrained("vit", (4, 4), roi)
    torch.manual_seed(1)
    model = transfer_model(csm, "vit", state=state, pretrain_channels=(4, 4), task=BRATS, size=SMOKE_SIZE, roi=roi)
    new = model.state_dict()
    encoder = [k for k in new if k.startswith("encoder.")]
    decoder = [k for k in new if not k.startswith("encoder.") and new[k].is_floating_point()]
    assert encoder and decoder
    for key in encoder:
        assert torch.equal(new[key], state[key]), key
    for key in decoder:
        if key in state and new[key].shape == state[key].shape:
            assert not torch.equal(new[key], state[key]), key
    assert model.out.conv.conv.out_channels == 3


def test_transfer_dae_keeps_input_replaces_output():
    """DAE ("all", same input channels): the input layer stays pretrained, the output layer is new."""
    dae = get_method("dae")
    roi = SMOKE.rois["swin_unetr"]
    state = _pretrained("swin_unetr", (4, 4), roi)
    torch.manual_seed(1)
    model = transfer_model(dae, "swin_unetr", state=state, pretrain_channels=(4, 4), task=BRATS, size=SMOKE_SIZE, roi=roi)
    new = model.state_dict()
    out_key = "net.out.conv.conv.weight"
    assert new[out_key].shape[0] == 3
    for key in new:
        if not key.startswith("net.out."):
            assert torch.equal(new[key], state[key]), key


def test_transfer_without_state_is_fresh_task_network():
    """Scratch (no state): a fresh network with the task's input and output channels."""
    model = transfer_model(get_method("scratch"), "unet2d", state=None, pretrain_channels=(4, 3), task=get_task("btcv"),
                           size=SMOKE_SIZE, roi=(32, 32))
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 14, 32, 32)


# ---- sliding-window prediction --------------------------------------------------------------------------
def test_predict_volume_2d_equals_slice_by_slice():
    """2D nets predict a volume [C, X, Y, Z] slice by slice -> [1, K, X, Y, Z]."""
    torch.manual_seed(0)
    net = build_backbone("unet2d", in_channels=4, out_channels=3, size=SMOKE_SIZE, roi=(32, 32))
    image = torch.randn(4, 32, 32, 5)
    logits = predict_volume(net, image, roi=(32, 32), protocol=DEFAULT_PROTOCOL)
    assert logits.shape == (1, 3, 32, 32, 5)
    with torch.no_grad():
        expected = torch.stack([net(image[..., z][None])[0] for z in range(5)], dim=-1)[None]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_predict_volume_2d_axes_with_windows():
    """With a pointwise net and a volume larger than the window, axes X, Y, Z land where they belong."""
    torch.manual_seed(0)
    net = nn.Conv2d(2, 3, kernel_size=1)
    image = torch.randn(2, 40, 24, 3)
    logits = predict_volume(net, image, roi=(16, 16), protocol=DEFAULT_PROTOCOL)
    assert logits.shape == (1, 3, 40, 24, 3)
    with torch.no_grad():
        expected = torch.einsum("kc,cxyz->kxyz", net.weight[:, :, 0, 0], image) + net.bias.view(3, 1, 1, 1)
    torch.testing.assert_close(logits[0], expected, atol=1e-5, rtol=1e-5)


def test_predict_volume_3d_pointwise():
    """3D nets run as a 3D sliding window and return [1, K, X, Y, Z]."""
    torch.manual_seed(0)
    net = nn.Conv3d(2, 3, kernel_size=1)
    image = torch.randn(2, 20, 12, 10)
    logits = predict_volume(net, image, roi=(8, 8, 8), protocol=DEFAULT_PROTOCOL)
    with torch.no_grad():
        expected = net(image[None])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


# ---- one tiny run_job ----------------------------------------------------------------------------------
SHAPE = (32, 32, 16)


@pytest.fixture(scope="module")
def tiny_group(tmp_path_factory):
    """A CSI group on 8 tiny synthetic BraTS subjects with 2-step pretraining and fine-tuning."""
    tmp = tmp_path_factory.mktemp("run_job")
    data = tmp / "brats"
    get_task("brats").write_synthetic(data, n_cases=8, shape=SHAPE, seed=0)
    td = resolve_task_data(get_task("brats"), data_root=data, cache_dir=tmp / "cache")
    few = lambda recipe: dataclasses.replace(recipe, steps=2, batch_size=2)  # noqa: E731
    profile = dataclasses.replace(
        SMOKE, name="unit", volume_size=SHAPE, rois={"unet2d": (32, 32), "swin_unetr": (32, 32, 32), "vit": (32, 32, 16)},
        finetune_recipes={k: few(v) for k, v in SMOKE.finetune_recipes.items()},
        smoke_pretrain={k: few(v) for k, v in SMOKE.smoke_pretrain.items()},
    )
    plan = build_plan(methods=[MethodEntry("csi")], task_data=[td], fractions=parse_fractions("100%,25%"), seeds=[0], profile=profile,
                      cache_dir=tmp / "cache")
    group = next(g for g in plan.jobs if g.method == "csi")
    logs: list[str] = []
    first = run_job(group, Hooks(log=logs.append))
    return group, first, logs


def test_run_job_returns_dice_rows_per_cell(tiny_group):
    """One result per cell, each with dice_WT/TC/ET/mean in [0, 1] for every test case."""
    group, results, _ = tiny_group
    assert [r.cell_id for r in results] == [c.cell_id for c in group.cells]
    test_ids = set(group.test_ids)
    for result in results:
        assert result.pretrain_reused is False and result.pretrain_seconds > 0
        assert math.isfinite(result.final_finetune_loss)
        by_case: dict[str, dict[str, float]] = {}
        for row in result.rows:
            by_case.setdefault(row.case_id, {})[row.metric] = row.value
        assert set(by_case) == test_ids
        for metrics in by_case.values():
            assert set(metrics) == {"dice_WT", "dice_TC", "dice_ET", "dice_mean", "dice_all", "hd95_WT", "hd95_TC", "hd95_ET", "hd95_mean",
                                    "empty_pred_WT", "empty_pred_TC", "empty_pred_ET"}
            assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if k.startswith("dice_"))
            assert all(v >= 0.0 or math.isnan(v) for k, v in metrics.items() if k.startswith("hd95_"))  # mm; NaN: undefined (empty mask)
            assert metrics["dice_mean"] == pytest.approx((metrics["dice_WT"] + metrics["dice_TC"] + metrics["dice_ET"]) / 3)


def test_run_job_writes_pretrain_checkpoint(tiny_group):
    """The pretrained backbone is saved at the content-hashed path with its key and loss curve."""
    group, _, _ = tiny_group
    path = Path(group.pretrain.path)
    assert path.exists() and path.stem == group.pretrain.key
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["key"] == group.pretrain.key
    assert len(checkpoint["losses"]) == 2
    assert checkpoint["backbone"]["net.conv_0.conv_0.conv.weight"].shape[1] == 8  # 4 modalities x 2 mixtures
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]  # no temp file of the atomic writer left


def test_run_job_reuses_checkpoint(tiny_group):
    """A second run of the same group loads the cached pretraining instead of training again."""
    group, _, _ = tiny_group
    path = Path(group.pretrain.path)
    stamp = path.stat().st_mtime_ns
    logs: list[str] = []
    again = run_job(group, Hooks(log=logs.append))
    assert all(r.pretrain_reused is True and r.pretrain_seconds == 0.0 for r in again)
    assert path.stat().st_mtime_ns == stamp
    assert any("reused" in line for line in logs)
    assert not any("pretrain csi" in line for line in logs)


def test_run_job_data_flow(tiny_group, tmp_path, monkeypatch):
    """Pretraining sees exactly the training cases (never test cases); each cell fine-tunes on its labelled cases only."""
    import benchmark.train as train

    group, _, _ = tiny_group
    job = dataclasses.replace(group, pretrain=dataclasses.replace(group.pretrain, path=str(tmp_path / "fresh.pt")))  # force a new pretraining
    seen: dict[str, list] = {"pretrain": [], "finetune": []}
    monkeypatch.setattr(train, "pretrain", lambda method, volumes, **kw: seen["pretrain"].append([v.case_id for v in volumes]) or [0.0])
    monkeypatch.setattr(train, "finetune", lambda model, task, volumes, **kw: seen["finetune"].append([v.case_id for v in volumes]) or [0.0])
    results = run_job(job, Hooks(log=lambda _msg: None))
    assert [sorted(ids) for ids in seen["pretrain"]] == [sorted(job.train_ids + job.val_ids)]  # every non-test case, no label read
    assert not set(seen["pretrain"][0]) & set(job.test_ids)
    assert [sorted(ids) for ids in seen["finetune"]] == [sorted(c.labeled_ids) for c in job.cells]
    assert len(seen["finetune"][1]) < len(seen["finetune"][0])
    assert (tmp_path / "fresh.pt").exists()
    assert {row.case_id for row in results[0].rows} == set(job.test_ids)


def _unit_plan(tmp, methods, **kw):
    """A plan on 8 tiny synthetic BraTS subjects with 2-step stages, for the given methods."""
    data = tmp / "brats"
    if not data.exists():
        get_task("brats").write_synthetic(data, n_cases=8, shape=SHAPE, seed=0)
    td = resolve_task_data(get_task("brats"), data_root=data, cache_dir=tmp / "cache")
    few = lambda recipe: dataclasses.replace(recipe, steps=2, batch_size=2)  # noqa: E731
    profile = dataclasses.replace(
        SMOKE, name="unit", volume_size=SHAPE, rois={**SMOKE.rois, "unet2d": (32, 32), "vgg_unet": (32, 32)},
        finetune_recipes={k: few(v) for k, v in SMOKE.finetune_recipes.items()},
        smoke_pretrain={k: few(v) for k, v in SMOKE.smoke_pretrain.items()},
    )
    return build_plan(methods=[MethodEntry(m) for m in methods], task_data=[td], fractions=parse_fractions("100%,25%"), seeds=[0], profile=profile,
                      cache_dir=tmp / "cache", **kw)


def test_run_job_label_aware_pretrains_on_labelled_cases_with_labels(tmp_path, monkeypatch):
    """LADP's pretraining batches carry labels, and only from the cell's labelled cases."""
    import benchmark.train as train

    plan = _unit_plan(tmp_path, ["ladp"])
    group = next(g for g in plan.jobs if g.method == "ladp" and g.cells[0].fraction == "25%")
    seen = []
    real_pretrain = train.pretrain
    monkeypatch.setattr(train, "pretrain", lambda method, volumes, **kw: seen.append([v.case_id for v in volumes]) or real_pretrain(method, volumes, **kw))
    results = run_job(group, Hooks(log=lambda _msg: None))
    assert seen == [list(group.cells[0].labeled_ids)]
    assert len(results) == 1 and results[0].rows


def test_run_job_restart_runs_two_rounds_and_mixup_is_applied(tmp_path, monkeypatch):
    """CNN-restart fine-tunes twice per cell; --finetune-aug reaches the fine-tuning loop."""
    import benchmark.train as train

    plan = _unit_plan(tmp_path, ["restart"], finetune=FinetuneSettings(augmentation="mixup", mixup_alpha=0.3))
    group = next(g for g in plan.jobs if g.method == "restart")
    calls = []
    real_finetune = train.finetune
    monkeypatch.setattr(train, "finetune", lambda *a, **kw: calls.append((kw["tag"], kw["settings"].augmentation, kw["settings"].mixup_alpha))
                        or real_finetune(*a, **kw))
    run_job(group, Hooks(log=lambda _msg: None))
    assert [c[0].rsplit(" ", 2)[-2:] for c in calls] == [["round", "1"], ["round", "2"]] * 2
    assert {(c[1], c[2]) for c in calls} == {("mixup", 0.3)}


def test_test_metrics_come_from_the_validation_selected_checkpoint(tiny_group, monkeypatch):
    """Validation scores 0.2, 0.9, 0.5, ... over the fine-tuning steps: the test cases are evaluated once, with the
    weights of the best-scoring step (not the last), and the cell records that step and its validation curve."""
    import benchmark.train as train

    group, _, _ = tiny_group
    job = dataclasses.replace(group, validation_every=1, finetune_steps=3)
    real_evaluate = train.evaluate
    scores = iter([0.2, 0.9, 0.5] * 2)
    seen = {"validation": [], "test": []}

    def fake_evaluate(model, task, volumes, **kw):
        checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
        if {v.case_id for v in volumes} == set(job.val_ids):
            seen["validation"].append(checksum)
            score = next(scores)
            return [train.MetricRow("dice_mean", score, v.case_id) for v in volumes]
        assert {v.case_id for v in volumes} == set(job.test_ids)
        seen["test"].append(checksum)
        return real_evaluate(model, task, volumes, **kw)

    monkeypatch.setattr(train, "evaluate", fake_evaluate)
    results = run_job(job, Hooks(log=lambda _msg: None))
    assert len(seen["validation"]) == 3 * len(job.cells) and len(seen["test"]) == len(job.cells)
    for i, result in enumerate(results):
        assert result.selected_step == 2 and result.validation_score == pytest.approx(0.9)
        assert seen["test"][i] == pytest.approx(seen["validation"][3 * i + 1])  # the weights validated at step 2
        assert seen["test"][i] != pytest.approx(seen["validation"][3 * i + 2])  # not the last step's
        assert [(s, m) for s, m, _ in result.curve if m == "validation_score"] == [(1, "validation_score"), (2, "validation_score"), (3, "validation_score")]


def test_search_trial_never_loads_a_test_case(tiny_group, monkeypatch):
    """run_job(evaluate_test=False) (a search trial) loads and evaluates no test case; it returns the validation curve."""
    import benchmark.train as train

    group, _, _ = tiny_group
    real_read = train.read_cases
    loaded = []
    monkeypatch.setattr(train, "read_cases", lambda task, case_ids, **kw: loaded.extend(case_ids) or real_read(task, case_ids, **kw))
    results = run_job(group, Hooks(log=lambda _msg: None), evaluate_test=False)
    assert not set(loaded) & set(group.test_ids) and set(group.val_ids) <= set(loaded)
    assert all(not r.rows and r.curve and r.selected_step for r in results)


def test_concurrent_jobs_with_one_pretraining_key_pretrain_it_once(tiny_group, tmp_path, monkeypatch):
    """Two search trials (threads here) with the same pretext configuration: the second waits on the cache lock and
    reuses the first's checkpoint instead of pretraining the same key again."""
    import threading
    import time

    import benchmark.train as train

    group, _, _ = tiny_group
    job = dataclasses.replace(group, pretrain=dataclasses.replace(group.pretrain, path=str(tmp_path / "shared.pt")))
    calls = []
    real = train._pretrain

    def slow_pretrain(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(1.0)  # the other thread arrives while this one holds the lock
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "_pretrain", slow_pretrain)
    task = get_task(job.task_ref)
    volumes = train.job_reader(job)(task, job.train_ids + job.val_ids, data_root=job.data_root)  # every non-test case
    method_cls = get_method(job.method)
    out = []
    threads = [threading.Thread(target=lambda: out.append(train._pretrained_backbone(job, method_cls, task, volumes, Hooks(log=lambda _m: None))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and sorted(reused for _, _, reused, _ in out) == [False, True]
