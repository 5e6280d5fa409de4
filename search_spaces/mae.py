"""MAE (the DAE paper's SimMIM-style baseline, section 3.3): the mask ratio and the mask-block size.

The DAE paper neither states nor tunes either value (section 3.3 only names "a masked image
modelling configuration", i.e. SimMIM's), so both grids are ours:

* ``mask_ratio`` ∈ {0.5, 0.6, 0.75, 0.875}: the Config default 0.6 (SimMIM's default and the DAE
  authors' code), MAE's default 0.75 (He et al. 2022), and the two ratios CSM's Tables VII-VIII
  compare (50%, 87.5%), the one ablation of a token mask ratio among this suite's papers.
* ``mask_block_size`` ∈ {8, 16, 32} voxels per block side at the 96-voxel reference crop (scaled with
  the crop by the method): half, the DAE authors' code value 16 (``mask_patch_size 16`` at
  ``img_size 96``) and double, the half / value / double rule this package uses where no paper
  gives a range. Every value is >= 1 as the Config requires and divides 96.
* Not searched: ``mask_block_reference_crop`` (a unit, not a hyperparameter).
"""
from __future__ import annotations

MASK_RATIOS = [0.5, 0.6, 0.75, 0.875]
MASK_BLOCK_SIZES = [8, 16, 32]


def space(trial) -> dict:
    return {
        "mask_ratio": trial.suggest_categorical("mask_ratio", MASK_RATIOS),
        "mask_block_size": trial.suggest_categorical("mask_block_size", MASK_BLOCK_SIZES),
    }
