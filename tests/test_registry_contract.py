"""Contract over every registered method on EVERY backbone it declares (like timm's tests over list_models()),
the Backbone interface, strict transfer, the no-method-imports-a-method rule, and the Registry itself.

Batches are built the way the pipeline builds them (``benchmark.data.CropDataset`` /
``SourcePoolDataset`` with the method's ``data_spec``) from small synthetic volumes, at tiny
network widths, so the whole file runs in about a minute on two cores.
"""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.backbones import BACKBONES, Backbone, BackboneSize, build_backbone, list_backbones
from benchmark.backbones.transfer import TransferError, transfer_model
from benchmark.data import CropDataset, SourcePoolDataset
from benchmark.methods import METHODS, PretextTask, get_method, list_methods
from benchmark.registry import Registry, UnknownNameError
from tasks import get_task, list_tasks
from tasks.base import Volume

IN_CHANNELS = 2  # two series: the smallest input every method (cross-series masking included) accepts
PRETRAINING = [name for name in list_methods() if get_method(name).pretrains]  # scratch, restart: no pretext task
# Narrower than SMOKE_SIZE; Swin-UNETR needs feature_size a multiple of 12.
TINY = BackboneSize(unet_features=(8, 8, 16, 16, 16, 8), swin_feature_size=12, swin_window=4, vit_dim=24, vit_depth=1, vit_heads=2,
                    vit_patch=8, vgg_width=0.125, resnet_depth=18, resnet_width=0.125, unetr_feature_size=8)
# 2D: multiples of 32 (VGG / ResNet); 3D: multiples of 32 for Swin-UNETR, equal X and Y for rotations,
# and a bottleneck with more than one voxel (instance norm).
ROI = {2: (64, 64), 3: (32, 32, 64)}
PAIRS = [(m, b) for m in PRETRAINING for b in get_method(m).supported_backbones]
METHODS_DIR = Path(__file__).resolve().parents[1] / "benchmark" / "methods"


def _roi(backbone: str) -> tuple[int, ...]:
    return ROI[BACKBONES.get(backbone).spatial_dims]


@pytest.fixture(scope="module")
def volumes() -> list[Volume]:
    """Five cases [C, 64, 64, 64] with a lesion block (labels > 0), non-zero everywhere (source pools overlap)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(5):
        image = (rng.standard_normal((IN_CHANNELS, 64, 64, 64)) + 3.0).astype(np.float32)
        label = np.zeros((64, 64, 64), dtype=np.int64)
        label[16:40, 16:40, 8:56] = 1
        image[:, 16:40, 16:40, 8:56] += 2.0
        out.append(Volume(case_id=f"case{i}", image=image, label=label))
    return out


def _batch(method, roi, volumes, *, backbone: str) -> dict[str, torch.Tensor]:
    """The first pretraining batch exactly as ``benchmark.train.pretrain`` builds it: the pipeline's dataset for the
    method's data spec, the smoke profile's batch size for the backbone, no hand-picked samples (a hand-picked batch
    once hid DAE's contrastive term being 0 in every real run)."""
    from torch.utils.data import DataLoader

    from benchmark.profiles import SMOKE
    from benchmark.train import pretraining_dataset

    size = SMOKE.smoke_pretrain[backbone].batch_size
    data = pretraining_dataset(method, volumes, roi=roi, length=size, seed=0)
    return next(iter(DataLoader(data, batch_size=size, shuffle=False, drop_last=True)))


@pytest.fixture(scope="module", params=PAIRS, ids=[f"{m}-{b}" for m, b in PAIRS])
def trained(request, volumes):
    """(name, backbone, method, batch, out): one forward + backward per (method, backbone), shared by the checks below."""
    name, backbone_name = request.param
    cls = get_method(name)
    cfg = cls.make_config()
    roi = _roi(backbone_name)
    cin, cout = cls.backbone_channels(cfg, in_channels=IN_CHANNELS)
    torch.manual_seed(0)
    backbone = build_backbone(backbone_name, in_channels=cin, out_channels=cout, size=TINY, roi=roi)
    method = cls(backbone, cfg, in_channels=IN_CHANNELS)
    batch = _batch(method, roi, volumes, backbone=backbone_name)
    torch.manual_seed(123)  # global RNG state must not matter: all randomness comes from the generator
    out = method(batch, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    return name, backbone_name, method, batch, out


def test_pretraining_methods_registered():
    """The registry holds the papers' methods plus the scratch baseline."""
    assert {"csi", "dae", "csm", "scratch"} <= set(list_methods())
    assert list_methods() == sorted(list_methods())


def test_loss_is_finite_scalar(trained):
    """forward returns a dict whose 'loss' is a finite scalar with a graph."""
    loss = trained[4]["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad


def test_every_reported_loss_term_is_non_zero_on_a_pipeline_batch(trained):
    """A term that is 0 on the batches a real run builds (e.g. a contrastive loss whose batch never holds a
    positive and a negative pair) silently turns the method into an ablation of itself."""
    name, backbone_name, _, _, out = trained
    terms = {k: float(v) for k, v in out.items() if k != "loss" and torch.is_tensor(v) and v.dim() == 0}
    assert all(v != 0.0 for v in terms.values()), f"{name} on {backbone_name}: zero loss term(s) {terms}"


def test_gradients_reach_every_head_parameter(trained):
    """Every trainable parameter outside method.backbone (heads, decoders, tokens) gets a non-zero gradient; frozen ones
    (requires_grad False: DINO's EMA teacher, a weight-norm gain fixed at 1) get none."""
    method = trained[2]
    backbone_ids = {id(p) for p in method.backbone.parameters()}
    heads = [(n, p) for n, p in method.named_parameters() if id(p) not in backbone_ids and p.requires_grad]
    assert all(p.grad is None for n, p in method.named_parameters() if id(p) not in backbone_ids and not p.requires_grad)
    missing = [n for n, p in heads if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient for head parameters {missing}"


def test_gradients_reach_the_backbone(trained):
    """The backbone is trained: its first trainable layer and most trainable tensors (of the encoder, for
    encoder-only methods) get a non-zero gradient; frozen parts none."""
    method = trained[2]
    named = [(n, p) for n, p in method.backbone.named_parameters() if p.requires_grad]
    if not method.trains_whole_backbone and method.transfer == "encoder":  # the decoder is unused by definition
        named = [(n, p) for n, p in named if method.backbone.in_encoder(n)]
    first = next(p for _, p in named if p.dim() >= 4)  # first trainable conv / patch embedding weight
    assert first.grad is not None and torch.any(first.grad != 0)
    with_grad = sum(p.grad is not None and bool(torch.any(p.grad != 0)) for _, p in named)
    assert with_grad > 0.5 * len(named), [n for n, p in named if p.grad is None]
    assert all(p.grad is None for p in method.backbone.parameters() if not p.requires_grad)  # e.g. a frozen encoder


def test_same_generator_seed_same_loss(trained):
    """Same generator seed -> same loss (whatever the global RNG); another seed -> another loss."""
    _, _, method, batch, out = trained
    with torch.no_grad():
        torch.manual_seed(999)
        again = method(batch, generator=torch.Generator().manual_seed(0))["loss"]
        other = method(batch, generator=torch.Generator().manual_seed(1))["loss"]
    torch.testing.assert_close(again, out["loss"].detach())
    assert other.item() != pytest.approx(again.item(), rel=1e-6)


def test_transfer_round_trip_to_a_task_with_other_channels(trained):
    """transfer_model loads the pretrained backbone for a task with another channel count: every transferred
    weight arrives unchanged except the declared input / output layers, and the network runs on the task."""
    name, backbone_name, method, _, _ = trained
    cls = type(method)
    state = {k: v.detach().clone() for k, v in method.backbone.state_dict().items()}
    pretrain_channels = cls.backbone_channels(method.cfg, in_channels=IN_CHANNELS)
    task = SimpleNamespace(name="fake", channels=("a", "b", "c"), num_outputs=2)
    roi = _roi(backbone_name)
    model = transfer_model(cls, backbone_name, state=state, pretrain_channels=pretrain_channels, task=task, size=TINY, roi=roi)
    kept = 0
    for key, value in model.state_dict().items():
        part = model.part_of(key)
        if part in ("input", "output") or (cls.transfer == "encoder" and not model.in_encoder(key)):
            continue
        assert torch.equal(value, state[key]), f"{name}/{backbone_name}: {key} changed in transfer"
        kept += 1
    assert kept > 0
    with torch.no_grad():
        y = model.eval()(torch.randn(1, 3, *roi))
    assert y.shape == (1, 2, *roi)


# ---- which backbones each method declares -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(list_methods()))
def test_every_backbone_is_supported_or_na_with_a_reason(name):
    """Each method declares every registered backbone: supported, or unsupported with a reason naming it."""
    cls = get_method(name)
    brats = get_task("brats")
    assert not set(cls.supported_backbones) & set(cls.unsupported_backbones)
    assert set(cls.supported_backbones) | set(cls.unsupported_backbones) == set(list_backbones())
    for backbone in list_backbones():
        reason = cls.unsupported_reason(task=brats, backbone=backbone)
        if backbone in cls.supported_backbones:
            assert reason is None, reason
        else:
            assert isinstance(reason, str) and backbone in reason and cls.unsupported_backbones[backbone] in reason


@pytest.mark.parametrize("name, backbones", [
    ("dae", {"swin_unetr", "vit"}), ("mae", {"swin_unetr", "vit"}),
    ("inpainting", set(list_backbones())), ("pixel_shuffle", set(list_backbones())),
    ("super_resolution", set(list_backbones())), ("intensity_shift", set(list_backbones())),
    ("swin_unetr_ssl", {"swin_unetr", "vit"}), ("rotation", {"swin_unetr", "vit"}), ("contrastive", {"swin_unetr", "vit"}),
    ("simsiam", {"unet2d", "vgg_unet", "resnet_unet"}), ("swav", {"unet2d", "vgg_unet", "resnet_unet"}),
])
def test_objectives_not_tied_to_one_architecture_run_on_every_backbone_of_their_dimensionality(name, backbones):
    assert backbones <= set(get_method(name).supported_backbones)


# ---- the Backbone interface ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_backbones())
def test_backbone_interface(name):
    """Multi-scale features shallow to deep, the bottleneck and its width / stride, tokens where there are any,
    and transfer parts that name real parameters."""
    cls = BACKBONES.get(name)
    assert issubclass(cls, Backbone)
    roi = _roi(name)
    torch.manual_seed(0)
    net = build_backbone(name, in_channels=2, out_channels=3, size=TINY, roi=roi)
    x = torch.randn(2, 2, *roi)
    with torch.no_grad():
        feats = net.encoder_features(x)
        z = net.bottleneck(x)
        y, z_pass = net.forward_with_bottleneck(x)
    assert len(feats) >= 1 and all(f.dim() == 2 + cls.spatial_dims for f in feats)
    assert [f.shape[-1] for f in feats] == sorted((f.shape[-1] for f in feats), reverse=True)  # shallow to deep
    assert z.shape == (2, net.bottleneck_channels, *(r // net.bottleneck_stride for r in roi))
    torch.testing.assert_close(z, feats[-1])
    torch.testing.assert_close(z_pass, z)
    assert y.shape == (2, 3, *roi)
    if net.patch_embed is None:
        assert net.patch_size is None and net.token_grid(roi) is None
    else:
        assert net.token_grid(roi) == tuple(r // p for r, p in zip(roi, net.patch_size))
    names = list(net.state_dict())
    for prefixes in (cls.encoder_prefixes, cls.input_prefixes, cls.output_prefixes):
        assert all(any(n.startswith(p) for n in names) for p in prefixes), prefixes
    parts = {net.part_of(n) for n in names}
    assert parts == {"input", "encoder", "decoder", "output"}
    net.replace_input(5)
    net.replace_output(4)
    with torch.no_grad():
        assert net(torch.randn(1, 5, *roi)).shape == (1, 4, *roi)


# ---- strict transfer -------------------------------------------------------------------------------------
def test_transfer_error_names_the_parameter_and_both_shapes():
    """A transferred weight of another shape is an error naming it, never silently dropped."""
    cls = get_method("swin_unetr_ssl")  # encoder-only transfer
    roi = _roi("swin_unetr")
    torch.manual_seed(0)
    state = build_backbone("swin_unetr", in_channels=2, out_channels=2, size=TINY, roi=roi).state_dict()
    key = next(k for k in state if k.startswith("net.swinViT.layers1") and k.endswith("weight") and state[k].dim() == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    task = SimpleNamespace(name="fake", channels=("a", "b"), num_outputs=2)
    with pytest.raises(TransferError, match=key.replace(".", r"\.")) as info:
        transfer_model(cls, "swin_unetr", state=state, pretrain_channels=(2, 2), task=task, size=TINY, roi=roi)
    assert str(tuple(state[key].shape)) in str(info.value)
    state.pop(key)
    with pytest.raises(TransferError, match="no " + repr(key).replace(".", r"\.")):
        transfer_model(cls, "swin_unetr", state=state, pretrain_channels=(2, 2), task=task, size=TINY, roi=roi)


def test_encoder_only_transfer_replaces_the_vit_series_embedding_by_declaration():
    """ViT pretrained on 2 series, fine-tuned on 3: the series embedding (an input layer) is widened, the
    patch embedding and the blocks transfer; before strict transfer the embedding was silently dropped."""
    cls = get_method("mae3d")
    roi = _roi("vit")
    torch.manual_seed(0)
    pretrained = build_backbone("vit", in_channels=2, out_channels=2, size=TINY, roi=roi)
    task = SimpleNamespace(name="fake", channels=("a", "b", "c"), num_outputs=2)
    model = transfer_model(cls, "vit", state=pretrained.state_dict(), pretrain_channels=(2, 2), task=task, size=TINY, roi=roi)
    assert model.encoder.series_embed.shape[1] == 3
    torch.testing.assert_close(model.encoder.series_embed[:, :2], pretrained.encoder.series_embed)
    torch.testing.assert_close(model.encoder.patch_embed.weight, pretrained.encoder.patch_embed.weight)


@pytest.mark.parametrize("backbone", ["swin_unetr", "vit"])
def test_dae_single_channel_input_is_inflated(backbone):
    """DAE pretrains on one channel; fine-tuning inflates the input layers (replace_input(c, inflate=True))."""
    cls = get_method("dae")
    roi = _roi(backbone)
    torch.manual_seed(0)
    pretrained = build_backbone(backbone, in_channels=1, out_channels=1, size=TINY, roi=roi)
    task = SimpleNamespace(name="fake", channels=("a", "b", "c", "d"), num_outputs=3)
    model = transfer_model(cls, backbone, state=pretrained.state_dict(), pretrain_channels=(1, 1), task=task, size=TINY, roi=roi)
    x = torch.randn(1, 1, *roi)
    with torch.no_grad():
        if backbone == "vit":  # every series gets the pretrained series embedding
            assert torch.equal(model.encoder.series_embed, pretrained.encoder.series_embed.repeat(1, 4, 1, 1))
            torch.testing.assert_close(model.skip(x.repeat(1, 4, 1, 1, 1)), pretrained.skip(x), atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(model.patch_embed(x.repeat(1, 4, 1, 1, 1)), pretrained.patch_embed(x), atol=1e-5, rtol=1e-5)
        assert model(torch.randn(1, 4, *roi)).shape == (1, 3, *roi)


# ---- layering: no method imports another method -------------------------------------------------------------
def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def _method_modules() -> set[str]:
    return {f"benchmark.methods.{p.stem}" for p in METHODS_DIR.glob("*.py") if p.stem not in ("__init__", "base")}


@pytest.mark.parametrize("path", sorted(p.name for p in METHODS_DIR.glob("*.py") if p.stem not in ("__init__", "base")))
def test_no_method_module_imports_another_method_module(path):
    """A method file imports blocks, backbones and ``benchmark.methods.base``, never another method file."""
    own = f"benchmark.methods.{Path(path).stem}"
    others = sorted((_imported_modules(METHODS_DIR / path) & _method_modules()) - {own})
    assert not others, f"benchmark/methods/{path} imports method module(s) {others}; move the shared piece to benchmark/blocks/"


def test_every_methods_file_registers_a_method():
    """benchmark/methods/ holds only method files (plus base and __init__): shared pieces live in benchmark/blocks/."""
    for path in METHODS_DIR.glob("*.py"):
        if path.stem not in ("__init__", "base"):
            assert "@register_method(" in path.read_text(), f"{path.name} registers no method; move it to benchmark/blocks/"


def test_blocks_and_augmentations_import_no_method():
    """The building blocks and the fine-tuning augmentations import no method module."""
    root = METHODS_DIR.parent
    files = [root / "augmentations.py", *sorted((root / "blocks").rglob("*.py"))]
    for path in files:
        bad = sorted(m for m in _imported_modules(path) if m.startswith("benchmark.methods"))
        assert not bad, f"{path.relative_to(root.parent)} imports {bad}"


# ---- class description ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(list_methods()))
def test_method_class_description(name):
    """Every method declares config, backbone, recipe and paper, and its default config builds."""
    cls = get_method(name)
    assert issubclass(cls, PretextTask)
    assert cls.registry_name == name
    assert cls.default_backbone in cls.supported_backbones
    assert set(cls.supported_backbones) <= set(list_backbones())
    assert cls.transfer in ("all", "encoder")
    assert cls.paper_recipe.batch_size >= 1
    assert cls.__doc__ and cls.__doc__.strip()
    assert dataclasses.is_dataclass(cls.Config)
    cls.make_config()
    for task in list_tasks():
        reason = cls.unsupported_reason(task=get_task(task), backbone=cls.default_backbone)
        assert reason is None or isinstance(reason, str)


@pytest.mark.parametrize("name", PRETRAINING)
def test_make_config_rejects_unknown_hyperparameter(name):
    """An unknown hyperparameter is an error that names it and the valid ones."""
    with pytest.raises(ValueError, match="no_such_knob") as info:
        get_method(name).make_config({"no_such_knob": 1})
    for field in get_method(name).make_config().__dataclass_fields__:
        assert field in str(info.value)


# ---- the Registry -------------------------------------------------------------------------------
def test_registry_duplicate_name_raises():
    """Registering a second object under an existing name is an error naming the duplicate."""
    reg: Registry = Registry("widget")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(ValueError, match="duplicate widget name 'a'"):
        reg.register("a")(type("B", (), {}))
    assert reg.get("a") is A and A.registry_name == "a"


def test_registry_unknown_name_lists_choices():
    """get() of an unknown name raises an error (a KeyError) listing every valid name."""
    reg: Registry = Registry("widget")
    for n in ("beta", "alpha"):
        reg.register(n)(type(n, (), {}))
    with pytest.raises(UnknownNameError) as info:
        reg.get("gamma")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "unknown widget 'gamma'; expected one of: alpha, beta"
    assert reg.names() == ["alpha", "beta"] and "alpha" in reg and "gamma" not in reg


def test_method_registry_rejects_duplicate_and_lists_methods():
    """The real method registry refuses a second 'csi' and lists the methods on an unknown name."""
    before = list_methods()
    with pytest.raises(ValueError, match="duplicate"):
        METHODS.register("csi")(type("Fake", (), {}))
    assert list_methods() == before and get_method("csi").__name__ != "Fake"
    with pytest.raises(UnknownNameError) as info:
        get_method("mae_mask30")
    for name in before:
        assert name in str(info.value)
