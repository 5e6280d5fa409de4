"""Decoder denoising pretraining (DDP, Brempong et al. 2022) as set up in the LADP paper (section II.C).

The input is noised with x' = √γ·x + √(1−γ)·ε, ε ~ N(0, I), and the U-Net predicts the noise
ε with an L2 loss (LADP eq. 5-6 with σa = σb = 1). As in DDP, the encoder f_θ can be frozen so
that only the decoder g_φ is pretrained; the LADP paper finds that best (section III.A). The
shared pretext is ``benchmark.blocks.pretexts.denoising``.

Which cases and crops DDP pretrains on (``cases``, ``foreground_prob``):

* ``cases="all"`` (default): like every self-supervised method here, one pretraining on every
  non-test case (validation and ``--pretrain-extra`` cases included; no label is read) serves all
  label fractions, with uniform crops.
* ``cases="labelled"`` (``--methods ddp:cases=labelled``): exactly the cases LADP pretrains on, one
  pretraining per label fraction on that fraction's labelled cases, and by default LADP's crop
  sampling (``foreground_prob`` = LADP's 0.33). Sampling crops by lesion reads the labels of those
  cases, so the cell is reported label-aware; ``foreground_prob=0`` reads none.

The LADP paper's own comparison (Table 1, DDP vs LADP) self-pretrains both on the same fully labelled
training cases and on whole 256² slices, every slice once per epoch (II.A-D; no lesion
oversampling). Its counterpart here is ``--methods ladp:foreground_prob=0,ddp:cases=labelled:foreground_prob=0``
(at 100 % the labelled cases are every training case; whole slices with the paper profile's 256²
crops): the two then differ in the noise only. ``ladp,ddp:cases=labelled`` is the same controlled
comparison with this benchmark's lesion oversampling for both; plain ``ladp,ddp`` also differs in the
cases (DDP sees more) and the crop sampling (DDP's uniform).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.denoising import LABEL_AWARE_FOREGROUND_PROB, DenoisingConfig, DenoisingPretext
from benchmark.methods.base import register_method

CASES = ("all", "labelled")


@dataclass(frozen=True)
class DDPConfig(DenoisingConfig):
    """γ = 0.95 and a frozen encoder (LADP II.C, III.A); ``cases`` and ``foreground_prob`` see the module docstring."""

    cases: str = "all"  # all | labelled
    # None: LADP's lesion oversampling with cases="labelled", uniform crops with cases="all" (resolved below).
    foreground_prob: float | None = None

    def __post_init__(self) -> None:
        if self.cases not in CASES:
            raise ValueError(f"cases must be one of {list(CASES)} (pretrain on every non-test case, or on a fraction's labelled "
                             f"cases as LADP does), got {self.cases!r}")
        if self.foreground_prob is None:  # the resolved config records the value used
            object.__setattr__(self, "foreground_prob", LABEL_AWARE_FOREGROUND_PROB if self.cases == "labelled" else 0.0)
        super().__post_init__()
        if self.foreground_prob > 0 and self.cases != "labelled":
            raise ValueError(f"foreground_prob={self.foreground_prob} samples crops by lesion labels, which only the labelled cases "
                             "of a fraction may lend; expected cases=labelled (or foreground_prob=0)")


@register_method("ddp")
class DecoderDenoising(DenoisingPretext):
    """DDP: predict ε from √γ·x + √(1−γ)·ε with an L2 loss, encoder optionally frozen (LADP II.C eq. 5-6, III.A)."""

    Config = DDPConfig

    @classmethod
    def is_label_aware(cls, cfg: DDPConfig) -> bool:
        return cfg.foreground_prob > 0  # labels are read for crop sampling only, never by the loss

    @classmethod
    def pretrains_on_labelled_cases(cls, cfg: DDPConfig) -> bool:
        return cfg.cases == "labelled"
