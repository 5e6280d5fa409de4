"""LADP (label-aware denoising pretraining, LADP paper II.C): γ and the noise standard deviations σa, σb.

LADP II.C: "Similar to DDP we set γ = 0.95 and based on experiments we fix σa = 1.5 and σb = 0.8";
the experiments and their ranges are not reported, so every range below is ours:

* ``gamma`` γ ∈ {0.8, 0.9, 0.95, 0.975, 0.99}: the DDP grid (``search_spaces._denoising``).
* ``sigma_a`` σa ∈ {1.0, 1.25, 1.5, 1.75, 2.0}: the noise std inside the region of interest C(y)
  (eq. 4), the paper's 1.5 ± 0.5 in steps of 0.25.
* ``sigma_b`` σb ∈ {0.4, 0.6, 0.8, 1.0}: the std elsewhere, the paper's 0.8 from half to 1.0.
* Constraint σa ≥ σb: LADP's premise is MORE noise in the region of interest than elsewhere
  (II.C, 1.5 > 0.8); the two ranges meet only at 1.0, where σa = σb = 1 is plain DDP (eq. 5-6).
  The Config accepts any σ ≥ 0, so the constraint is kept by the ranges, not by ``__post_init__``.
* Not searched: ``freeze_encoder`` (III.A, frozen is best), the pretraining batch (16, II.D), and
  ``foreground_prob`` (crop sampling: a protocol choice held equal across a LADP/DDP comparison, not a
  hyperparameter the paper tuned).
"""
from __future__ import annotations

from search_spaces._denoising import gamma

SIGMA_A = [1.0, 1.25, 1.5, 1.75, 2.0]
SIGMA_B = [0.4, 0.6, 0.8, 1.0]


def space(trial) -> dict:
    return {
        **gamma(trial),
        "sigma_a": trial.suggest_categorical("sigma_a", SIGMA_A),
        "sigma_b": trial.suggest_categorical("sigma_b", SIGMA_B),
    }
