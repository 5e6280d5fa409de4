"""DAE (Disruptive Autoencoders): noise σ, downsampling ε, local-masking ratio r and the CMCL weight α.

* ``noise_variance`` σ ∈ {0.05, 0.1, 0.2}: DAE appendix G.1, Table 8 (σ is the noise variance).
* ``downsample_factor`` ε ∈ {2, 4, 8}: DAE appendix G.2, Table 9.
* ``mask_ratio`` r ∈ {0.2, 0.4, 0.6, 0.8}: DAE appendix G.3 / Table 10 studies r but our copy of
  Table 10 lost its row labels (two Dice values, 85.55 and 84.13, without their r); the text says r
  = 0.4 performs well "while the performance decreases as we increase it", and section 3.2 trains
  with r = 60%. The grid is ours: 0.4 and 0.6 (the two values the paper names) and one step of 0.2
  either side.
* ``cmcl_weight`` α ∈ {0.025, 0.05, 0.1}: the paper gives no range, only "α in CMCL is set to 0.05 to
  match the range of both losses" (section 2, after eq. 4-5); we search half, the value and double,
  the same factor-2 spacing as the σ grid of Table 8.
* Not searched: the CMCL temperature t (fixed "to 0.07", section 2) and the ablation switches
  (Tables 5-6, set with ``--hparam``). The pretraining batch (2 per GPU, section 3.2) is not tuned
  in the paper.
"""
from __future__ import annotations

NOISE_VARIANCES = [0.05, 0.1, 0.2]  # Table 8
DOWNSAMPLE_FACTORS = [2.0, 4.0, 8.0]  # Table 9
MASK_RATIOS = [0.2, 0.4, 0.6, 0.8]  # around Table 10's r = 0.4 and section 3.2's r = 0.6
CMCL_WEIGHTS = [0.025, 0.05, 0.1]  # around α = 0.05 (section 2)


def space(trial) -> dict:
    return {
        "noise_variance": trial.suggest_categorical("noise_variance", NOISE_VARIANCES),
        "downsample_factor": trial.suggest_categorical("downsample_factor", DOWNSAMPLE_FACTORS),
        "mask_ratio": trial.suggest_categorical("mask_ratio", MASK_RATIOS),
        "cmcl_weight": trial.suggest_categorical("cmcl_weight", CMCL_WEIGHTS),
    }
