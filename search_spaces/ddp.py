"""DDP (decoder denoising pretraining, as set up in LADP II.C): the signal fraction γ.

* ``gamma`` γ ∈ {0.8, 0.9, 0.95, 0.975, 0.99}: LADP II.C fixes γ = 0.95 ("Similar to DDP we set
  γ = 0.95") and gives no range; the grid is ours, 1 − γ (the noise share of x' = √γ·x + √(1−γ)·ε)
  in roughly factor-2 steps around 0.05 (``search_spaces._denoising``).
* Not searched: ``freeze_encoder`` (LADP III.A: a frozen encoder "provides the best results"); the
  pretraining batch 16 (LADP II.D) is not tuned in the paper; ``cases`` and ``foreground_prob`` (which
  cases and crops DDP pretrains on: they set up the comparison with LADP, and a searched ``cases`` would
  change which cases a planned Job pretrains on).
"""
from __future__ import annotations

from search_spaces._denoising import gamma


def space(trial) -> dict:
    return gamma(trial)
