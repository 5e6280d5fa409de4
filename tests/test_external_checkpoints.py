"""Checkpoints made elsewhere as leaderboard rows (``--pretrained NAME=PATH[:backbone=B]``, ``benchmark.external``):
every container and key layout maps onto the backbone (MONAI's Swin-UNETR SSL weights checked against MONAI's own
``SwinUNETR.load_from``), what transfers is counted, a checkpoint that does not fit is one error naming the file, the
keys and both shapes (exit code 2, no traceback), and a DDP-saved state dict fine-tunes as row NAME beside scratch on
its backbone, with the file's sha256 as its pretrain_hash (end to end through the Python API and Ray)."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from benchmark import external
from benchmark.api import parse_fractions
from benchmark.backbones import build_backbone
from benchmark.backbones.transfer import TransferError, external_model, read_external
from benchmark.cli import main
from benchmark.datasources import resolve_task_data
from benchmark.errors import BenchmarkInputError
from benchmark.external import PretrainedEntry
from benchmark.job import Job
from benchmark.plan import build_plan
from benchmark.profiles import SMOKE
from benchmark.store import cell_record
from benchmark.testing import TINY, roi_of
from tasks import get_task

TASK4 = SimpleNamespace(name="fake", channels=("t1", "t1ce", "t2", "flair"), num_outputs=3)


def _net(backbone: str, *, channels: int = 4, outputs: int = 4, size=TINY, seed: int = 0):
    torch.manual_seed(seed)
    return build_backbone(backbone, in_channels=channels, out_channels=outputs, size=size, roi=roi_of(backbone))


def _wrapped(state: dict, how: str):
    ddp = {f"module.{k}": v for k, v in state.items()}
    return {"plain": state, "state_dict": {"state_dict": state, "epoch": 3}, "model": {"model": state, "optimizer": {"lr": 0.1}},
            "ddp": ddp, "ddp_state_dict": {"state_dict": ddp}, "nested": {"model": {"state_dict": ddp}},
            "ssl_method": {"state_dict": {**{f"module.backbone.{k}": v for k, v in state.items()}, "module.head.weight": torch.ones(2, 2)}},
            }[how]


@pytest.mark.parametrize("how", ["plain", "state_dict", "model", "ddp", "ddp_state_dict", "nested", "ssl_method"])
def test_every_container_and_wrapper_prefix_maps_onto_the_backbone(how):
    net = _net("unet2d")
    state = net.state_dict()
    weights = read_external(_wrapped(state, how), "unet2d", size=TINY, roi=roi_of("unet2d"))
    assert set(state) <= set(weights.state) and all(torch.equal(weights.state[k], state[k]) for k in state)
    assert weights.unmatched == (("head.weight",) if how == "ssl_method" else ())
    if how.startswith("ddp") or how in ("nested", "ssl_method"):
        assert "'module.'" in weights.layout.split('stripped')[1]
    model, report = external_model("unet2d", weights, task=TASK4, size=TINY, roi=roi_of("unet2d"))
    outputs = [k for k in state if model.part_of(k) == "output"]
    for key, value in model.state_dict().items():
        if key not in outputs:
            assert torch.equal(value, state[key]), key  # every tensor but the task's output layer, unchanged
    assert (report.loaded, report.missing, report.replaced) == (len(state) - len(outputs), 0, len(outputs))
    assert report.unexpected == (1 if how == "ssl_method" else 0)


def _swin_vit_checkpoint(seed: int = 1) -> tuple[dict, dict]:
    """(MONAI SSL-layout checkpoint, the SwinViT state it holds): ``{"state_dict": {"module.patch_embed...", "module.layers1.0
    .blocks.0.mlp.fc1.weight", ...}}`` as research-contributions' SwinUNETR/Pretrain saves its encoder (model_swinvit.pt)."""
    vit = _net("swin_unetr", channels=1, outputs=1, seed=seed).net.swinViT.state_dict()
    monai_names = {"module." + k.replace("mlp.linear1.", "mlp.fc1.").replace("mlp.linear2.", "mlp.fc2."): v for k, v in vit.items()}
    return {"state_dict": monai_names}, vit


def test_monai_swin_unetr_ssl_weights_load_as_monai_load_from_loads_them():
    """Oracle: MONAI's own SwinUNETR.load_from on the same file. Every SwinViT tensor it copies arrives identically in the
    suite's swin_unetr; the convolutional decoder is missing (left initialised), the output layer replaced."""
    checkpoint, vit = _swin_vit_checkpoint()
    oracle = _net("swin_unetr", channels=1, outputs=3, seed=2)
    oracle.net.load_from(checkpoint)
    weights = read_external(checkpoint, "swin_unetr", size=TINY, roi=roi_of("swin_unetr"))
    assert "keys placed under 'net.swinViT.'" in weights.layout and "mlp.fc1. -> mlp.linear1." in weights.layout and not weights.unmatched
    one = SimpleNamespace(name="ct", channels=("ct",), num_outputs=3)
    model, report = external_model("swin_unetr", weights, task=one, size=TINY, roi=roi_of("swin_unetr"))
    ours, theirs = model.state_dict(), oracle.state_dict()
    copied = [f"net.swinViT.{k}" for k in vit]
    assert all(torch.equal(ours[k], theirs[k]) for k in copied)
    assert report.loaded == len(vit) and report.unexpected == 0
    assert report.missing == sum(1 for k in ours if not k.startswith("net.swinViT.") and model.part_of(k) != "output")
    # A four-channel task: the one-channel patch embedding is inflated, so a repeated channel gives the pretrained response.
    model4, report4 = external_model("swin_unetr", weights, task=TASK4, size=TINY, roi=roi_of("swin_unetr"))
    assert report4.inflated and report4.loaded == len(vit)
    x = torch.randn(1, 1, *roi_of("swin_unetr"))
    with torch.no_grad():
        torch.testing.assert_close(model4.net.swinViT.patch_embed(x.repeat(1, 4, 1, 1, 1)), oracle.net.swinViT.patch_embed(x), atol=1e-5, rtol=1e-5)


def test_a_whole_monai_swin_unetr_state_dict_loads_under_net():
    monai = _net("swin_unetr", channels=4, outputs=3).net.state_dict()  # MONAI's SwinUNETR keys: swinViT.*, encoder1.*, decoder*.*, out.*
    weights = read_external({"state_dict": monai}, "swin_unetr", size=TINY, roi=roi_of("swin_unetr"))
    assert "keys placed under 'net.'" in weights.layout
    _, report = external_model("swin_unetr", weights, task=TASK4, size=TINY, roi=roi_of("swin_unetr"))
    assert report.missing == 0 and report.unexpected == 0 and report.loaded == len(monai) - report.replaced


def test_a_checkpoint_that_does_not_fit_names_the_keys_and_both_shapes():
    narrow = dataclasses.replace(TINY, unet_features=(4, 4, 8, 8, 8, 4))
    weights = read_external(_net("unet2d", size=narrow).state_dict(), "unet2d", size=TINY, roi=roi_of("unet2d"))
    with pytest.raises(TransferError, match=r"does not fit backbone 'unet2d'.*net\.conv_0\.conv_0\.conv\.weight|does not fit backbone 'unet2d'") as info:
        external_model("unet2d", weights, task=TASK4, size=TINY, roi=roi_of("unet2d"))
    assert "checkpoint (4," in str(info.value) and "backbone (8," in str(info.value)
    vit = read_external(_net("vit").state_dict(), "unet2d", size=TINY, roi=roi_of("unet2d"))
    with pytest.raises(TransferError, match="holds no tensor of backbone 'unet2d'"):
        external_model("unet2d", vit, task=TASK4, size=TINY, roi=roi_of("unet2d"))
    with pytest.raises(TransferError, match="holds no state dict"):
        read_external({"epoch": 3, "args": "x"}, "unet2d", size=TINY, roi=roi_of("unet2d"))


def _save(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


def test_resolve_hashes_finds_the_backbone_and_refuses_unsafe_files(tmp_path):
    checkpoint, _ = _swin_vit_checkpoint()
    path = _save(checkpoint, tmp_path / "model_swinvit.pt")
    resolved = external.resolve(PretrainedEntry("swinssl", path), profile=SMOKE, backbone=None, storage_root=str(tmp_path))
    assert resolved.backbone == "swin_unetr"  # the only backbone that names its tensors
    assert resolved.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest() and resolved.path == path
    pickled = _save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, tmp_path / "with_args.pt")
    with pytest.raises(BenchmarkInputError, match="with_args.pt cannot be read as a weights-only torch file"):
        external.resolve(PretrainedEntry("x", pickled, "unet2d"), profile=SMOKE, backbone=None, storage_root=str(tmp_path))
    remote = external.resolve(PretrainedEntry("swinssl", path), profile=SMOKE, backbone=None, storage_root="memory://bucket/medssl")
    assert remote.path == f"memory://bucket/medssl/external/{resolved.sha256}.pt"  # workers on other nodes read the storage's copy


def test_a_suite_cache_file_names_its_backbone_and_an_encoder_only_method_transfers_its_encoder(tmp_path):
    net = _net("swin_unetr", channels=4, outputs=4, size=SMOKE.backbone_size)
    payload = {"backbone": net.state_dict(), "key": "abc", "losses": [1.0, 0.5], "job": {"method": "swin_unetr_ssl", "backbone": "swin_unetr"}}
    path = _save(payload, tmp_path / "abc.pt")
    resolved = external.resolve(PretrainedEntry("ours", path), profile=SMOKE, backbone="unet2d", storage_root=str(tmp_path))
    assert resolved.backbone == "swin_unetr" and resolved.encoder_only  # the file's Job, not --backbone
    spec = external.for_task(resolved, get_task("brats"), profile=SMOKE)
    encoder = sum(1 for k in net.state_dict() if net.in_encoder(k))
    assert spec.transfer.loaded == encoder and spec.transfer.missing > 0 and spec.transfer.unexpected == 0


def _task_data(tmp_path, name="brats"):
    data = tmp_path / name
    get_task(name).write_synthetic(data, n_cases=8, shape=(32, 32, 16), seed=0)
    return resolve_task_data(get_task(name), data_root=data, cache_dir=tmp_path / "cache")


UNIT = dataclasses.replace(SMOKE, name="unit", volume_size=(32, 32, 16), rois={**SMOKE.rois, "unet2d": (32, 32)},
                           finetune_recipes={k: dataclasses.replace(v, steps=2, batch_size=2) for k, v in SMOKE.finetune_recipes.items()})


def test_the_planner_adds_the_row_beside_scratch_and_the_job_round_trips(tmp_path):
    td = _task_data(tmp_path)
    path = _save({f"module.{k}": v for k, v in _net("unet2d", size=SMOKE.backbone_size).state_dict().items()}, tmp_path / "ddp.pt")
    resolved = external.resolve(PretrainedEntry("mine", path, "unet2d"), profile=UNIT, backbone=None, storage_root=str(tmp_path / "cache"))
    plan = build_plan(methods=[], task_data=[td], fractions=parse_fractions("100%,25%"), seeds=[0, 1], profile=UNIT,
                      cache_dir=tmp_path / "cache", pretrained=[resolved])
    assert sorted({(j.method, j.backbone) for j in plan.jobs}) == [("mine", "unet2d"), ("scratch", "unet2d")]
    mine = [j for j in plan.jobs if j.method == "mine"]
    scratch = [j for j in plan.jobs if j.method == "scratch"]
    assert len(mine) == 2 and all(j.pretrain is None and j.method_config is None for j in mine)
    for ours, theirs in zip(mine, scratch):  # the same splits, labelled cases and fine-tuning as scratch
        assert (ours.test_ids, ours.val_ids, [c.labeled_ids for c in ours.cells]) == (theirs.test_ids, theirs.val_ids, [c.labeled_ids for c in theirs.cells])
        assert (ours.finetune_recipe, ours.finetune_steps, ours.finetune_rounds) == (theirs.finetune_recipe, theirs.finetune_steps, theirs.finetune_rounds)
    job = mine[0]
    assert job.cells[0].cell_id.startswith("mine|unet2d|brats|100%|seed0|fold0|") and job.external.sha256 == resolved.sha256
    assert Job.from_json(job.to_json()) == job
    record = cell_record(job, job.cells[0], status="done")
    assert record["pretrain_hash"] == hashlib.sha256(open(path, "rb").read()).hexdigest() and record["method"] == "mine"
    assert (record["transfer_loaded"], record["transfer_missing"], record["transfer_unexpected"], record["transfer_replaced"]) == (80, 0, 0, 2)
    assert json.loads(record["config"])["external"]["source"] == path
    # Another file under the same name: other cells.
    other = _save({k: v + 1 for k, v in torch.load(path).items()}, tmp_path / "other.pt")
    again = external.resolve(PretrainedEntry("mine", other, "unet2d"), profile=UNIT, backbone=None, storage_root=str(tmp_path / "cache"))
    replan = build_plan(methods=[], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=UNIT, cache_dir=tmp_path / "cache",
                        pretrained=[again])
    assert next(j for j in replan.jobs if j.method == "mine").cells[0].cell_id != job.cells[0].cell_id


def test_the_worker_fine_tunes_from_the_checkpoint_weights_and_checks_its_hash(tmp_path, monkeypatch):
    from benchmark import train

    td = _task_data(tmp_path)
    state = _net("unet2d", size=SMOKE.backbone_size, seed=5).state_dict()
    path = _save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pt")
    resolved = external.resolve(PretrainedEntry("mine", path, "unet2d"), profile=UNIT, backbone=None, storage_root=str(tmp_path / "cache"))
    plan = build_plan(methods=[], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=UNIT, cache_dir=tmp_path / "cache",
                      pretrained=[resolved])
    job = next(j for j in plan.jobs if j.method == "mine")
    seen = []
    real = train.external_model

    def spy(*args, **kwargs):
        model, report = real(*args, **kwargs)
        seen.append(({k: v.clone() for k, v in model.state_dict().items()}, report))
        return model, report

    monkeypatch.setattr(train, "external_model", spy)
    logs: list[str] = []
    (result,) = train.run_job(job, train.Hooks(log=logs.append))
    initial, report = seen[0]
    assert report == job.external.transfer
    assert all(torch.equal(initial[k], state[k]) for k in state if not k.startswith("net.final_conv."))  # before fine-tuning
    assert any("mine: 80 tensors loaded" in line for line in logs)
    assert {r.metric for r in result.rows} >= {"dice_mean"} and not result.pretrain_reused
    torch.save({"changed": torch.zeros(1)}, path)
    with pytest.raises(BenchmarkInputError, match="changed since the run was planned"):
        train.run_job(job, train.Hooks(log=logs.append))


def test_a_mismatched_checkpoint_is_exit_code_2_naming_the_file_without_traceback(tmp_path, capsys):
    narrow = dataclasses.replace(SMOKE.backbone_size, unet_features=(8, 16, 32, 64, 64, 8))
    path = _save({f"module.{k}": v for k, v in _net("unet2d", size=narrow).state_dict().items()}, tmp_path / "other-width.pt")
    argv = ["--pretrained", f"mine={path}:backbone=unet2d", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%", "--no-dashboard",
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--pretrained mine={path}: does not fit backbone 'unet2d'" in err
    assert "net.conv_0.conv_0.adn.N.weight: checkpoint (8,), backbone (16,)" in err and "Traceback" not in err
    assert main(["--pretrained", f"mine={tmp_path / 'absent.pt'}", "--tasks", "brats"]) == 2
    assert "no file" in capsys.readouterr().err
    assert main(["--pretrained", f"csi={path}", "--tasks", "brats"]) == 2
    assert "already a method" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_session():
    yield
    from benchmark import ray_runner

    ray_runner.shutdown()


def test_a_ddp_state_dict_fine_tunes_as_row_name_through_the_python_api(tmp_path, ray_session):
    """The issue's must-hold, through ``benchmark.api.run`` (the command line's layer): a state dict saved with DDP's
    ``module.`` prefixes fine-tunes as row ``mine`` beside scratch on its backbone; its hash and transfer are recorded."""
    from benchmark.api import run

    path = _save({f"module.{k}": v for k, v in _net("unet2d", size=SMOKE.backbone_size).state_dict().items()}, tmp_path / "ddp.pt")
    result = run(pretrained={"mine": f"{path}:backbone=unet2d"}, tasks="brats", fractions=["100%"], profile="tiny", no_dashboard=True,
                 cache_dir=tmp_path / "cache", output=tmp_path / "out", run_name="api")
    table, folder = result
    assert result.exit_code == 0 and folder == tmp_path / "out" and isinstance(table, pd.DataFrame)
    cells = result.cells.set_index("method")
    assert set(cells.index) == {"mine", "scratch"} and set(cells.status) == {"done"} and set(cells.backbone) == {"unet2d"}
    assert cells.loc["mine", "pretrain_hash"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert (cells.loc["mine", "transfer_loaded"], cells.loc["mine", "transfer_missing"], cells.loc["mine", "transfer_unexpected"]) == (80, 0, 0)
    mine = table[(table.method == "mine") & (table.metric == "dice_mean")]
    assert len(mine) == 4 and mine.value.between(0, 1).all()  # the four brats test cases
    leaderboard = (folder / "leaderboard.md").read_text()
    assert "mine (unet2d)" in leaderboard and "scratch (unet2d)" in leaderboard
    assert json.loads((folder / "config.json").read_text())["pretrained"] == [{"name": "mine", "location": path, "backbone": "unet2d"}]
    assert not result.leaderboard.empty


def test_a_search_gives_an_external_row_only_the_fine_tuning_space_every_method_gets(tmp_path):
    """--tune: a --pretrained row has no pretext hyperparameter (nothing to tune, budget 0, as scratch); with
    --tune-finetune it gets the fine-tuning learning rate like every other row, and the tuned Job keeps its checkpoint."""
    import optuna

    from benchmark.plan import apply_params
    from benchmark.request import SearchOptions
    from benchmark.run import _define_by_run

    td = _task_data(tmp_path)
    path = _save(_net("unet2d", size=SMOKE.backbone_size).state_dict(), tmp_path / "plain.pt")
    resolved = external.resolve(PretrainedEntry("mine", path, "unet2d"), profile=UNIT, backbone=None, storage_root=str(tmp_path / "cache"))
    plan = build_plan(methods=[], task_data=[td], fractions=parse_fractions("100%"), seeds=[0], profile=UNIT, cache_dir=tmp_path / "cache",
                      pretrained=[resolved])
    job = next(j for j in plan.jobs if j.method == "mine")
    assert _define_by_run(job, SearchOptions(trials=2)) is None
    space = _define_by_run(job, SearchOptions(trials=2, finetune_lr=True))
    params = space(optuna.trial.FixedTrial({"finetune_lr": 1e-3}))["tuned"]
    assert set(params) == {"finetune_lr"}
    tuned = apply_params(job, params, search_budget=2)
    assert tuned.finetune_recipe.lr == 1e-3 and tuned.external == job.external and tuned.method_config is None
    assert tuned.cells[0].cell_id != job.cells[0].cell_id and Job.from_json(tuned.to_json()) == tuned
