"""Swin-UNETR pretraining (Tang et al. 2022; the DAE paper's Table 4 row): NT-Xent τ and the cut-out amount.

No paper gives a range (the DAE paper keeps Tang et al.'s settings; Tang et al. 3.2 give values):

* ``temperature`` τ ∈ {0.25, 0.5, 1.0}: half, the reference's 0.5 and double.
* ``max_drop`` ∈ {0.15, 0.3, 0.6}: the largest fraction of voxels cut out of each view (the
  inpainting target), half, the reference's 0.3 and double.
* Not searched: the loss weights (all 1 in Tang et al. 3.2), the cut-out box sizes.
"""
from __future__ import annotations

from search_spaces._swin_ssl import max_drop, temperature


def space(trial) -> dict:
    return {**temperature(trial), **max_drop(trial)}
