"""CSM (Cross-Series Masking): the intra-series mask ratio and the masking strategy of Tables VII-VIII.

The CSM ablation (section IV.C, Table VII for BT-MSD, Table VIII for Breast2023 / Prostate158)
varies three pretraining choices; each is searched over exactly the values of the tables:

* ``mask_ratio`` ∈ {0.5, 0.875}: "Mask-ratio" 87.5% (the method) vs 50%.
* ``same_position_masks`` ∈ {False, True}: "Random patch-mask" ✓ (independent patch masks per
  series) vs × (the same patch positions masked in every series).
* Series masking ("Series-mask"): ✓ mask whole series and reconstruct them, ○ mask them but do
  not reconstruct them, × mask no series. Two fields: ``series_masking`` ∈ {True, False} and,
  ONLY when ``series_masking`` is True, ``reconstruct_masked_series`` ∈ {True, False} (✓ / ○).
  With ``series_masking=False`` (×) the key is absent and the Config keeps True, the one value
  its ``__post_init__`` accepts there.

"Complete-series" (the last column) is a property of the fine-tuning data, not a pretraining
hyperparameter, and is not searched. The decoder size is not given in the paper and not searched.
"""
from __future__ import annotations

MASK_RATIOS = [0.5, 0.875]  # Tables VII-VIII


def space(trial) -> dict:
    params = {
        "mask_ratio": trial.suggest_categorical("mask_ratio", MASK_RATIOS),
        "same_position_masks": trial.suggest_categorical("same_position_masks", [False, True]),
        "series_masking": trial.suggest_categorical("series_masking", [True, False]),
    }
    if params["series_masking"]:  # ✓ vs ○; × has nothing to reconstruct
        params["reconstruct_masked_series"] = trial.suggest_categorical("reconstruct_masked_series", [True, False])
    return params
