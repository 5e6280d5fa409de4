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
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones.registry import BackboneSize, build_backbone


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
