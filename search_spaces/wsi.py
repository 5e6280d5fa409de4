"""WSI (within-patient source identification, SI paper 5.2.2): the CSI space.

* ``pool_size`` N ∈ {3, 5, 7}, ``sources_per_mixture`` Ñ ∈ {2, 3, 4}: SI paper 6.3 tunes them for CSI,
  WSI and DSI alike (Fig. 5; "N = 5, Ñ = 3 ... achieves the best performance ... for CSI and WSI").
* ``num_mixtures`` M̃ ∈ {2, 3}: M̃ = 2 in the paper (5.2, 6.3); 3 is our extension (section 3.3
  discusses the number of mixtures).
* Constraint N ≥ 1 + M̃(Ñ − 1) (eq. 12), hence Ñ < N: ``search_spaces._si_paper.si_sources``.
* ``pretrain_batch_size`` 1 to 4 (reserved key, pretraining Recipe): SI paper 5.5.1.
"""
from __future__ import annotations

from search_spaces._si_paper import si_pretrain_batch_size, si_sources


def space(trial) -> dict:
    return {**si_sources(trial), **si_pretrain_batch_size(trial)}
