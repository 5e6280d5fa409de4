"""The Backbone interface every registered network implements, and helpers shared by the families.

A method reaches a network only through this surface, so an objective that is not tied to one
architecture by its definition runs on every backbone of its dimensionality:

* ``spatial_dims``                 2 (slice-wise) or 3 (volumetric);
* ``encoder_features(x)``          the encoder's maps, shallow to deep (multi-scale; one map for a plain ViT);
* ``bottleneck(x)``                the deepest map [B, bottleneck_channels, *grid] at ``bottleneck_stride``;
* ``forward_with_bottleneck(x)``   (output, bottleneck) from ONE forward pass (e.g. DAE's CMCL on its reconstruction pass);
* ``patch_embed`` / ``patch_size`` / ``token_grid(spatial)``  the tokeniser whose output [B', C, *grid] token
  methods mask (Swin-UNETR, ViT); None for convolutional networks;
* ``token_encoder``                an encoder that can encode a subset of tokens (``tokenize`` / ``encode``,
  MAE-style methods; the series-token ViT), None otherwise;
* ``replace_input(c, inflate=)`` / ``replace_output(c)``  swap the first / last layers for ``c`` channels
  (SI paper 5.4); ``inflate`` widens a one-channel input layer instead of re-initialising it (DAE);
* the transfer parts, as parameter-name prefixes: ``encoder_prefixes`` (what encoder-only methods
  transfer), ``input_prefixes`` (the layers ``replace_input`` swaps), ``output_prefixes`` (the layers
  ``replace_output`` swaps); everything else is the decoder (``part_of``).

Backbones add no modules or parameters beyond their network: the attributes of this interface
are plain numbers or views of existing modules, so building a backbone draws exactly the same
random numbers as before the interface existed (identical results for a seed).
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Callable, ClassVar

import torch
from torch import nn

PARTS = ("input", "encoder", "decoder", "output")


class Backbone(nn.Module, metaclass=ABCMeta):
    """Base class of every registered backbone (see the module docstring)."""

    spatial_dims: ClassVar[int]
    encoder_prefixes: ClassVar[tuple[str, ...]]
    input_prefixes: ClassVar[tuple[str, ...]]
    output_prefixes: ClassVar[tuple[str, ...]]
    # A plugin backbone's crop and recipes per run profile, {"smoke": BackboneProfile(...), "paper": ...}
    # (benchmark.backbones.registry.BackboneProfile); the suite's own backbones are listed in benchmark/profiles.py.
    profiles: ClassVar[dict] = {}
    # (old, new) substrings of the keys of checkpoints made elsewhere for this network family, renamed before they are
    # matched to its own names (benchmark/backbones/transfer.py read_external), e.g. MONAI SSL weights' "mlp.fc1."
    checkpoint_renames: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Set by each backbone's __init__ (plain ints: no parameters, no random draws).
    bottleneck_channels: int
    bottleneck_stride: int

    # ---- features ---------------------------------------------------------------------------------
    @abstractmethod
    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, C, *spatial] -> the encoder's feature maps [B, C_i, *grid_i], shallow to deep."""

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, *spatial] -> the deepest encoder map [B, bottleneck_channels, *(spatial / bottleneck_stride)]."""
        return self.encoder_features(x)[-1]

    @abstractmethod
    def bottleneck_tap(self) -> tuple[nn.Module, Callable]:
        """(module, pick): ``pick(module's output)`` is the bottleneck during the backbone's own forward."""

    def forward_with_bottleneck(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(self(x), bottleneck of that same pass): one forward, the bottleneck read by a hook on ``bottleneck_tap``."""
        module, pick = self.bottleneck_tap()
        seen: dict[str, torch.Tensor] = {}
        handle = module.register_forward_hook(lambda _m, _i, out: seen.update(z=pick(out)))
        try:
            out = self(x)
        finally:
            handle.remove()
        return out, seen["z"]

    # ---- tokens -------------------------------------------------------------------------------------
    @property
    def patch_embed(self) -> nn.Module | None:
        """The tokeniser (its output [B', C, *grid] is what token-masking methods disrupt), or None."""
        return None

    @property
    def patch_size(self) -> tuple[int, ...] | None:
        """Voxels per token along each spatial dim, or None without a tokeniser."""
        return None

    def token_grid(self, spatial: tuple[int, ...]) -> tuple[int, ...] | None:
        """Tokens along each dim for an input of ``spatial`` voxels (None without a tokeniser); the size must divide."""
        patch = self.patch_size
        if patch is None:
            return None
        if any(s % p for s, p in zip(spatial, patch)):
            raise ValueError(f"{type(self).__name__}: crop {tuple(spatial)} is not a multiple of the patch size {patch}")
        return tuple(s // p for s, p in zip(spatial, patch))

    @property
    def token_encoder(self) -> nn.Module | None:
        """An encoder that can encode a subset of its tokens (``tokenize``, ``encode``, ``num_patches``, ``dim``, ``patch``), or None."""
        return None

    # ---- input / output layers -----------------------------------------------------------------------
    @abstractmethod
    def replace_input(self, channels: int, *, inflate: bool = False) -> None:
        """Swap the layers that read the raw input for ``channels`` channels (``inflate``: widen a one-channel layer)."""

    @abstractmethod
    def replace_output(self, channels: int) -> None:
        """Swap the last layer for ``channels`` outputs."""

    # ---- transfer parts --------------------------------------------------------------------------------
    @classmethod
    def part_of(cls, name: str) -> str:
        """Which part a parameter / buffer name belongs to: "input", "output", "encoder" or "decoder"."""
        if name.startswith(cls.input_prefixes):
            return "input"
        if name.startswith(cls.output_prefixes):
            return "output"
        if name.startswith(cls.encoder_prefixes):
            return "encoder"
        return "decoder"

    def in_encoder(self, name: str) -> bool:
        """True if ``name`` is an encoder weight (input layers inside the encoder included)."""
        return name.startswith(self.encoder_prefixes)


def kaiming_init(module: nn.Module) -> None:
    """Kaiming initialisation of every convolution (SI paper 5.4, for the from-scratch network)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, a=0.01, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv_like(old: nn.Module, *, in_channels: int | None = None, out_channels: int | None = None, inflate: bool = False) -> nn.Module:
    """A fresh conv with ``old``'s geometry but new channel counts (weights re-initialised).

    ``inflate``: ``old`` reads ONE channel (pretrained on single-modality volumes, as DAE does)
    and the new conv reads ``in_channels``: each input channel gets a copy of the pretrained
    kernel divided by the channel count, so a constant multi-channel input gives the same
    response as the single channel did (I3D-style inflation) instead of a random layer.
    """
    new = type(old)(
        in_channels if in_channels is not None else old.in_channels,
        out_channels if out_channels is not None else old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    kaiming_init(new)
    if inflate:
        if old.in_channels != 1 or in_channels is None or out_channels is not None:
            raise ValueError("inflate only widens a one-channel input convolution")
        with torch.no_grad():
            new.weight.copy_(old.weight.repeat(1, in_channels, *([1] * (old.weight.dim() - 2))) / in_channels)
            if old.bias is not None:
                new.bias.copy_(old.bias)
    return new
