"""MAE3D (the CSM paper's baseline, refs [1] [2]): the mask ratio.

* ``mask_ratio`` ∈ {0.5, 0.75, 0.875}: the CSM paper does not tune its MAE3D baseline; we give it the
  two ratios CSM's Tables VII-VIII compare (50%, 87.5%) plus MAE's default 0.75 (He et al. 2022, the
  Config default), so MAE3D is searched over at least the ratios CSM is.
* Series masking: MAE3D has none (it masks all tokens of a sample jointly; its Config has no
  series-masking field), so there is nothing of Tables VII-VIII's "Series-mask" to search. The
  decoder size and ``norm_pix_loss`` are not paper hyperparameters of the comparison.
"""
from __future__ import annotations

MASK_RATIOS = [0.5, 0.75, 0.875]


def space(trial) -> dict:
    return {"mask_ratio": trial.suggest_categorical("mask_ratio", MASK_RATIOS)}
