"""Contract over every registered method (like timm's tests over list_models()), and the Registry itself."""
from __future__ import annotations

import pytest
import torch

from benchmark.backbones import SMOKE_SIZE, build_backbone, list_backbones
from benchmark.methods import METHODS, PretextTask, get_method, list_methods
from benchmark.profiles import SMOKE
from benchmark.registry import Registry, UnknownNameError
from tasks import get_task, list_tasks

IN_CHANNELS = 2  # two series: the smallest input every method (cross-series masking included) accepts
PRETRAINING = [name for name in list_methods() if get_method(name).pretrains]  # scratch, restart: no pretext task


def _batch(method_cls, cfg, roi, seed=0):
    g = torch.Generator().manual_seed(seed)
    spec = method_cls.data_spec(cfg)
    if spec.kind == "source_pool":
        return {"sources": torch.randn(2, spec.pool_size, IN_CHANNELS, *roi, generator=g)}
    if spec.kind == "modality_crops":  # one channel per sample; a positive and a negative pair for contrastive terms
        return {"image": torch.randn(3, 1, *roi, generator=g), "modality": torch.tensor([0, 0, 1])}
    assert spec.kind == "crops", spec.kind
    batch = {"image": torch.randn(2, IN_CHANNELS, *roi, generator=g)}
    if method_cls.label_aware:  # a lesion block in the middle of every crop
        label = torch.zeros(2, 1, *roi, dtype=torch.long)
        label[(slice(None), slice(None), *(slice(r // 4, r // 2) for r in roi))] = 1
        batch["label"] = label
    return batch


@pytest.fixture(scope="module", params=PRETRAINING)
def built(request):
    """(name, method, batch) for one method on its default backbone at the smoke size and crop."""
    name = request.param
    cls = get_method(name)
    cfg = cls.make_config()
    roi = SMOKE.rois[cls.default_backbone]
    cin, cout = cls.backbone_channels(cfg, in_channels=IN_CHANNELS)
    torch.manual_seed(0)
    backbone = build_backbone(cls.default_backbone, in_channels=cin, out_channels=cout, size=SMOKE_SIZE, roi=roi)
    method = cls(backbone, cfg, in_channels=IN_CHANNELS)
    return name, method, _batch(cls, cfg, roi)


@pytest.fixture(scope="module")
def trained(built):
    """One forward + backward per method (the expensive part, shared by the checks below)."""
    name, method, batch = built
    torch.manual_seed(123)  # global RNG state must not matter: all randomness comes from the generator
    out = method(batch, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    return name, method, batch, out


def test_pretraining_methods_registered():
    """The registry holds the three papers' methods plus the scratch baseline."""
    assert {"csi", "dae", "csm", "scratch"} <= set(list_methods())
    assert list_methods() == sorted(list_methods())


def test_loss_is_finite_scalar(trained):
    """forward returns a dict whose 'loss' is a finite scalar with a graph."""
    _, _, _, out = trained
    loss = out["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad


def test_gradients_reach_every_head_parameter(trained):
    """Every parameter outside method.backbone (heads, decoders, tokens) gets a non-zero gradient."""
    _, method, _, _ = trained
    backbone_ids = {id(p) for p in method.backbone.parameters()}
    heads = [(n, p) for n, p in method.named_parameters() if id(p) not in backbone_ids]
    missing = [n for n, p in heads if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient for head parameters {missing}"


def test_gradients_reach_the_backbone_input_layer(trained):
    """The backbone is trained too: its first trainable layer gets a non-zero gradient, frozen parts none."""
    _, method, _, _ = trained
    trainable = [p for p in method.backbone.parameters() if p.requires_grad]
    first = next(p for p in trainable if p.dim() >= 4)  # first trainable conv / patch embedding weight
    assert first.grad is not None and torch.any(first.grad != 0)
    with_grad = sum(p.grad is not None and bool(torch.any(p.grad != 0)) for p in trainable)
    assert with_grad > 0.5 * len(trainable)
    assert all(p.grad is None for p in method.backbone.parameters() if not p.requires_grad)  # e.g. a frozen encoder


def test_same_generator_seed_same_loss(trained):
    """Same generator seed -> same loss (whatever the global RNG); another seed -> another loss."""
    _, method, batch, out = trained
    with torch.no_grad():
        torch.manual_seed(999)
        again = method(batch, generator=torch.Generator().manual_seed(0))["loss"]
        other = method(batch, generator=torch.Generator().manual_seed(1))["loss"]
    torch.testing.assert_close(again, out["loss"].detach())
    assert other.item() != pytest.approx(again.item(), rel=1e-6)


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
