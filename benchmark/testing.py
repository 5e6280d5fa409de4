"""The registry contracts as functions: what the suite checks of every method, backbone and task it runs, importable by a
plugin author (``benchmark.plugins``) to hold their own class to the same contract::

    from benchmark.testing import check_method

    def test_denoise_ae_keeps_the_contract():
        check_method(DenoisingAutoencoder)  # on every backbone it declares: 2D and 3D where declared

``check_method``, ``check_backbone`` and ``check_task`` run every check of one class and raise one ``AssertionError``
listing every failure; the single ``check_*`` functions are what ``tests/test_registry_contract.py`` and
``tests/test_task_registry_contract.py`` parametrise over the registries (like timm's tests over ``list_models()``).
Batches are built the way the pipeline builds them (``benchmark.train.pretraining_dataset`` with the method's
``data_spec``, the smoke profile's batch size) from small synthetic volumes, at tiny network widths (``TINY``).
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark.backbones import BACKBONES, Backbone, BackboneSize, build_backbone, list_backbones
from benchmark.backbones.transfer import transfer_model
from benchmark.kinds import KINDS, kind_of
from benchmark.methods import PretextTask
from benchmark.profiles import get_profile
from benchmark.records import EMPTY_PRED_PREFIX, MetricRow
from benchmark.train import pretraining_dataset
from tasks import Task, get_task, list_tasks
from tasks.base import Volume

IN_CHANNELS = 2  # two series: the smallest input every method (cross-series masking included) accepts
# Narrower than SMOKE_SIZE; Swin-UNETR needs feature_size a multiple of 12.
TINY = BackboneSize(unet_features=(8, 8, 16, 16, 16, 8), swin_feature_size=12, swin_window=4, vit_dim=24, vit_depth=1, vit_heads=2,
                    vit_patch=8, vgg_width=0.125, resnet_depth=18, resnet_width=0.125, unetr_feature_size=8)
# 2D: multiples of 32 (VGG / ResNet); 3D: multiples of 32 for Swin-UNETR, equal X and Y for rotations,
# and a bottleneck with more than one voxel (instance norm).
ROI = {2: (64, 64), 3: (32, 32, 64)}
# The task contract's synthetic sets: five cases (HIE's five lesion loads) of 24 x 24 x 12.
TASK_CASES, TASK_SHAPE = 5, (24, 24, 12)
SCOPES = {"case", "set"}
# Case-level rows that are not leaderboard metrics: classification's predictions, segmentation's empty-prediction flags.
PREDICTION_ROWS = ("prob_", "correct", "target", EMPTY_PRED_PREFIX)


def roi_of(backbone: str) -> tuple[int, ...]:
    return ROI[BACKBONES.get(backbone).spatial_dims]


def _name(cls) -> str:
    """The class's registry name (set by registration; an unregistered plugin class is checked under its class name)."""
    if "registry_name" not in vars(cls):  # its own, not a registered parent's
        cls.registry_name = cls.__name__  # what registration sets; make_config's messages read it
    return cls.registry_name


# ---- methods ----------------------------------------------------------------------------------------------------
def contract_volumes(n: int = 5) -> list[Volume]:
    """``n`` cases [IN_CHANNELS, 64, 64, 64] with a lesion block (labels > 0), non-zero everywhere (source pools overlap)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = (rng.standard_normal((IN_CHANNELS, 64, 64, 64)) + 3.0).astype(np.float32)
        label = np.zeros((64, 64, 64), dtype=np.int64)
        label[16:40, 16:40, 8:56] = 1
        image[:, 16:40, 16:40, 8:56] += 2.0
        out.append(Volume(case_id=f"case{i}", image=image, label=label))
    return out


def pipeline_batch(method: PretextTask, roi, volumes: list[Volume], *, backbone: str) -> dict[str, torch.Tensor]:
    """The first pretraining batch exactly as ``benchmark.train.pretrain`` builds it: the pipeline's dataset for the
    method's data spec, the smoke profile's batch size for the backbone, no hand-picked samples (a hand-picked batch
    once hid DAE's contrastive term being 0 in every real run)."""
    size = get_profile("smoke").smoke_pretrain[backbone].batch_size
    data = pretraining_dataset(method, volumes, roi=roi, length=size, seed=0)
    return next(iter(DataLoader(data, batch_size=size, shuffle=False, drop_last=True)))


@dataclass
class MethodRun:
    """One forward + backward of a method on a backbone, on a pipeline batch (what the method checks read)."""

    name: str
    backbone: str
    method: PretextTask
    batch: dict[str, torch.Tensor]
    out: dict[str, torch.Tensor]


def run_method(cls: type[PretextTask], backbone: str, volumes: list[Volume] | None = None) -> MethodRun:
    """``cls`` with its default Config on ``backbone`` (tiny widths): one forward and backward on a pipeline batch."""
    name = _name(cls)
    cfg = cls.make_config()
    roi = roi_of(backbone)
    cin, cout = cls.backbone_channels(cfg, in_channels=IN_CHANNELS)
    torch.manual_seed(0)
    network = build_backbone(backbone, in_channels=cin, out_channels=cout, size=TINY, roi=roi)
    method = cls(network, cfg, in_channels=IN_CHANNELS)
    batch = pipeline_batch(method, roi, volumes if volumes is not None else contract_volumes(), backbone=backbone)
    torch.manual_seed(123)  # the global RNG state must not matter: all randomness comes from the generator
    out = method(batch, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    return MethodRun(name=name, backbone=backbone, method=method, batch=batch, out=out)


def check_loss_is_finite_scalar(run: MethodRun) -> None:
    """forward returns a dict whose 'loss' is a finite scalar with a graph."""
    loss = run.out["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad, f"{run.name} on {run.backbone}: loss {loss}"


def check_loss_terms_non_zero(run: MethodRun) -> None:
    """Every reported loss term is non-zero on a pipeline batch: a term that is 0 on the batches a real run builds (e.g.
    a contrastive loss whose batch never holds a positive and a negative pair) turns the method into an ablation of itself."""
    terms = {k: float(v) for k, v in run.out.items() if k != "loss" and torch.is_tensor(v) and v.dim() == 0}
    assert all(v != 0.0 for v in terms.values()), f"{run.name} on {run.backbone}: zero loss term(s) {terms}"


def check_gradients_reach_heads(run: MethodRun) -> None:
    """Every trainable parameter outside method.backbone (heads, decoders, tokens) gets a non-zero gradient; frozen
    ones (requires_grad False: DINO's EMA teacher, a weight-norm gain fixed at 1) get none."""
    backbone_ids = {id(p) for p in run.method.backbone.parameters()}
    outside = [(n, p) for n, p in run.method.named_parameters() if id(p) not in backbone_ids]
    frozen_with_grad = [n for n, p in outside if not p.requires_grad and p.grad is not None]
    assert not frozen_with_grad, f"{run.name} on {run.backbone}: frozen parameters got a gradient {frozen_with_grad}"
    heads = [(n, p) for n, p in outside if p.requires_grad]
    missing = [n for n, p in heads if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"{run.name} on {run.backbone}: no gradient for head parameters {missing}"


def check_gradients_reach_backbone(run: MethodRun) -> None:
    """The backbone is trained: its first trainable layer and most trainable tensors (of the encoder, for encoder-only
    methods that leave the decoder unused) get a non-zero gradient; frozen parts none."""
    method = run.method
    named = [(n, p) for n, p in method.backbone.named_parameters() if p.requires_grad]
    if not method.trains_whole_backbone and method.transfer == "encoder":  # the decoder is unused by definition
        named = [(n, p) for n, p in named if method.backbone.in_encoder(n)]
    first = next(p for _, p in named if p.dim() >= 4)  # first trainable conv / patch embedding weight
    assert first.grad is not None and torch.any(first.grad != 0), f"{run.name} on {run.backbone}: no gradient reaches the first layer"
    with_grad = sum(p.grad is not None and bool(torch.any(p.grad != 0)) for _, p in named)
    assert with_grad > 0.5 * len(named), f"{run.name} on {run.backbone}: no gradient for {[n for n, p in named if p.grad is None]}"
    frozen = [p for p in method.backbone.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen), f"{run.name} on {run.backbone}: a frozen backbone parameter got a gradient"


def check_same_generator_same_loss(run: MethodRun) -> None:
    """Same generator seed -> same loss (whatever the global RNG); another seed -> another loss."""
    with torch.no_grad():
        torch.manual_seed(999)
        again = run.method(run.batch, generator=torch.Generator().manual_seed(0))["loss"]
        other = run.method(run.batch, generator=torch.Generator().manual_seed(1))["loss"]
    torch.testing.assert_close(again, run.out["loss"].detach(), msg=lambda m: f"{run.name} on {run.backbone}: same generator, other loss: {m}")
    assert not np.isclose(other.item(), again.item(), rtol=1e-6, atol=0.0), \
        f"{run.name} on {run.backbone}: another generator seed gives the same loss {again.item()} (is the corruption random?)"


def check_transfer_round_trip(run: MethodRun) -> None:
    """transfer_model loads the pretrained backbone for a task with another channel count: every transferred weight
    arrives unchanged except the declared input / output layers, and the network runs on the task."""
    cls = type(run.method)
    state = {k: v.detach().clone() for k, v in run.method.backbone.state_dict().items()}
    pretrain_channels = cls.backbone_channels(run.method.cfg, in_channels=IN_CHANNELS)
    task = SimpleNamespace(name="fake", channels=("a", "b", "c"), num_outputs=2)
    roi = roi_of(run.backbone)
    model = transfer_model(cls, run.backbone, state=state, pretrain_channels=pretrain_channels, task=task, size=TINY, roi=roi)
    kept = 0
    for key, value in model.state_dict().items():
        part = model.part_of(key)
        if part in ("input", "output") or (cls.transfer == "encoder" and not model.in_encoder(key)):
            continue
        assert torch.equal(value, state[key]), f"{run.name}/{run.backbone}: {key} changed in transfer"
        kept += 1
    assert kept > 0, f"{run.name}/{run.backbone}: nothing transferred"
    with torch.no_grad():
        y = model.eval()(torch.randn(1, 3, *roi))
    assert y.shape == (1, 2, *roi), f"{run.name}/{run.backbone}: the transferred network gives {tuple(y.shape)}"


RUN_CHECKS: tuple[Callable[[MethodRun], None], ...] = (
    check_loss_is_finite_scalar, check_loss_terms_non_zero, check_gradients_reach_heads, check_gradients_reach_backbone,
    check_same_generator_same_loss, check_transfer_round_trip,
)


def check_backbone_declarations(cls: type[PretextTask]) -> None:
    """The method's backbone declarations are consistent and the run layer reads them as declared: every supported
    backbone runs (no n/a reason), every declared unsupported one is n/a with its reason naming it, and every backbone
    the method does not declare (one the suite or a plugin added after the method was written) is n/a with a reason
    naming it (``PretextTask.unsupported_reason``), unless the method's own ``unsupported_reason`` runs it anywhere.
    A backbone added to the suite therefore never breaks a plugin's contract; the suite's own methods are held to
    declaring every built-in backbone by ``check_declares_every_builtin_backbone``."""
    name = _name(cls)
    brats = get_task("brats")
    assert not set(cls.supported_backbones) & set(cls.unsupported_backbones), f"{name}: a backbone both supported and not"
    declared = set(cls.supported_backbones) | set(cls.unsupported_backbones)
    assert declared <= set(list_backbones()), f"{name}: declares backbones no registry has: {sorted(declared - set(list_backbones()))}"
    for backbone in list_backbones():
        reason = cls.unsupported_reason(task=brats, backbone=backbone)
        if backbone in cls.supported_backbones:
            assert reason is None, reason
        elif backbone in cls.unsupported_backbones:
            assert isinstance(reason, str) and backbone in reason and cls.unsupported_backbones[backbone] in reason, reason
        else:  # undeclared: a clean n/a cell, never a crash
            assert reason is None or (isinstance(reason, str) and backbone in reason), reason


def check_declares_every_builtin_backbone(cls: type[PretextTask]) -> None:
    """The suite's own methods declare every built-in backbone, supported or unsupported with a reason: whoever adds a
    backbone to the suite decides for each of its methods (a plugin's method is not held to this)."""
    declared = set(cls.supported_backbones) | set(cls.unsupported_backbones)
    missing = sorted(set(BACKBONES.builtin_names()) - declared)
    assert not missing, f"{_name(cls)}: declares neither support nor a reason for the suite's backbone(s) {missing}"


def check_method_description(cls: type[PretextTask]) -> None:
    """The method declares config, backbone, recipe and paper, and its default config builds."""
    name = _name(cls)
    assert issubclass(cls, PretextTask), f"{name} is not a PretextTask"
    assert cls.default_backbone in cls.supported_backbones, f"{name}: default_backbone {cls.default_backbone!r} is not supported"
    assert set(cls.supported_backbones) <= set(list_backbones()), f"{name}: unknown backbones {set(cls.supported_backbones) - set(list_backbones())}"
    assert cls.transfer in ("all", "encoder"), f"{name}: transfer {cls.transfer!r}; expected 'all' or 'encoder'"
    assert cls.paper_recipe.batch_size >= 1, f"{name}: paper_recipe batch size {cls.paper_recipe.batch_size}"
    assert cls.__doc__ and cls.__doc__.strip(), f"{name}: no docstring (its one line is the --list description)"
    assert dataclasses.is_dataclass(cls.Config), f"{name}.Config is not a dataclass"
    cls.make_config()
    for task in list_tasks():
        reason = cls.unsupported_reason(task=get_task(task), backbone=cls.default_backbone)
        assert reason is None or isinstance(reason, str), reason


def check_unknown_hyperparameter_rejected(cls: type[PretextTask]) -> None:
    """An unknown hyperparameter is an error that names it and the valid ones."""
    name = _name(cls)
    try:
        cls.make_config({"no_such_knob": 1})
    except ValueError as error:
        message = str(error)
    else:
        raise AssertionError(f"{name}.make_config accepted an unknown hyperparameter")
    assert "no_such_knob" in message, message
    for field in dataclasses.fields(cls.Config):
        assert field.name in message, f"{name}: the error does not list {field.name}: {message}"


def check_method(cls: type[PretextTask], *, backbones: tuple[str, ...] | None = None) -> None:
    """Every method check on ``backbones`` (default: every backbone the method supports: 2D and 3D where declared);
    one AssertionError lists every failure."""
    failures = _collect([check_method_description, check_backbone_declarations]
                        + ([check_unknown_hyperparameter_rejected] if cls.pretrains else []), cls)
    if cls.pretrains:
        volumes = contract_volumes()
        for backbone in backbones or cls.supported_backbones:
            try:
                run = run_method(cls, backbone, volumes)
            except Exception as error:  # noqa: BLE001 - reported with the others
                failures.append(f"forward/backward on {backbone}: {type(error).__name__}: {error}")
                continue
            failures += [f"on {backbone}: {f}" for f in _collect(RUN_CHECKS, run)]
    if failures:
        raise AssertionError(f"method {_name(cls)} breaks the contract:\n  " + "\n  ".join(failures))


def _collect(checks, subject) -> list[str]:
    out = []
    for check in checks:
        try:
            check(subject)
        except Exception as error:  # noqa: BLE001 - AssertionError and what the class itself raised alike
            out.append(f"{check.__name__}: {type(error).__name__}: {error}")
    return out


# ---- backbones --------------------------------------------------------------------------------------------------
def check_backbone_interface(cls: type[Backbone]) -> None:
    """Multi-scale features shallow to deep, the bottleneck and its width / stride, tokens where there are any, transfer
    parts that name real parameters, and swappable input / output layers."""
    assert issubclass(cls, Backbone), f"{cls!r} is not a Backbone"
    roi = ROI[cls.spatial_dims]
    torch.manual_seed(0)
    net = cls(in_channels=2, out_channels=3, size=TINY, roi=roi)
    x = torch.randn(2, 2, *roi)
    with torch.no_grad():
        feats = net.encoder_features(x)
        z = net.bottleneck(x)
        y, z_pass = net.forward_with_bottleneck(x)
    assert len(feats) >= 1 and all(f.dim() == 2 + cls.spatial_dims for f in feats), [tuple(f.shape) for f in feats]
    assert [f.shape[-1] for f in feats] == sorted((f.shape[-1] for f in feats), reverse=True), "features not shallow to deep"
    assert z.shape == (2, net.bottleneck_channels, *(r // net.bottleneck_stride for r in roi)), tuple(z.shape)
    torch.testing.assert_close(z, feats[-1])
    torch.testing.assert_close(z_pass, z)
    assert y.shape == (2, 3, *roi), tuple(y.shape)
    if net.patch_embed is None:
        assert net.patch_size is None and net.token_grid(roi) is None
    else:
        assert net.token_grid(roi) == tuple(r // p for r, p in zip(roi, net.patch_size))
    names = list(net.state_dict())
    for prefixes in (cls.encoder_prefixes, cls.input_prefixes, cls.output_prefixes):
        assert all(any(n.startswith(p) for n in names) for p in prefixes), f"a prefix of {prefixes} names no parameter"
    parts = {net.part_of(n) for n in names}
    assert parts == {"input", "encoder", "decoder", "output"}, parts
    net.replace_input(5)
    net.replace_output(4)
    with torch.no_grad():
        assert net(torch.randn(1, 5, *roi)).shape == (1, 4, *roi)


def check_backbone(cls: type[Backbone]) -> None:
    """Every backbone check (one AssertionError lists every failure)."""
    failures = _collect([check_backbone_interface], cls)
    if failures:
        raise AssertionError(f"backbone {cls.__name__} breaks the contract:\n  " + "\n  ".join(failures))


# ---- tasks ------------------------------------------------------------------------------------------------------
def written_task(task: Task, root: Path) -> tuple[Task, list, list[Volume]]:
    """(task, cases, volumes): the task's synthetic set written under ``root``, found, checked and loaded by its own reader."""
    task.write_synthetic(root, n_cases=TASK_CASES, shape=TASK_SHAPE, seed=0)
    cases = task.find_cases(root)
    task.check_cases(cases, root=root)
    return task, cases, [task.load(case) for case in cases]


def check_task_identity(written) -> None:
    task, _, _ = written
    assert task.kind in KINDS, f"{task.name}: kind {task.kind!r}; expected one of {KINDS.names()}"
    assert kind_of(task).name == task.kind
    assert get_task(task.ref).name == task.name
    assert len(task.channels) >= 1
    assert len(task.modalities) == len(task.channels)
    assert all(isinstance(m, str) and m for m in task.modalities)


def check_synthetic_set_read_back(written) -> None:
    task, cases, volumes = written
    assert len(cases) == TASK_CASES, f"{task.name}: {len(cases)} cases read back of {TASK_CASES} written"
    assert len({c.case_id for c in cases}) == len(cases)
    for v in volumes:
        assert isinstance(v, Volume)
        assert v.image.dtype == np.float32
        assert v.image.ndim == 4 and v.image.shape[0] == len(task.channels)
        assert np.isfinite(v.image).all()
        assert len(v.spacing) == 3 and all(s > 0 and np.isfinite(s) for s in v.spacing)
        problem = kind_of(task).target_problem(task, v)  # a label map, a class, ...: the kind's to say
        assert problem is None, problem


def check_metric_info_complete(written) -> None:
    task, _, _ = written
    info = kind_of(task).metric_info(task)
    names = [m.name for m in info]
    assert names, "a task records at least one metric"
    assert len(set(names)) == len(names), f"duplicate metric names {names}"
    assert sum(m.primary for m in info) == 1, f"exactly one primary metric expected: {info}"
    assert all(m.scope in SCOPES for m in info)
    assert all(isinstance(m.higher_is_better, bool) for m in info)


def written_metrics(task: Task, volumes: list[Volume]) -> tuple[list[MetricRow], list[MetricRow]]:
    """(leaderboard rows, case-level prediction rows) the task's kind writes on ``volumes`` (``TaskKind.contract_metric_rows``)."""
    return kind_of(task).contract_metric_rows(task, volumes)


def check_metric_info_lists_every_written_metric(written) -> None:
    task, _, volumes = written
    info = {m.name: m for m in kind_of(task).metric_info(task)}
    rows, predictions = written_metrics(task, volumes)
    metrics = {r.metric for r in rows}
    assert metrics, f"{task.name}: its kind writes no metric"
    assert metrics <= set(info), f"{task.name}: written but not in metric_info: {sorted(metrics - set(info))}"
    assert any(info[name].primary for name in metrics), f"{task.name}: the primary metric is never written"
    wrong_scope = sorted({r.metric for r in rows if r.scope != info[r.metric].scope})
    assert not wrong_scope, f"{task.name}: written per case / per set against metric_info's scope: {wrong_scope}"
    # Case-level prediction rows (classification's probabilities, segmentation's empty-prediction flags) are kept for
    # re-analysis and are intentionally not leaderboard metrics.
    names = {r.metric for r in predictions}
    assert not names & set(info), f"{task.name}: prediction rows listed as metrics: {sorted(names & set(info))}"
    assert all(name.startswith(PREDICTION_ROWS) for name in names), f"{task.name}: prediction rows {sorted(names)}; expected prefixes {PREDICTION_ROWS}"
    assert all(r.case_id is not None for r in predictions), f"{task.name}: a prediction row without its case"


TASK_CHECKS = (check_task_identity, check_synthetic_set_read_back, check_metric_info_complete, check_metric_info_lists_every_written_metric)


def check_task(task: Task | type[Task] | str, *, root: Path | None = None) -> None:
    """Every task check: its synthetic set (written under ``root``, default a temporary folder) is found, checked and
    loaded by its own reader as documented, and its kind lists every metric it writes (one AssertionError lists every
    failure). ``task``: a task, its class, or its registered name / reference."""
    task = get_task(task) if isinstance(task, str) else task() if isinstance(task, type) else task
    with tempfile.TemporaryDirectory(prefix="medssl-task-contract-") as tmp:
        try:
            written = written_task(task, Path(root or tmp) / "data")
        except Exception as error:  # noqa: BLE001
            raise AssertionError(f"task {task.name}: its synthetic set does not write and read back: {type(error).__name__}: {error}") from error
        failures = _collect(TASK_CHECKS, written)
    if failures:
        raise AssertionError(f"task {task.name} breaks the contract:\n  " + "\n  ".join(failures))

