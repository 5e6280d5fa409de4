"""Contrastive coding alone (the DAE paper's Table 4 row): NT-Xent τ and the cut-out amount.

No paper gives a range; grids are half, the reference value and double (``search_spaces._swin_ssl``):
``temperature`` τ ∈ {0.25, 0.5, 1.0}, ``max_drop`` ∈ {0.15, 0.3, 0.6} (cut-out makes the two views
differ). The loss weights define the method and are not searched.
"""
from __future__ import annotations

from search_spaces._swin_ssl import max_drop, temperature


def space(trial) -> dict:
    return {**temperature(trial), **max_drop(trial)}
