"""Contract over every registered method on EVERY backbone it declares (like timm's tests over list_models()),
the Backbone interface, strict transfer, the no-method-imports-a-method rule, and the Registry itself.

The checks themselves live in ``benchmark.testing`` (a plugin author runs the same ones on their own class:
``check_method(cls)``); this file parametrises them over the registries, installed plugins included. Batches are built
the way the pipeline builds them from small synthetic volumes, at tiny network widths, so the whole file runs in about
a minute on two cores.
"""
from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmark import testing as contract
from benchmark.backbones import BACKBONES, build_backbone, list_backbones
from benchmark.backbones.transfer import TransferError, transfer_model
from benchmark.methods import METHODS, get_method, list_methods
from benchmark.registry import Registry, UnknownNameError
from benchmark.testing import TINY, roi_of as _roi

PRETRAINING = [name for name in list_methods() if get_method(name).pretrains]  # scratch, restart: no pretext task
PAIRS = [(m, b) for m in PRETRAINING for b in get_method(m).supported_backbones]
METHODS_DIR = Path(__file__).resolve().parents[1] / "benchmark" / "methods"


@pytest.fixture(scope="module")
def volumes():
    return contract.contract_volumes()


@pytest.fixture(scope="module", params=PAIRS, ids=[f"{m}-{b}" for m, b in PAIRS])
def trained(request, volumes) -> contract.MethodRun:
    """One forward + backward per (method, backbone) on a pipeline batch, shared by the checks below."""
    name, backbone_name = request.param
    return contract.run_method(get_method(name), backbone_name, volumes)


def test_pretraining_methods_registered():
    """The registry holds the papers' methods plus the scratch baseline."""
    assert {"csi", "dae", "csm", "scratch"} <= set(list_methods())
    assert list_methods() == sorted(list_methods())


def test_loss_is_finite_scalar(trained):
    """forward returns a dict whose 'loss' is a finite scalar with a graph."""
    contract.check_loss_is_finite_scalar(trained)


def test_every_reported_loss_term_is_non_zero_on_a_pipeline_batch(trained):
    """A term that is 0 on the batches a real run builds (e.g. a contrastive loss whose batch never holds a
    positive and a negative pair) silently turns the method into an ablation of itself."""
    contract.check_loss_terms_non_zero(trained)


def test_gradients_reach_every_head_parameter(trained):
    """Every trainable parameter outside method.backbone (heads, decoders, tokens) gets a non-zero gradient; frozen ones
    (requires_grad False: DINO's EMA teacher, a weight-norm gain fixed at 1) get none."""
    contract.check_gradients_reach_heads(trained)


def test_gradients_reach_the_backbone(trained):
    """The backbone is trained: its first trainable layer and most trainable tensors (of the encoder, for
    encoder-only methods) get a non-zero gradient; frozen parts none."""
    contract.check_gradients_reach_backbone(trained)


def test_same_generator_seed_same_loss(trained):
    """Same generator seed -> same loss (whatever the global RNG); another seed -> another loss."""
    contract.check_same_generator_same_loss(trained)


def test_transfer_round_trip_to_a_task_with_other_channels(trained):
    """transfer_model loads the pretrained backbone for a task with another channel count: every transferred
    weight arrives unchanged except the declared input / output layers, and the network runs on the task."""
    contract.check_transfer_round_trip(trained)


# ---- which backbones each method declares -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(list_methods()))
def test_every_backbone_is_supported_or_na_with_a_reason(name):
    """Each method's declared backbones run, the declared unsupported ones and any undeclared one are n/a with a reason naming them."""
    contract.check_backbone_declarations(get_method(name))


@pytest.mark.parametrize("name", METHODS.builtin_names())
def test_the_suites_own_methods_declare_every_builtin_backbone(name):
    """A backbone added to the suite is a decision for each of the suite's methods (supported, or a reason)."""
    contract.check_declares_every_builtin_backbone(get_method(name))


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
    """Multi-scale features shallow to deep, the bottleneck and its width / stride, tokens where there are any, and
    transfer parts that name real parameters."""
    contract.check_backbone_interface(BACKBONES.get(name))


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
    contract.check_method_description(get_method(name))


@pytest.mark.parametrize("name", PRETRAINING)
def test_make_config_rejects_unknown_hyperparameter(name):
    """An unknown hyperparameter is an error that names it and the valid ones."""
    contract.check_unknown_hyperparameter_rejected(get_method(name))


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
