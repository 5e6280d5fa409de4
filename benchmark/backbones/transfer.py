"""Strict transfer of pretrained backbone weights to the fine-tuning network.

Every pretrained weight of a part the method transfers must load with the same name and shape;
anything else is an error naming the parameter and both shapes. What does not transfer is
declared, never discovered by ``strict=False``:

* ``transfer = "encoder"`` methods transfer the backbone's encoder (``encoder_prefixes``); the
  decoder and the output layer start from their initialisation;
* ``transfer = "all"`` methods transfer the whole network; the output layer is replaced
  (``replace_output``) for the task's outputs;
* the input layers (``input_prefixes``) are replaced (``replace_input``) when the task has another
  channel count than pretraining or the method asks for it (``replace_input_on_transfer``, SI
  paper 5.4); a network pretrained on ONE channel (DAE's single-modality crops) is inflated instead.

A checkpoint made elsewhere (``--pretrained NAME=PATH``: a lab's DDP run, MONAI's Swin-UNETR SSL weights, a file of
this suite's cache) carries no such declaration: ``read_external`` finds its state dict and maps its keys onto the
backbone's names, and ``external_model`` loads every tensor that fits by name and shape and reports what did
(``TransferReport``: loaded, missing, unexpected, replaced); a tensor of the same name and another shape, or no
tensor that fits at all, is a ``TransferError`` naming the keys and both shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmark.backbones.registry import BACKBONES, BackboneSize, build_backbone


class TransferError(ValueError):
    """A pretrained weight does not fit the fine-tuning network (names the parameter and both shapes)."""


def _check_and_load(model: nn.Module, state: dict[str, torch.Tensor], keep, *, what: str) -> None:
    """Load ``state``'s entries with ``keep(name)`` into ``model``: names and shapes must match exactly."""
    own = model.state_dict()
    wanted = {k for k in own if keep(k)}
    given = {k for k in state if keep(k)}
    missing = sorted(wanted - given)
    if missing:
        raise TransferError(f"{what}: the pretrained weights have no {missing[0]!r} (shape {tuple(own[missing[0]].shape)})"
                            + (f" nor {len(missing) - 1} more transferred weight(s)" if len(missing) > 1 else ""))
    extra = sorted(given - wanted)
    if extra:
        raise TransferError(f"{what}: pretrained weight {extra[0]!r} (shape {tuple(state[extra[0]].shape)}) has no counterpart "
                            f"in the fine-tuning network")
    for k in sorted(wanted):
        if tuple(state[k].shape) != tuple(own[k].shape):
            raise TransferError(f"{what}: pretrained weight {k!r} has shape {tuple(state[k].shape)}, the fine-tuning network's "
                                f"{tuple(own[k].shape)}; declare the layer as replaced (input / output) or pretrain with matching channels")
    result = model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys


def transfer_model(method_cls, backbone_name: str, *, state: dict | None, pretrain_channels: tuple[int, int], task,
                   size: BackboneSize, roi) -> nn.Module:
    """The fine-tuning network: pretrained weights where the method transfers them, new task I/O layers.

    ``state`` None (scratch): a fresh network for the task. Otherwise the network is built with the
    pretraining input channels, the transferred part is loaded strictly, then the input layers are
    replaced / inflated (task channels differ, or ``replace_input_on_transfer``) and, for whole-network
    transfer, the output layer is replaced.
    """
    in_channels = len(task.channels)
    if state is None:
        return build_backbone(backbone_name, in_channels=in_channels, out_channels=task.num_outputs, size=size, roi=roi)
    what = f"transfer of {getattr(method_cls, 'registry_name', method_cls.__name__)} on {backbone_name}"
    if method_cls.transfer == "encoder":
        # Decoder and output layer are not transferred (declared): built for the task and left initialised.
        model = build_backbone(backbone_name, in_channels=pretrain_channels[0], out_channels=task.num_outputs, size=size, roi=roi)
        _check_and_load(model, state, model.in_encoder, what=what + " (encoder)")
    elif method_cls.transfer == "all":
        model = build_backbone(backbone_name, in_channels=pretrain_channels[0], out_channels=pretrain_channels[1], size=size, roi=roi)
        _check_and_load(model, state, lambda name: True, what=what)
    else:
        raise ValueError(f"{what}: unknown transfer {method_cls.transfer!r}; expected 'encoder' or 'all'")
    if method_cls.replace_input_on_transfer or pretrain_channels[0] != in_channels:
        # Pretrained on one channel (single-modality volumes, DAE): widen that layer rather than discard it.
        inflate = pretrain_channels[0] == 1 and in_channels > 1 and not method_cls.replace_input_on_transfer
        model.replace_input(in_channels, inflate=inflate)
    if method_cls.transfer == "all":
        model.replace_output(task.num_outputs)
    return model


# ---- checkpoints made elsewhere (--pretrained NAME=PATH) ---------------------------------------------------------
# Where a checkpoint keeps its weights: a plain state dict, or one under these keys (the suite's own cache file holds
# {"backbone": ..., "job": ...}; nnU-Net / nnssl checkpoints {"network_weights": ...}).
CONTAINER_KEYS = ("state_dict", "model", "backbone", "network_weights")
# Prefixes that wrappers put before every key: DDP's "module.", an SSL method around its backbone ("backbone."),
# torch.compile's "_orig_mod.", Lightning-style "model.". Stripped wherever they lead a key.
WRAPPER_PREFIXES = ("module.", "backbone.", "_orig_mod.", "model.")


@dataclass(frozen=True)
class ExternalState:
    """A checkpoint's backbone weights, keyed as the backbone names them (``read_external``), and how they were read."""

    state: dict[str, torch.Tensor]
    layout: str  # e.g. "state_dict['state_dict']; stripped 'module.'; renamed mlp.fc1. -> mlp.linear1.; keys placed under 'net.swinViT.'"
    unmatched: tuple[str, ...] = ()  # checkpoint keys that name no tensor of the backbone (unexpected)
    suite_job: dict | None = None  # the suite's own cache file: the Job that pretrained it (method, backbone, ...)


@dataclass(frozen=True)
class TransferReport:
    """What an external checkpoint gave the fine-tuning network (recorded per cell in cells.csv)."""

    loaded: int  # tensors copied from the checkpoint (an inflated input layer counts)
    missing: int  # tensors of the network the checkpoint does not hold: left at their initialisation
    unexpected: int  # tensors of the checkpoint with no counterpart in the network
    replaced: int  # declared input / output tensors initialised for the task instead (output layer; input of another width)
    inflated: bool = False  # a one-channel input layer widened to the task's channels (DAE-style)
    first_missing: tuple[str, ...] = ()
    first_unexpected: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"{self.loaded} tensors loaded, {self.missing} missing, {self.unexpected} unexpected, {self.replaced} replaced"
        if self.inflated:
            text += "; one-channel input layer inflated to the task's channels"
        if self.first_missing:
            text += f"; missing e.g. {', '.join(self.first_missing)}"
        if self.first_unexpected:
            text += f"; unexpected e.g. {', '.join(self.first_unexpected)}"
        return text


def _state_of(obj: Any, where: str = "the file") -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside a loaded checkpoint and where it was: the object itself, or under a CONTAINER_KEYS key
    (one level of nesting more, e.g. {"model": {"state_dict": ...}})."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), where
    if isinstance(obj, dict):
        for key in CONTAINER_KEYS:
            if isinstance(obj.get(key), dict):
                try:
                    return _state_of(obj[key], f"{where}[{key!r}]")
                except TransferError:
                    continue
    keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise TransferError(f"holds no state dict: expected a dict of tensors, or one under {', '.join(map(repr, CONTAINER_KEYS))} "
                        f"(found {keys})")


def read_external(obj: Any, backbone_name: str, *, size: BackboneSize, roi) -> ExternalState:
    """A loaded checkpoint's weights keyed as ``backbone_name`` names them: the state dict found (``_state_of``), wrapper
    prefixes stripped, the backbone's own renames applied (``Backbone.checkpoint_renames``: MONAI's Swin-UNETR SSL
    weights call the MLP layers fc1 / fc2, ``SwinUNETR.load_from``), and every key placed under the prefix of the
    backbone's names that matches most of them: "" for the suite's own keys, "net." for a whole MONAI SwinUNETR,
    "net.swinViT." for the SwinViT encoder alone (MONAI's ``model_swinvit.pt``: ``module.patch_embed...``,
    ``module.layers1.0...``)."""
    state, where = _state_of(obj)
    suite_job = obj.get("job") if isinstance(obj, dict) and isinstance(obj.get("job"), dict) and "backbone" in obj else None
    steps = [f"state dict {where}"]
    stripped = set()

    def strip(key: str) -> str:
        while key.startswith(WRAPPER_PREFIXES):
            prefix = next(p for p in WRAPPER_PREFIXES if key.startswith(p))
            stripped.add(prefix)
            key = key[len(prefix):]
        return key

    state = {strip(k): v for k, v in state.items()}
    if stripped:
        steps.append(f"stripped {', '.join(sorted(map(repr, stripped)))}")
    backbone_cls = BACKBONES.get(backbone_name)
    renamed = []
    for old, new in getattr(backbone_cls, "checkpoint_renames", ()):
        if any(old in k for k in state):
            state = {k.replace(old, new): v for k, v in state.items()}
            renamed.append(f"{old} -> {new}")
    if renamed:
        steps.append(f"renamed {', '.join(renamed)}")
    own = set(build_backbone(backbone_name, in_channels=1, out_channels=1, size=size, roi=roi).state_dict())
    candidates = {""} | {name[: i + 1] for name in own for i, ch in enumerate(name) if ch == "."}
    prefix = max(sorted(candidates, key=len), key=lambda p: sum(p + k in own for k in state))  # most matches; the shortest of equals
    if prefix:
        steps.append(f"keys placed under {prefix!r}")
    placed = {prefix + k: v for k, v in state.items()}
    return ExternalState(state=placed, layout="; ".join(steps), unmatched=tuple(sorted(k for k in placed if k not in own)),
                         suite_job=suite_job)


def external_model(backbone_name: str, external: ExternalState, *, task, size: BackboneSize, roi,
                   encoder_only: bool = False) -> tuple[nn.Module, TransferReport]:
    """The fine-tuning network of ``task`` on ``backbone_name`` with every tensor of ``external`` that fits: same name
    and shape. The output layer is the task's own (re-initialised, as every method's transfer does); an input layer of
    another width is inflated when the checkpoint's reads one channel, else re-initialised (both "replaced"). A tensor
    of the same name and another shape anywhere else does not fit: a ``TransferError`` naming the first ones and both
    shapes. ``encoder_only``: only encoder tensors transfer (a suite cache file of an encoder-only method)."""
    channels, outputs = len(task.channels), task.num_outputs
    model = build_backbone(backbone_name, in_channels=channels, out_channels=outputs, size=size, roi=roi)
    state = {k: v for k, v in external.state.items() if not encoder_only or model.in_encoder(k)}
    own = model.state_dict()
    inputs = [k for k in own if model.part_of(k) == "input" and k in state]
    inflate = channels > 1 and any(tuple(state[k].shape) != tuple(own[k].shape) for k in inputs)
    if inflate:  # does the checkpoint read one channel? then build at one channel, load, and widen the input layers
        one = build_backbone(backbone_name, in_channels=1, out_channels=outputs, size=size, roi=roi)
        inflate = all(tuple(state[k].shape) == tuple(one.state_dict()[k].shape) for k in inputs)
        if inflate:
            model, own = one, one.state_dict()
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape) and model.part_of(k) not in ("input", "output")]
    if mismatched:
        shown = "; ".join(f"{k}: checkpoint {tuple(state[k].shape)}, backbone {tuple(own[k].shape)}" for k in mismatched[:3])
        raise TransferError(f"does not fit backbone {backbone_name!r} at this profile's size: {len(mismatched)} tensor(s) of the same name "
                            f"and another shape, e.g. {shown} (its layout: {external.layout})")
    take = {k for k in own if k in state and tuple(state[k].shape) == tuple(own[k].shape) and model.part_of(k) != "output"}
    if not take:
        raise TransferError(f"holds no tensor of backbone {backbone_name!r}: its keys look like {sorted(external.state)[:3]}, the backbone's like "
                            f"{sorted(own)[:3]} (its layout: {external.layout}); expected weights of this backbone (:backbone=B names another)")
    result = model.load_state_dict({k: state[k] for k in take}, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    replaced = [k for k in own if k in state and k not in take]  # the output layer; an input layer of another width
    missing = [k for k in own if k not in state and model.part_of(k) != "output"]
    unexpected = sorted(external.unmatched)  # (an encoder-only file's decoder is declared, not unexpected: it counts as missing)
    if inflate:
        model.replace_input(channels, inflate=True)
    report = TransferReport(loaded=len(take), missing=len(missing), unexpected=len(unexpected), replaced=len(replaced), inflated=inflate,
                            first_missing=tuple(missing[:3]), first_unexpected=tuple(unexpected[:3]))
    return model, report
