"""Rotation prediction alone (the DAE paper's Table 4 row): the cut-out amount.

No paper gives a range: ``max_drop`` ∈ {0.15, 0.3, 0.6}, half, the reference's 0.3 and double
(``search_spaces._swin_ssl``). The NT-Xent temperature is not searched: the contrastive loss is off
for this method, so τ has no effect. The loss weights define the method and are not searched.
"""
from __future__ import annotations

from search_spaces._swin_ssl import max_drop


def space(trial) -> dict:
    return max_drop(trial)
